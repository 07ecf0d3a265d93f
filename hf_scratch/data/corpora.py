"""Text corpora for language-model pre-training: a local file, a hub dataset, or the embedded
default that needs no download (Python's own documentation), with a held-out split, and the
grouping of token streams into fixed-length blocks."""

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from datasets import Dataset, DatasetDict, IterableDataset, load_dataset


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
    streaming: bool = False,
    validation_rows: int = 1000,
) -> DatasetDict:
    """A DatasetDict with "train" and "validation" splits of text rows.

    Sources, first that is given: `dataset_name` (the hub, through `datasets.load_dataset`),
    `train_file` (.txt: one row per line, its line break kept; .json/.jsonl/.csv: rows with a text
    column), else `default_texts()`. Without a validation split, `validation_split_percentage`
    percent of the rows are held out (by row, with `seed`).

    With `streaming`, the training split is an `IterableDataset` read as it is consumed (a corpus
    that does not fit in memory) and the validation split is read into memory; without a
    validation split, the first `validation_rows` rows of the training data are held out (a
    stream has no length to take a percentage of).
    """
    if dataset_name is not None:
        datasets = load_dataset(dataset_name, dataset_config_name, streaming=streaming)
    elif train_file is not None:
        suffix = Path(train_file).suffix
        if suffix not in _LOADERS:
            raise ValueError(
                f"train_file must end in one of {sorted(_LOADERS)}, got {train_file!r}"
            )
        data_files = {"train": train_file}
        if validation_file is not None:
            data_files["validation"] = validation_file
        # A text file's rows are its lines, with their line breaks (as transformers' run_clm.py
        # keeps them): joined again, they give the text back.
        options = {"keep_linebreaks": True} if _LOADERS[suffix] == "text" else {}
        datasets = load_dataset(
            _LOADERS[suffix], data_files=data_files, streaming=streaming, **options
        )
    else:  # embedded, in memory: held out by percentage as usual, then streamed if asked
        datasets = _held_out(
            DatasetDict({"train": Dataset.from_dict({"text": default_texts()})}),
            validation_split_percentage,
            seed,
        )
        if streaming:
            datasets["train"] = datasets["train"].to_iterable_dataset()
        return datasets
    if not streaming:
        return _held_out(datasets, validation_split_percentage, seed)
    if "validation" in datasets:
        validation = Dataset.from_list(list(datasets["validation"]))
    else:
        validation = Dataset.from_list(list(datasets["train"].take(validation_rows)))
        datasets["train"] = datasets["train"].skip(validation_rows)
    return DatasetDict({"train": datasets["train"], "validation": validation})


def _held_out(datasets: DatasetDict, percentage: int, seed: int) -> DatasetDict:
    """`datasets`, with `percentage` percent of its training rows held out for validation when it
    has no validation split."""
    if "validation" in datasets:
        return datasets
    held_out = datasets["train"].train_test_split(test_size=percentage / 100, seed=seed)
    return DatasetDict({"train": held_out["train"], "validation": held_out["test"]})


@dataclass
class CorpusArguments:
    """Where a pre-training script reads its text (see `load_text_datasets`), and how much of it
    it uses."""

    train_file: str | None = field(default=None, metadata={"help": ".txt, .json(l) or .csv"})
    validation_file: str | None = field(default=None)
    dataset_name: str | None = field(default=None, metadata={"help": "a dataset on the hub"})
    dataset_config_name: str | None = field(default=None)
    text_column: str = field(default="text")
    validation_split_percentage: int = field(default=5)
    streaming: bool = field(
        default=False,
        metadata={
            "help": "read the training data as it is consumed (a corpus larger than memory); "
            "needs --max_steps"
        },
    )
    validation_rows: int = field(
        default=1000,
        metadata={
            "help": "with --streaming and no validation split: the first rows of the training "
            "data held out"
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "keep only this many training examples (for a quick run)"}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "keep only this many evaluation examples"}
    )
    preprocessing_num_workers: int | None = field(default=None)

    @property
    def rows_are_documents(self) -> bool:
        """Whether each row is a document of its own (the embedded corpus, .json/.csv rows, hub
        datasets), rather than a line of one continuous text (a .txt file)."""
        return (
            self.dataset_name is not None
            or self.train_file is None
            or (_LOADERS.get(Path(self.train_file).suffix) != "text")
        )

    def describe(self) -> tuple[str, str | None]:
        """The training data in words, for the model card, and its hub id if it has one."""
        if self.dataset_name is not None:
            return hub_dataset_name(self.dataset_name, self.dataset_config_name), self.dataset_name
        if self.train_file is not None:
            return f"the text file {Path(self.train_file).name}", None
        return "the text of Python's documentation (`pydoc_data.topics`, shipped with Python)", None

    def limit(self, datasets: dict) -> dict:
        """`datasets` cut to `max_train_samples` training and `max_eval_samples` validation
        examples (the first ones: training data is shuffled by the Trainer, a stream is not)."""
        limits = {"train": self.max_train_samples, "validation": self.max_eval_samples}
        cut = dict(datasets)
        for split, limit in limits.items():
            if split not in cut or limit is None:
                continue
            if isinstance(cut[split], IterableDataset):
                cut[split] = cut[split].take(limit)
            else:
                cut[split] = cut[split].select(range(min(limit, len(cut[split]))))
        return cut


def hub_dataset_name(name: str, config_name: str | None) -> str:
    return f"the hub dataset `{name}`" + (f" (`{config_name}`)" if config_name else "")


def load_corpus(arguments: CorpusArguments, seed: int = 0) -> DatasetDict:
    """`load_text_datasets` from the scripts' corpus arguments."""
    return load_text_datasets(
        arguments.train_file,
        arguments.validation_file,
        arguments.dataset_name,
        arguments.dataset_config_name,
        arguments.validation_split_percentage,
        seed=seed,
        streaming=arguments.streaming,
        validation_rows=arguments.validation_rows,
    )


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
