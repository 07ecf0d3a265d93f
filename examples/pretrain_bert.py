"""Pre-train BERT on masked LM + next sentence prediction (Devlin et al. 2019, §3.1).

    python examples/pretrain_bert.py                                  # embedded corpus, offline
    python examples/pretrain_bert.py --train_file ../shared/data/wikitext-2/test.txt \
        --validation_file ../shared/data/wikitext-2/valid.txt --config_name configuration/bert-mini
    accelerate launch examples/pretrain_bert.py --dataset_name wikitext \
        --dataset_config_name wikitext-103-raw-v1 --streaming --max_steps 100000 \
        --config_name configuration/bert-base

Documents (rows of the data; with no data argument, the text of Python's documentation shipped with
Python) are split into segments (lines, sentences) and tokenized with the given tokenizer or a
WordPiece tokenizer trained here; `NextSentencePairs` packs them into [CLS] A [SEP] B [SEP] pairs
(50% IsNext, 50% a random other document); the collator masks 15% of the tokens (80% [MASK], 10%
random, 10% unchanged; `--whole_word_mask` for whole words). The model trains on MLM + NSP with
sparse MLM prediction (only masked positions are projected to the vocabulary), and the held-out
split reports MLM accuracy, NSP accuracy and MLM perplexity. Model and tokenizer are saved with
`save_pretrained`, with the model's source files, so the folder loads with
`AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True)` without hf_scratch.
`--do_train` / `--do_eval` run only the stages named (both when neither is); with `--streaming`
the training documents are read as training consumes them, and a NotNext pair's B comes from
another document of the same batch of 1,000.
"""

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from datasets import IterableDataset
from transformers import (
    AutoModelForPreTraining,
    TrainingArguments,
    set_seed,
)

