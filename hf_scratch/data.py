"""Data preparation the examples share: reading text corpora (a local file, a hub dataset, or an
embedded default that needs no download) and language-model blocks. Nothing here is needed to run a
model, so the model files never import it."""

import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, IterableDataset, load_dataset
from transformers import DataCollatorForLanguageModeling, TrainerCallback


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
            return _hub_dataset(self.dataset_name, self.dataset_config_name), self.dataset_name
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


def _hub_dataset(name: str, config_name: str | None) -> str:
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


def map_rows(rows, function: Callable, description: str, num_proc: int | None = None, **kwargs):
    """`rows.map(function, batched=True, **kwargs)`: for a `Dataset` at once (`num_proc` workers,
    a progress bar saying `description`), for an `IterableDataset` lazily, as it is read."""
    if isinstance(rows, IterableDataset):
        return rows.map(function, batched=True, **kwargs)
    return rows.map(function, batched=True, num_proc=num_proc, desc=description, **kwargs)


def map_splits(
    datasets, splits: list[str], function: Callable, description: str, num_proc: int | None = None
) -> dict:
    """{split: `map_rows` of `datasets[split]`} for each of `splits`, the function's columns
    replacing the split's own."""
    return {
        split: map_rows(
            datasets[split],
            function,
            f"{split}: {description}",
            num_proc,
            remove_columns=column_names(datasets[split]),
        )
        for split in splits
    }


def column_names(rows) -> list[str]:
    """The columns of a dataset; a stream that does not declare its features is asked for its
    first row."""
    if rows.column_names is not None:
        return rows.column_names
    return list(next(iter(rows)).keys())


