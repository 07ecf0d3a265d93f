"""Train the Transformer (Vaswani et al. 2017) for translation, evaluate BLEU and chrF, save it.

    python examples/train_translation.py          # built-in demo (dates -> ISO 8601), no download
    python examples/train_translation.py --data_dir ../shared/data/multi30k/raw \
        --source_lang en --target_lang de --output_dir outputs/multi30k-en-de    # Multi30k
    python examples/train_translation.py --train_file train.jsonl --validation_file dev.jsonl \
        --source_lang fr --target_lang en
    accelerate launch examples/train_translation.py --dataset_name wmt16 \
        --dataset_config_name de-en --source_lang en --target_lang de \
        --config_name configuration/transformer-base

Data: line-aligned files `{data_dir}/{prefix}.{lang}` (`--train_prefix`, `--validation_prefix`,
`--test_prefix`), .tsv ("source<TAB>target") or .json(l) files with one key per language, or a hub
translation dataset. With none of them, the script trains on a generated task, writing dates the
way people do ("Friday, March 5, 2021", "05.03.2021") as ISO dates ("2021-03-05"): a demo that runs
offline in a few minutes and shows the model reordering and mapping words, not a benchmark.

Without `--tokenizer_name`, a BPE tokenizer shared by both languages is trained on the training
split (§5.1: one joint vocabulary; the source, target and output embeddings are then one matrix).
`Seq2SeqTrainer` trains with the label-smoothed loss the model computes (eps = 0.1), Adam with
beta2 = 0.98, eps = 1e-9 and the paper's warmup + inverse-square-root schedule (§5.3), and decodes
with beam search (4 beams, length penalty 0.6, §6.1) to report BLEU (sacreBLEU) and chrF on the
validation and test sets. The model, its generation settings and the tokenizer are saved with
`save_pretrained`, with the model's source files, so the folder translates through
`AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)` where hf_scratch is not
installed. Every `Seq2SeqTrainingArguments` option works (`--max_steps`, `--bf16`, ...);
`--generation_num_beams` and `--generation_max_length` set how evaluation decodes. `--do_train`,
`--do_eval` and `--do_predict` (BLEU and chrF on the test split) run only the stages named; naming
none runs all three.
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainingArguments,
    set_seed,
)

import hf_scratch  # noqa: F401  (registers the hf_scratch model types with the Auto classes)
from hf_scratch.data import TranslationDataArguments, describe_sizes, load_translation_data
from hf_scratch.metrics import decode_token_ids, translation_metrics
from hf_scratch.tokenization import train_translation_bpe
from hf_scratch.training import (
    PretrainingModelArguments,
    ScratchSeq2SeqTrainer,
    load_or_train_tokenizer,
    parse_arguments,
    pretraining_model,
    save_and_share,
    stage_splits,
    train_and_evaluate,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ModelArguments(PretrainingModelArguments):
    config_name: str = field(default=str(REPO / "configuration" / "transformer-small"))
    tokenizer_vocab_size: int = field(default=8000)


@dataclass
class TranslationArguments(TranslationDataArguments):
    max_source_length: int = field(default=128, metadata={"help": "longer sources are truncated"})
    max_target_length: int = field(default=128, metadata={"help": "longer targets are truncated"})
    num_beams: int | None = field(
        default=None,
        metadata={
            "help": "beam size saved in the model's generation config (§6.1: 4, a new model's "
            "default; a loaded model keeps its own); --generation_num_beams overrides it for "
            "evaluation"
        },
    )
    length_penalty: float | None = field(
        default=None,
        metadata={
            "help": "alpha of §6.1 (0.6, a new model's default; a loaded model keeps its own)"
        },
    )

    num_samples: int = field(default=5, metadata={"help": "test translations to print"})
    preprocessing_num_workers: int | None = field(default=None)


STAGES = ("do_train", "do_eval", "do_predict")  # predict: BLEU and chrF on the test split
# Defaults of this script, before the user's own arguments (argparse keeps the last value given).
DEFAULT_ARGUMENTS = [
    "--output_dir", "outputs/transformer-translation",
    "--num_train_epochs", "3",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "128",
    "--learning_rate", "1e-3",
    "--lr_scheduler_type", "inverse_sqrt",
    "--warmup_steps", "0.1",
    "--adam_beta2", "0.98",
    "--adam_epsilon", "1e-9",
    "--logging_steps", "50",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--save_total_limit", "1",
    "--predict_with_generate", "true",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, TranslationArguments, Seq2SeqTrainingArguments),
        DEFAULT_ARGUMENTS,
        argv,
        stages=STAGES,
        default_stages=STAGES,
    )
    set_seed(training_args.seed)
    raw = load_translation_data(data_args, seed=training_args.seed)
    if data_args.max_predict_samples is not None and "test" in raw:
        raw["test"] = raw["test"].select(
            range(min(data_args.max_predict_samples, len(raw["test"])))
        )
    tokenizer = load_or_train_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path,
        training_args,
        lambda: list(raw["train"]["source"]) + list(raw["train"]["target"]),
        partial(train_translation_bpe, vocab_size=model_args.tokenizer_vocab_size),
        data=data_args.describe()[0],
        trust_remote_code=model_args.trust_remote_code,
    )
    # A new model reads the shared vocabulary on both sides, starts decoding with <s> and decodes
    # with the paper's beam search (§6.1); a checkpoint keeps its own settings unless told.
    settings = {}
    new_model = not model_args.model_name_or_path
    if new_model:
        settings = dict(
            decoder_vocab_size=len(tokenizer), decoder_start_token_id=tokenizer.bos_token_id
        )
    model = pretraining_model(AutoModelForSeq2SeqLM, model_args, tokenizer, **settings)
    longest = max(data_args.max_source_length, data_args.max_target_length)
    if longest > model.config.max_position_embeddings:
        raise ValueError(
            f"max_source_length / max_target_length {longest} exceed the model's "
            f"max_position_embeddings ({model.config.max_position_embeddings})"
        )
    generation = model.generation_config
    beams = data_args.num_beams or (4 if new_model else None)
    if beams is not None:
        generation.num_beams = beams
    penalty = data_args.length_penalty or (0.6 if new_model else None)
    if penalty is not None and generation.num_beams > 1:  # GenerationConfig refuses it alone
        generation.length_penalty = penalty
    # Evaluation decodes as the model's generation config says, up to max_target_length tokens,
    # unless --generation_num_beams / --generation_max_length say otherwise.
    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.max_target_length

    def tokenize(batch):
        encoded = tokenizer(
            batch["source"], max_length=data_args.max_source_length, truncation=True
        )
        targets = tokenizer(
            text_target=batch["target"], max_length=data_args.max_target_length, truncation=True
        )
        return {**encoded, "labels": targets["input_ids"]}

    splits = [split for split in stage_splits(training_args) if split in raw]
    if training_args.do_predict and "test" not in raw:
        print("no test split: nothing to predict (--test_file or --test_prefix gives one)")
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = {
            split: raw[split].map(
                tokenize,
                batched=True,
                remove_columns=["source", "target"],
                num_proc=data_args.preprocessing_num_workers,
                desc=f"{split}: tokenizing",
            )
            for split in splits
        }
    print(
        f"{describe_sizes(tokenized)} pairs; vocabulary {len(tokenizer)}; model with "
        f"{model.num_parameters():,} parameters"
    )

    trainer = ScratchSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized.get("train"),
        eval_dataset=tokenized.get("validation"),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, pad_to_multiple_of=8),
        processing_class=tokenizer,
        compute_metrics=translation_metrics(tokenizer),
    )
    metrics = train_and_evaluate(trainer)
    if "test" in tokenized:
        prediction = trainer.predict(tokenized["test"], metric_key_prefix="test")
        trainer.log_metrics("test", prediction.metrics)
        trainer.save_metrics("test", prediction.metrics)
        metrics.update(prediction.metrics)
        if trainer.is_world_process_zero():
            print_samples(raw["test"], prediction.predictions, tokenizer, data_args.num_samples)
    if training_args.do_train:
        sample = raw["test" if "test" in raw else "validation"]["source"][0]
        save_and_share(
            trainer, *data_args.describe(), plot_text=sample
        )  # its translation's attention
    return metrics


def print_samples(pairs, predictions, tokenizer, count: int) -> None:
    count = min(count, len(pairs))
    for index, hypothesis in enumerate(decode_token_ids(tokenizer, predictions[:count])):
        print(f"source:     {pairs[index]['source']}")
        print(f"reference:  {pairs[index]['target']}")
        print(f"hypothesis: {hypothesis}\n")


if __name__ == "__main__":
    main()
