"""Data preparation the examples share: reading text corpora (a local file, a hub dataset, or an
embedded default that needs no download) and language-model blocks. Nothing here is needed to run a
model, so the model files never import it."""

from collections.abc import Callable
from itertools import chain
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset


def pydoc_corpus() -> list[str]:
    """The text of Python's own documentation topics (`pydoc_data.topics`, shipped with every
    Python): 79 documents, about 465 thousand characters. The examples' default corpus, needing no
    download."""
    from pydoc_data.topics import topics

    return [text for _, text in sorted(topics.items())]


_LOADERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def load_text_datasets(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    validation_split_percentage: int = 5,
    default_texts: Callable[[], list[str]] = pydoc_corpus,
    seed: int = 0,
) -> DatasetDict:
    """A DatasetDict with "train" and "validation" splits of text rows.

    Sources, first that is given: `dataset_name` (the hub, through `datasets.load_dataset`),
    `train_file` (.txt: one row per line; .json/.jsonl/.csv: rows with a text column), else
    `default_texts()`. Without a validation split, `validation_split_percentage` percent of the rows
    are held out (by row, with `seed`).
    """
    if dataset_name is not None:
        datasets = load_dataset(dataset_name, dataset_config_name)
    elif train_file is not None:
        suffix = Path(train_file).suffix
        if suffix not in _LOADERS:
            raise ValueError(
                f"train_file must end in one of {sorted(_LOADERS)}, got {train_file!r}"
            )
        data_files = {"train": train_file}
        if validation_file is not None:
            data_files["validation"] = validation_file
        datasets = load_dataset(_LOADERS[suffix], data_files=data_files)
    else:
        datasets = DatasetDict({"train": Dataset.from_dict({"text": default_texts()})})
    if "validation" not in datasets:
        held_out = datasets["train"].train_test_split(
            test_size=validation_split_percentage / 100, seed=seed
        )
        datasets = DatasetDict({"train": held_out["train"], "validation": held_out["test"]})
    return datasets


def group_texts(examples: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate tokenized rows and cut them into blocks of `block_size` tokens (the tail shorter
    than a block is dropped); labels are the inputs, the model shifts them. For
    `datasets.map(batched=True)`."""
    concatenated = {key: list(chain.from_iterable(examples[key])) for key in examples}
    total = (len(concatenated["input_ids"]) // block_size) * block_size
    blocks = {
        key: [values[i : i + block_size] for i in range(0, total, block_size)]
        for key, values in concatenated.items()
    }
    blocks["labels"] = [block.copy() for block in blocks["input_ids"]]
    return blocks
