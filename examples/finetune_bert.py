"""Fine-tune BERT for sentence or sentence-pair classification (Devlin et al. 2019, §4.1).

    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc       # SST-2
    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc --task_name MRPC
    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc \
        --train_file train.csv --validation_file dev.csv --text_column a --text_pair_column b
    python examples/finetune_bert.py --model_name_or_path outputs/bert-finetuned --do_predict \
        --output_dir outputs/bert-sst2-test      # labels of GLUE's test set, predict_results.txt

A pair is encoded as [CLS] A [SEP] B [SEP] with segment ids 0 / 1; the classifier reads the pooled
[CLS] state. Accuracy and F1 (binary tasks) on the validation file are computed in
`compute_metrics`, offline. The GLUE tasks in ../shared/data/glue are known by name (`--task_name
SST-2`, `MRPC`, `RTE`; `--task` is the same flag); other data: .tsv (header row), .csv or .json(l)
files with the columns named. `--do_train`, `--do_eval` and `--do_predict` (labels of the test file,
GLUE's test.tsv for a task) run only the stages named; naming none trains and evaluates.
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

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
# task -> (text column, pair column, label column) in the GLUE .tsv files
GLUE_COLUMNS = {
    "SST-2": ("sentence", None, "label"),
    "MRPC": ("#1 String", "#2 String", "Quality"),
    "RTE": ("sentence1", "sentence2", "label"),
}


@dataclass
class Arguments(RemoteCodeArguments):
    model_name_or_path: str = field(
        default="outputs/bert-pydoc", metadata={"help": "a pre-trained BERT folder"}
    )
    task_name: str | None = field(
        default="SST-2", metadata={"help": "SST-2, MRPC or RTE", "aliases": ["--task"]}
    )
    train_file: str | None = field(default=None)
    validation_file: str | None = field(default=None)
    test_file: str | None = field(default=None, metadata={"help": "rows to label (--do_predict)"})
    text_column: str | None = field(default=None)
    text_pair_column: str | None = field(default=None)
    label_column: str | None = field(default=None)
    max_seq_length: int = field(default=128)
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    max_predict_samples: int | None = field(default=None)


STAGES = ("do_train", "do_eval", "do_predict")
DEFAULT_ARGUMENTS = [
    "--output_dir", "outputs/bert-finetuned",
    "--num_train_epochs", "3",
    "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "64",
    "--learning_rate", "5e-5",
    "--warmup_steps", "0.1",
    "--logging_steps", "20",
    "--eval_strategy", "epoch",
    "--save_strategy", "no",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    args, training_args = parse_arguments(
        (Arguments, TrainingArguments), DEFAULT_ARGUMENTS, argv, stages=STAGES
    )
    set_seed(training_args.seed)
    text, pair, label = args.text_column, args.text_pair_column, args.label_column
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    if args.train_file is None:
        if args.task_name not in GLUE_COLUMNS:
            raise ValueError(f"give --train_file or a --task_name among {sorted(GLUE_COLUMNS)}")
        glue = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
        files = {
            split: files[split] or str(GLUE / args.task_name / name) for split, name in glue.items()
        }
        text, pair, label = GLUE_COLUMNS[args.task_name]
    splits, labels = load_classification_data(
        files["train"],
        files["validation"],
        label,
        args.max_train_samples,
        args.max_eval_samples,
        seed=training_args.seed,
        test_file=files["test"] if training_args.do_predict else None,
        max_predict_samples=args.max_predict_samples,
    )

    tokenizer = from_pretrained(AutoTokenizer, args.model_name_or_path, args.trust_remote_code)
    model = from_pretrained(
        AutoModelForSequenceClassification,
        args.model_name_or_path,
        args.trust_remote_code,
        **labels,
    )

    def encode(batch):
        pairs = batch[pair] if pair else None
        encoded = tokenizer(
            [str(t) for t in batch[text]],
            [str(t) for t in pairs] if pairs else None,
            truncation=True,
            max_length=args.max_seq_length,
        )
        if label in batch:  # GLUE's test files have no labels
            encoded["labels"] = [labels["label2id"][str(value)] for value in batch[label]]
        return encoded

    sample = str(splits["validation"][text][0])
    with training_args.main_process_first(desc="tokenizing"):
        encoded = {
            split: splits[split].map(
                encode, batched=True, remove_columns=splits[split].column_names
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
        data = f"GLUE {args.task_name}" if args.train_file is None else Path(files["train"]).name
        description = f"{data} (fine-tuned from {args.model_name_or_path})"
        save_and_share(trainer, description, plot_text=sample)
    return metrics


if __name__ == "__main__":
    main()
