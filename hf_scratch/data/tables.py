"""Labelled tables for fine-tuning: GLUE-style .tsv/.csv/.json(l) files or hub datasets, read
into splits with their label names."""

from pathlib import Path

from datasets import Dataset, load_dataset


def load_table(path: str) -> Dataset:
    """One split of a labelled dataset from a file: GLUE-style .tsv (a header row; a UTF-8
    byte-order mark, as MRPC's files have, is skipped), .csv, or .json / .jsonl."""
    suffix = Path(path).suffix
    if suffix == ".tsv":
        return load_dataset(
            "csv", data_files=path, delimiter="\t", quoting=3, encoding="utf-8-sig"
        )["train"]
    loader = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if loader is None:
        raise ValueError(f"unsupported file type {path!r}: use .tsv, .csv or .json(l)")
    return load_dataset(loader, data_files=path)["train"]


def load_classification_data(
    train_file: str,
    validation_file: str,
    label_column: str,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    test_file: str | None = None,
    max_predict_samples: int | None = None,
) -> tuple[dict[str, Dataset], dict]:
    """A fine-tuning script's splits and labels: {"train": the training split (shuffled and cut to
    `max_train_samples`), "validation": the validation split (cut to `max_eval_samples`), "test":
    the `test_file` split if given (cut to `max_predict_samples`; its labels may be missing, as
    GLUE's are)}, and the label fields for `from_pretrained` (`num_labels`, `id2label`,
    `label2id`: the training split's label values as strings, sorted)."""
    splits = {"train": load_table(train_file), "validation": load_table(validation_file)}
    if test_file is not None:
        splits["test"] = load_table(test_file)
    names = sorted({str(value) for value in splits["train"][label_column]})
    splits["train"] = splits["train"].shuffle(seed=seed)
    limits = {"train": max_train_samples, "validation": max_eval_samples}
    limits["test"] = max_predict_samples
    for split, limit in limits.items():
        if split in splits and limit is not None:
            splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
    labels = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }
    return splits, labels