def describe_sizes(splits: dict) -> str:
    """ "N train, M validation" (a stream: "streamed train"), for a script's log."""
    return ", ".join(
        f"{'streamed' if isinstance(rows, IterableDataset) else len(rows)} {split}"
        for split, rows in splits.items()
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


# --------------------------------------------------------------------------------------------------
# BERT pre-training data: next-sentence pairs and masking
# --------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_segments(document: str) -> list[str]:
    """A document's segments for next-sentence pairs: its non-empty lines, and a line holding
    several sentences split after . ! or ?"""
    return [
        sentence
        for line in document.splitlines()
        for sentence in _SENTENCE_END.split(line.strip())
        if sentence
    ]


class NextSentencePairs:
    """Builds BERT's pre-training pairs [CLS] A [SEP] B [SEP] (Devlin et al. 2019, §3.1, Appendix
    A.2) from documents whose segments are already tokenized, for
    `documents.map(pairs, batched=True, with_indices=True, remove_columns=documents.column_names)`.

    Each document is cut into chunks of segments filling `max_seq_length - 3` tokens (with
    probability `short_seq_prob` a shorter random target, as the original recipe does, so the model
    also sees short inputs); each chunk gives one pair. With probability 1/2, B is the text that
    follows A (next_sentence_label 0, IsNext, Hugging Face's convention); otherwise B is taken from
    a random other document (label 1, NotNext) and the unused rest of the chunk is kept for the next
    pair. A document is never its own "random" document. Token type ids are 0 on [CLS] A [SEP], 1 on
    B [SEP].

    The random choices of a document depend only on `seed` and the document's index, so the result
    is the same whatever the batch size or `num_proc` of the `map`.

    With `documents=None` (a stream, whose documents cannot be looked up by index), the random B
    comes from another document of the same `map` batch (1,000 documents by default); the result
    then depends on the batch size too.
    """

    def __init__(
        self,
        documents,
        cls_token_id: int,
        sep_token_id: int,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        seed: int = 0,
        column: str = "segments",
    ):
        if max_seq_length < 5:
            raise ValueError(f"max_seq_length must leave room for 2 tokens, got {max_seq_length}")
        self.documents = documents
        self.cls_token_id, self.sep_token_id = cls_token_id, sep_token_id
        self.max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
        self.short_seq_prob = short_seq_prob
        self.seed = seed
        self.column = column

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        pairs = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
        if self.documents is None:  # random B from this batch: positions in it, not indices
            pool = batch[self.column]
        else:
            pool = _Column(self.documents, self.column)
        for position, (segments, index) in enumerate(zip(batch[self.column], indices, strict=True)):
            own = position if self.documents is None else index
            for tokens_a, tokens_b, label in self._document_pairs(segments, index, own, pool):
                pairs["input_ids"].append(
                    [self.cls_token_id, *tokens_a, self.sep_token_id, *tokens_b, self.sep_token_id]
                )
                pairs["token_type_ids"].append(
                    [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                )
                pairs["next_sentence_label"].append(label)
        return pairs

    def _document_pairs(self, segments: list[list[int]], index: int, own: int, pool):
        """(tokens A, tokens B, label) for each chunk of one document; `own` is its position in
        `pool`, the documents a random B is drawn from."""
        rng = random.Random(f"{self.seed}/{index}")
        segments = [segment for segment in segments if segment]
        target = self._target_length(rng)
        start = end = 0  # the chunk is segments[start : end + 1]
        while end < len(segments):
            if end < len(segments) - 1 and sum(map(len, segments[start : end + 1])) < target:
                end += 1
                continue
            chunk = segments[start : end + 1]
            random_next = rng.random() < 0.5 and len(pool) > 1
            if len(chunk) > 1:
                a_end = rng.randint(1, len(chunk) - 1)
                tokens_a = [token for segment in chunk[:a_end] for token in segment]
                actual_next = [token for segment in chunk[a_end:] for token in segment]
                # a random B leaves the chunk's unused segments for the next pair
                next_start = start + a_end if random_next else end + 1
            else:  # a single segment: its two halves are A and the actual next text
                half = len(chunk[0]) // 2
                tokens_a, actual_next = (
                    list(chunk[0][: half or None]),
                    list(chunk[0][half:] if half else []),
                )
                next_start = end + 1
            tokens_b = (
                self._random_segments(rng, pool, own, target - len(tokens_a))
                if random_next
                else actual_next
            )
            if tokens_a and tokens_b:
                self._truncate_pair(tokens_a, tokens_b, rng)
                yield tokens_a, tokens_b, int(random_next)
            start = end = next_start
            target = self._target_length(rng)

    def _target_length(self, rng: random.Random) -> int:
        if rng.random() < self.short_seq_prob:
            return rng.randint(2, self.max_tokens)
        return self.max_tokens

    def _random_segments(self, rng: random.Random, pool, own: int, target: int) -> list[int]:
        """Tokens from a random document of `pool` other than the one at `own`, from a random
        segment on, about `target` long."""
        other = rng.randrange(len(pool) - 1)
        other += other >= own  # never the document itself
        segments = [segment for segment in pool[other] if segment]
        tokens = []
        for segment in segments[rng.randrange(len(segments)) :] if segments else []:
            tokens.extend(segment)
            if len(tokens) >= target:
                break
        return tokens

    def _truncate_pair(self, tokens_a: list[int], tokens_b: list[int], rng: random.Random) -> None:
        """Shorten the longer of A and B, from a random end, until both fit (in place)."""
        while len(tokens_a) + len(tokens_b) > self.max_tokens:
            longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
            del longer[0 if rng.random() < 0.5 else -1]


class _Column:
    """One column of a `Dataset`, read a row at a time (`dataset[column]` would read it whole)."""

    def __init__(self, dataset, column: str):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][self.column]


class WholeWordMaskCollator(DataCollatorForLanguageModeling):
    """Masked LM with whole-word masking over WordPiece tokens: a word (a token and the "##"
    continuation tokens after it) is chosen with probability `mlm_probability`, and each token of a
    chosen word is then replaced as in the paper (80% [MASK], 10% random, 10% unchanged), as in
    Google's whole-word-masking BERT release. Works on token ids alone (no offset mapping
    needed)."""

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        labels = inputs.clone()
        if special_tokens_mask is None:
            special_tokens_mask = torch.tensor(
                [
                    self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                    for row in labels.tolist()
                ],
                dtype=torch.bool,
            )
        special_tokens_mask = special_tokens_mask.bool()
        tokens = self.tokenizer.convert_ids_to_tokens(inputs.flatten().tolist())
        continuation = torch.tensor(
            [token.startswith("##") for token in tokens], dtype=torch.bool
        ).view(inputs.shape)
        continuation &= ~special_tokens_mask
        # word index of every token: a new word starts at each token that is not a continuation
        word_ids = torch.cumsum((~continuation).long(), dim=-1)  # (B, T)
        word_probability = torch.full(inputs.shape, self.mlm_probability)
        word_probability.masked_fill_(special_tokens_mask | continuation, 0.0)
        word_chosen = torch.bernoulli(word_probability, generator=self.generator).bool()
        chosen_word_ids = torch.where(word_chosen, word_ids, 0)
        masked = torch.zeros_like(word_chosen)
        for row in range(inputs.shape[0]):
            chosen = chosen_word_ids[row][chosen_word_ids[row] > 0]
            masked[row] = torch.isin(word_ids[row], chosen)
        masked &= ~special_tokens_mask
        labels[~masked] = -100
        replace = torch.bernoulli(
            torch.full(inputs.shape, self.mask_replace_prob), generator=self.generator
        ).bool()
        replace &= masked
        inputs[replace] = self.tokenizer.mask_token_id
        random_share = self.random_replace_prob / max(1.0 - self.mask_replace_prob, 1e-12)
        randomise = torch.bernoulli(
            torch.full(inputs.shape, random_share), generator=self.generator
        ).bool()
        randomise &= masked & ~replace
        inputs[randomise] = torch.randint(
            len(self.tokenizer), inputs.shape, generator=self.generator
        )[randomise]
        return inputs, labels


class ExampleSeededMasking:
    """Makes an MLM collator (one that masks in `torch_mask_tokens` with `self.generator`, as
    `DataCollatorForLanguageModeling` and `WholeWordMaskCollator` do) mask each example as a
    function of the collator's `seed`, its `epoch` and the example's tokens alone: the same
    masked positions and replacements whatever else is in the batch, however long the batch is
    padded, and whichever process collates the example. So 2 processes x batch 4 see the masks of
    1 process x batch 8, and a resumed run those of an uninterrupted one. `epoch` changes the
    masks from epoch to epoch (dynamic masking); `MaskingEpochCallback` sets it from the Trainer.
    With dataloader workers, the collator is copied into them when an epoch's iteration starts
    (not with `dataloader_persistent_workers`, which would keep the first epoch's masks). Without
    a seed, the collator masks as its base class does."""

    epoch: int = 0

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        if self.seed is None or offset_mapping is not None:
            return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)
        labels = torch.full_like(inputs, -100)
        pad_token_id = self.tokenizer.pad_token_id
        padding = (
            torch.zeros_like(inputs, dtype=torch.bool)
            if pad_token_id is None
            else inputs == pad_token_id
        )
        for row in range(inputs.shape[0]):
            kept = (~padding[row]).nonzero()
            if len(kept) == 0:
                continue
            span = slice(int(kept[0]), int(kept[-1]) + 1)  # the example without its padding
            tokens = inputs[row, span].clone()
            key = f"{self.seed}/{self.epoch}/".encode() + tokens.numpy().astype("<i8").tobytes()
            digest = hashlib.blake2b(key, digest_size=8).digest()
            self.generator = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
            special = (
                None if special_tokens_mask is None else special_tokens_mask[row : row + 1, span]
            )
            masked, row_labels = super().torch_mask_tokens(tokens[None], special)
            inputs[row, span], labels[row, span] = masked[0], row_labels[0]
        return inputs, labels


