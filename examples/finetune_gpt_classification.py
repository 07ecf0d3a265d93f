"""Fine-tune a pre-trained GPT for classification with the paper's objective L3 = L2 + lambda * L1.

    python examples/finetune_gpt_classification.py --model_name_or_path outputs/gpt-pydoc
    python examples/finetune_gpt_classification.py --model_name_or_path outputs/gpt-pydoc \
        --train_file ../shared/data/glue/RTE/train.tsv \
        --validation_file ../shared/data/glue/RTE/dev.tsv \
        --text_column sentence1 --text_pair_column sentence2

Inputs are transformed as in §3.3: <s> text <e> for single sentences, <s> premise $ hypothesis <e>
for pairs, with the start, delimiter and extract tokens added to the tokenizer and the embeddings.
The classifier reads h_l^m at the extract token; the auxiliary language-modelling loss on the same
inputs is weighted by `--lm_loss_weight` (0.5 in the paper, 0 turns it off). Accuracy (and F1 for
two classes) on the validation file are computed in `compute_metrics`, offline. Files are GLUE-style
.tsv (a header row) or .csv / .json(l); the label column holds integers or strings. `--do_train`,
`--do_eval` and `--do_predict` (labels of `--test_file`, written to predict_results.txt) run only
the stages named; naming none trains and evaluates.
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
    set_seed,
)

import hf_scratch  # noqa: F401  (registers the hf_scratch model types with the Auto classes)
from hf_scratch import GPTTaskInputs
from hf_scratch.data import load_classification_data
from hf_scratch.metrics import classification_metrics
from hf_scratch.training import (
    RemoteCodeArguments,
    ScratchTrainer,
    from_pretrained,
    parse_arguments,
    predict_labels,
    save_and_share,
    stage_splits,
    train_and_evaluate,
)

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "glue" / "SST-2"


@dataclass
class Arguments(RemoteCodeArguments):
    model_name_or_path: str = field(
        default="outputs/gpt-pydoc", metadata={"help": "a pre-trained GPT folder (pretrain_gpt.py)"}
    )
    train_file: str = field(default=str(SST2 / "train.tsv"))
    validation_file: str = field(default=str(SST2 / "dev.tsv"))
    test_file: str | None = field(default=None, metadata={"help": "rows to label (--do_predict)"})
    text_column: str = field(default="sentence")
    text_pair_column: str | None = field(default=None, metadata={"help": "second text (pairs)"})
    label_column: str = field(default="label")
    max_length: int = field(default=64, metadata={"help": "tokens per formatted input"})
    max_train_samples: int | None = field(default=4000)
    max_eval_samples: int | None = field(default=None)
    max_predict_samples: int | None = field(default=None)
    lm_loss_weight: float = field(default=0.5, metadata={"help": "lambda in L3 = L2 + lambda L1"})


DEFAULT_ARGUMENTS = [
    "--output_dir", "outputs/gpt-pydoc-sst2",
    "--num_train_epochs", "2",
    "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "64",
    "--learning_rate", "6.25e-5",  # the paper's fine-tuning rate
    "--warmup_steps", "0.002",  # a fraction of the training steps, as in the paper
    "--lr_scheduler_type", "linear",
    "--logging_steps", "20",
    "--eval_strategy", "epoch",
    "--save_strategy", "no",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    args, training_args = parse_arguments(
        (Arguments, TrainingArguments),
        DEFAULT_ARGUMENTS,
        argv,
        stages=("do_train", "do_eval", "do_predict"),
    )
    if training_args.do_predict and args.test_file is None:
        raise ValueError("--do_predict labels the rows of --test_file: give one")
    set_seed(training_args.seed)
    splits, labels = load_classification_data(
        args.train_file,
        args.validation_file,
        args.label_column,
        args.max_train_samples,
        args.max_eval_samples,
        seed=training_args.seed,
        test_file=args.test_file if training_args.do_predict else None,
        max_predict_samples=args.max_predict_samples,
    )

    tokenizer = from_pretrained(AutoTokenizer, args.model_name_or_path, args.trust_remote_code)
    model = from_pretrained(
        AutoModelForSequenceClassification,
        args.model_name_or_path,
        args.trust_remote_code,
        **labels,
        lm_loss_weight=args.lm_loss_weight,
    )
    task_inputs = GPTTaskInputs(tokenizer, model, max_length=args.max_length)
    model.config.pad_token_id = tokenizer.pad_token_id

    def encode(example):
        if args.text_pair_column:
            input_ids = task_inputs.entailment(
                example[args.text_column], example[args.text_pair_column]
            )
        else:
            input_ids = task_inputs.classification(example[args.text_column])
        encoded = {"input_ids": input_ids}
        if args.label_column in example:  # GLUE's test files have no labels
            encoded["labels"] = labels["label2id"][str(example[args.label_column])]
        return encoded

    sample = str(splits["validation"][args.text_column][0])
    with training_args.main_process_first(desc="formatting inputs"):
        encoded = {
            split: splits[split].map(
                encode, remove_columns=splits[split].column_names, desc=f"{split}: formatting"
            )
            for split in stage_splits(training_args)
        }

    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=classification_metrics,
    )
    metrics = train_and_evaluate(trainer)
    if training_args.do_predict:
        metrics.update(predict_labels(trainer, encoded["test"], model.config.id2label))
    if training_args.do_train:
        data = Path(args.train_file).name
        description = f"{data} (fine-tuned from {args.model_name_or_path})"
        save_and_share(trainer, description, plot_text=sample)
    return metrics


if __name__ == "__main__":
    main()
