"""Parallel text for translation: line-aligned files ({data_dir}/{prefix}.{lang}), .tsv or
.json(l) pairs, a hub dataset, or the built-in date task, into train / validation / test splits."""

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from .corpora import hub_dataset_name
from .date_task import date_translation_pairs


def _read_parallel_file(path: str, source_lang: str, target_lang: str) -> dict[str, list[str]]:
    """.tsv: "source<TAB>target" per line, no header. .json / .jsonl: rows with the two language
    keys, either at the top level or under "translation" (the hub's translation datasets)."""
    suffix = Path(path).suffix
    if suffix == ".tsv":
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        pairs = [line.split("\t") for line in lines if line.strip()]
        bad = [number for number, pair in enumerate(pairs, 1) if len(pair) != 2]
        if bad:
            raise ValueError(
                f"{path}: lines {bad[:5]} do not have exactly two tab-separated fields"
            )
        return {"source": [pair[0] for pair in pairs], "target": [pair[1] for pair in pairs]}
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"unsupported parallel file {path!r}: use .tsv, .json(l), or --data_dir")
    rows = load_dataset("json", data_files=path)["train"]
    if "translation" in rows.column_names:
        rows = [row["translation"] for row in rows]
    return {
        "source": [row[source_lang] for row in rows],
        "target": [row[target_lang] for row in rows],
    }


def _read_line_aligned(
    data_dir: str, prefix: str, source_lang: str, target_lang: str
) -> dict[str, list[str]]:
    """{data_dir}/{prefix}.{source_lang} and .{target_lang}: one sentence per line, aligned."""
    sides = {}
    for side, lang in (("source", source_lang), ("target", target_lang)):
        path = Path(data_dir) / f"{prefix}.{lang}"
        sides[side] = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    if len(sides["source"]) != len(sides["target"]):
        raise ValueError(
            f"{data_dir}/{prefix}.{source_lang} has {len(sides['source'])} lines but "
            f".{target_lang} has {len(sides['target'])}: the files must be line-aligned"
        )
    return sides


@dataclass
class TranslationDataArguments:
    """Where a translation script reads its sentence pairs; see `load_translation_data`."""

    source_lang: str = field(default="en")
    target_lang: str = field(default="de")
    data_dir: str | None = field(
        default=None,
        metadata={"help": "folder of line-aligned files {prefix}.{lang}, e.g. multi30k/raw"},
    )
    train_prefix: str = field(default="train")
    validation_prefix: str = field(default="val")
    test_prefix: str | None = field(default="test_2016_flickr")
    train_file: str | None = field(default=None, metadata={"help": ".tsv or .json(l) pairs"})
    validation_file: str | None = field(default=None)
    test_file: str | None = field(default=None)
    dataset_name: str | None = field(
        default=None, metadata={"help": "a hub translation dataset, e.g. wmt16"}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "e.g. de-en"})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None, metadata={"help": "validation pairs kept"})
    max_predict_samples: int | None = field(default=None, metadata={"help": "test pairs kept"})

    def describe(self) -> tuple[str, str | None]:
        """The training data in words, for the model card, and its hub id if it has one."""
        pair = f"{self.source_lang} -> {self.target_lang}"
        if self.dataset_name is not None:
            description = hub_dataset_name(self.dataset_name, self.dataset_config_name)
            return f"{description}, {pair}", self.dataset_name
        if self.data_dir is not None:
            folder = Path(self.data_dir)
            return f"line-aligned files {folder / self.train_prefix}.*, {pair}", None
        if self.train_file is not None:
            return f"sentence pairs from {Path(self.train_file).name}, {pair}", None
        return "the built-in date-rewriting demo (`date_translation_pairs`)", None


def load_translation_data(arguments: TranslationDataArguments, seed: int = 0) -> DatasetDict:
    """A DatasetDict of "source" / "target" string columns with "train", "validation" and, when
    the source has one, "test" splits. Sources, first that is given: `dataset_name` (the hub; rows
    with a "translation" dict), `data_dir` (line-aligned files per language, the layout of
    Multi30k and most MT corpora), `train_file` (+ `validation_file`, `test_file`), else the
    built-in date task (`date_translation_pairs`). The training split is shuffled with `seed` and
    cut to `max_train_samples`; the validation and test splits to `max_eval_samples` and
    `max_predict_samples`."""
    source_lang, target_lang = arguments.source_lang, arguments.target_lang
    if arguments.dataset_name is not None:
        hub = load_dataset(arguments.dataset_name, arguments.dataset_config_name)
        splits = {
            split: {
                "source": [pair[source_lang] for pair in rows["translation"]],
                "target": [pair[target_lang] for pair in rows["translation"]],
            }
            for split, rows in hub.items()
        }
    elif arguments.data_dir is not None:
        prefixes = {
            "train": arguments.train_prefix,
            "validation": arguments.validation_prefix,
            "test": arguments.test_prefix,
        }
        splits = {
            split: _read_line_aligned(arguments.data_dir, prefix, source_lang, target_lang)
            for split, prefix in prefixes.items()
            if prefix is not None
        }
    elif arguments.train_file is not None:
        files = {
            "train": arguments.train_file,
            "validation": arguments.validation_file,
            "test": arguments.test_file,
        }
        splits = {
            split: _read_parallel_file(path, source_lang, target_lang)
            for split, path in files.items()
            if path is not None
        }
    else:
        splits = {
            "train": date_translation_pairs(8000, seed=seed),
            "validation": date_translation_pairs(500, seed=seed + 1),
            "test": date_translation_pairs(500, seed=seed + 2),
        }
    if "validation" not in splits:
        raise ValueError("no validation split: give --validation_file or --validation_prefix")
    datasets = DatasetDict({split: Dataset.from_dict(pairs) for split, pairs in splits.items()})
    datasets["train"] = datasets["train"].shuffle(seed=seed)
    limits = {
        "train": arguments.max_train_samples,
        "validation": arguments.max_eval_samples,
        "test": arguments.max_predict_samples,
    }
    for split, limit in limits.items():
        if split in datasets and limit is not None:
            datasets[split] = datasets[split].select(range(min(limit, len(datasets[split]))))
    return datasets
