"""Data preparation the examples share; nothing here is needed to run a model, so the model files
never import it. One idea per module: `corpora` (pre-training text and LM blocks), `splits`
(mapping over datasets, their sizes), `next_sentence` (BERT's NSP pairs), `masking` (BERT's MLM
collators), `tables` (labelled tables for fine-tuning), `translation` (parallel text) and
`date_task` (the built-in translation demo)."""

from .corpora import (
    CorpusArguments,
    group_texts,
    hub_dataset_name,
    load_corpus,
    load_text_datasets,
    pydoc_corpus,
)
from .date_task import date_translation_pairs
from .masking import (
    ExampleSeededMaskCollator,
    ExampleSeededMasking,
    ExampleSeededWholeWordMaskCollator,
    MaskingEpochCallback,
    WholeWordMaskCollator,
)
from .next_sentence import NextSentencePairs, split_segments
from .splits import column_names, describe_sizes, map_rows, map_splits
from .tables import load_classification_data, load_table
from .translation import TranslationDataArguments, load_translation_data

__all__ = [
    "CorpusArguments",
    "ExampleSeededMaskCollator",
    "ExampleSeededMasking",
    "ExampleSeededWholeWordMaskCollator",
    "MaskingEpochCallback",
    "NextSentencePairs",
    "TranslationDataArguments",
    "WholeWordMaskCollator",
    "column_names",
    "date_translation_pairs",
    "describe_sizes",
    "group_texts",
    "hub_dataset_name",
    "load_classification_data",
    "load_corpus",
    "load_table",
    "load_text_datasets",
    "load_translation_data",
    "map_rows",
    "map_splits",
    "pydoc_corpus",
    "split_segments",
]