import hf_scratch  # noqa: F401  (registers the hf_scratch model types with the Auto classes)
from hf_scratch.data import (
    CorpusArguments,
    ExampleSeededMaskCollator,
    ExampleSeededWholeWordMaskCollator,
    MaskingEpochCallback,
    NextSentencePairs,
    describe_sizes,
    load_corpus,
    map_rows,
    map_splits,
    split_segments,
)
from hf_scratch.tokenization import train_wordpiece
from hf_scratch.training import (
    PretrainingModelArguments,
    PreTrainingTrainer,
    load_or_train_tokenizer,
    parse_arguments,
    pretraining_model,
    save_and_share,
    stage_splits,
    tokenizer_training_texts,
    train_and_evaluate,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ModelArguments(PretrainingModelArguments):
    config_name: str = field(default=str(REPO / "configuration" / "bert-mini"))
    sparse_prediction: bool = field(
        default=True, metadata={"help": "project only masked positions to the vocabulary"}
    )


@dataclass
class DataArguments:
    max_seq_length: int = field(default=128)
    short_seq_prob: float = field(default=0.1)
    mlm_probability: float = field(default=0.15)
    whole_word_mask: bool = field(default=False)


DEFAULT_ARGUMENTS = [
    "--output_dir", "outputs/bert-pydoc",
    "--num_train_epochs", "8",
    "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "32",
    "--learning_rate", "5e-4",
    "--warmup_steps", "0.06",
    "--weight_decay", "0.01",
    "--logging_steps", "20",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--save_total_limit", "1",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def keep_predictions(logits, labels):
    """Per batch, keep only what the metrics need, shaped per example (the Trainer trims the last
    batch by its first dimension): the predicted token and its negative log-likelihood at each
    masked position, (B, T) with -100 elsewhere, and the predicted NSP class, (B,)."""
    prediction_logits, seq_relationship_logits = logits
    mlm_labels = labels[0]
    masked = mlm_labels != -100
    if prediction_logits.dim() == 3:  # dense prediction: select the masked positions
        prediction_logits = prediction_logits[masked]
    predicted = torch.full_like(mlm_labels, -100)
    predicted[masked] = prediction_logits.argmax(-1)
    negative_log_likelihood = torch.full(mlm_labels.shape, -100.0, device=mlm_labels.device)
    negative_log_likelihood[masked] = torch.nn.functional.cross_entropy(
        prediction_logits.float(), mlm_labels[masked], reduction="none"
    )
    return predicted, negative_log_likelihood, seq_relationship_logits.argmax(-1)


def compute_metrics(prediction) -> dict[str, float]:
    predicted, negative_log_likelihood, nsp_predictions = prediction.predictions
    mlm_labels, nsp_labels = prediction.label_ids
    masked = mlm_labels != -100
    return {
        "mlm_accuracy": float((predicted[masked] == mlm_labels[masked]).mean()),
        "mlm_perplexity": math.exp(float(np.mean(negative_log_likelihood[masked]))),
        "nsp_accuracy": float((nsp_predictions == nsp_labels).mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, corpus_args, data_args, training_args = parse_arguments(
        (ModelArguments, CorpusArguments, DataArguments, TrainingArguments), DEFAULT_ARGUMENTS, argv
    )
    if corpus_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs")
    set_seed(training_args.seed)
    raw = load_corpus(corpus_args, seed=training_args.seed)
    column = corpus_args.text_column
    tokenizer = load_or_train_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path,
        training_args,
        lambda: tokenizer_training_texts(raw["train"], column, model_args.tokenizer_train_rows),
        partial(train_wordpiece, vocab_size=model_args.tokenizer_vocab_size),
        data=corpus_args.describe()[0],
        trust_remote_code=model_args.trust_remote_code,
    )

    def tokenize_segments(batch):
        segments = [split_segments(document) for document in batch[column]]
        flat = tokenizer([s for doc in segments for s in doc], add_special_tokens=False)[
            "input_ids"
        ]
        grouped, start = [], 0
        for doc in segments:
            grouped.append(flat[start : start + len(doc)])
            start += len(doc)
        return {"segments": grouped}

    workers = corpus_args.preprocessing_num_workers
    with training_args.main_process_first(desc="building sentence pairs"):
        tokenized = map_splits(
            raw, stage_splits(training_args), tokenize_segments, "tokenizing documents", workers
        )
        pairs = {
            split: map_rows(
                documents,
                NextSentencePairs(
                    # a stream's documents cannot be looked up: random B from the same batch
                    None if isinstance(documents, IterableDataset) else documents,
                    tokenizer.cls_token_id,
                    tokenizer.sep_token_id,
                    max_seq_length=data_args.max_seq_length,
                    short_seq_prob=data_args.short_seq_prob,
                    seed=training_args.seed,
                ),
                f"{split}: next-sentence pairs",
                workers,
                with_indices=True,
                remove_columns=["segments"],
            )
            for split, documents in tokenized.items()
        }
    pairs = corpus_args.limit(pairs)
    print(f"{describe_sizes(pairs)} sentence pairs")

    model = pretraining_model(
        AutoModelForPreTraining,
        model_args,
        tokenizer,
        sparse_prediction=model_args.sparse_prediction,
    )

    # Masks drawn from the seed, the epoch and each example's tokens, not from a generator whose
    # state a checkpoint does not keep: a resumed run masks as the uninterrupted one did.
    collator_class = (
        ExampleSeededWholeWordMaskCollator
        if data_args.whole_word_mask
        else ExampleSeededMaskCollator
    )
    collator = collator_class(
        tokenizer, mlm_probability=data_args.mlm_probability, seed=training_args.seed
    )
    # The MLM and NSP means over the whole step's masked tokens and sequences: with the masks
    # above, any number of processes and accumulation steps giving the same global batch trains
    # the same model.
    trainer = PreTrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=pairs.get("train"),
        eval_dataset=pairs.get("validation"),
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=keep_predictions,
        callbacks=[MaskingEpochCallback(collator)],
    )
    metrics = train_and_evaluate(trainer)
    if training_args.do_train:
        sample = next((text for text in raw["validation"][column] if text.strip()), None)
        save_and_share(trainer, *corpus_args.describe(), plot_text=sample)
    return metrics


if __name__ == "__main__":
    main()