class ExampleSeededMaskCollator(ExampleSeededMasking, DataCollatorForLanguageModeling):
    """transformers' MLM collator (15% of the tokens, 80/10/10) with `ExampleSeededMasking`."""


class ExampleSeededWholeWordMaskCollator(ExampleSeededMasking, WholeWordMaskCollator):
    """`WholeWordMaskCollator` with `ExampleSeededMasking`."""


class MaskingEpochCallback(TrainerCallback):
    """Tells an `ExampleSeededMasking` collator the Trainer's epoch at the start of each epoch."""

    def __init__(self, collator: ExampleSeededMasking):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the number of epochs done: whole at an epoch's start (fractional only when
        # resuming from a checkpoint saved inside this epoch).
        self.collator.epoch = math.floor((state.epoch or 0) + 1e-6)


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


# --------------------------------------------------------------------------------------------------
# Parallel text (translation)
# --------------------------------------------------------------------------------------------------

_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def date_translation_pairs(count: int, seed: int = 0) -> dict[str, list[str]]:
    """A small translation task that needs no download: dates written as people write them
    ("Friday, March 5, 2021", "5 Mar 2021", "05.03.2021", ...) -> ISO 8601 ("2021-03-05").

    Solving it needs what translation needs, in miniature: reading the whole source, reordering
    (day, month and year come in several orders), and mapping words to other tokens (month names to
    numbers). A demo of the mechanism (the cross-attention weights show the alignment), not a
    benchmark. Returns {"source": [...], "target": [...]}.
    """
    import datetime

    rng = random.Random(seed)
    start = datetime.date(1900, 1, 1).toordinal()
    end = datetime.date(2099, 12, 31).toordinal()
    formats = [
        lambda d: f"{_WEEKDAYS[d.weekday()]}, {_MONTHS[d.month - 1]} {d.day}, {d.year}",
        lambda d: f"{d.day} {_MONTHS[d.month - 1]} {d.year}",
        lambda d: f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
        lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
        lambda d: f"{_MONTHS[d.month - 1][:3]} {d.day} {d.year}",
        lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
        lambda d: f"the {d.day}th of {_MONTHS[d.month - 1]}, {d.year}",
        lambda d: f"{_WEEKDAYS[d.weekday()][:3]} {d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
    ]
    sources, targets = [], []
    for _ in range(count):
        date = datetime.date.fromordinal(rng.randint(start, end))
        sources.append(rng.choice(formats)(date))
        targets.append(date.isoformat())
    return {"source": sources, "target": targets}


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
            description = _hub_dataset(self.dataset_name, self.dataset_config_name)
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
