"""Fine-tune BERT for sentence or sentence-pair classification (Devlin et al. 2019, §4.1).

    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc       # SST-2
    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc --task MRPC  # or RTE
    python examples/finetune_bert.py --model_name_or_path outputs/bert-pydoc \
        --train_file train.csv --validation_file dev.csv --text_column a --text_pair_column b

A pair is encoded as [CLS] A [SEP] B [SEP] with segment ids 0 / 1; the classifier reads the pooled
[CLS] state. Accuracy and F1 (binary tasks) on the validation file are computed in
`compute_metrics`, offline. The GLUE tasks in ../shared/data/glue are known by name (`--task SST-2`,
`MRPC`, `RTE`); other data: .tsv (header row), .csv or .json(l) files with the columns named.
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
    ScratchTrainer,
    parse_arguments,
    save_and_share,
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
class Arguments:
    model_name_or_path: str = field(
        default="outputs/bert-pydoc", metadata={"help": "a pre-trained BERT folder"}
    )
    task: str | None = field(default="SST-2", metadata={"help": "SST-2, MRPC or RTE"})
    train_file: str | None = field(default=None)
    validation_file: str | None = field(default=None)
    text_column: str | None = field(default=None)
    text_pair_column: str | None = field(default=None)
    label_column: str | None = field(default=None)
    max_seq_length: int = field(default=128)
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)


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
    args, training_args = parse_arguments((Arguments, TrainingArguments), DEFAULT_ARGUMENTS, argv)
    set_seed(training_args.seed)
    text, pair, label = args.text_column, args.text_pair_column, args.label_column
    train_file, validation_file = args.train_file, args.validation_file
    if train_file is None:
        if args.task not in GLUE_COLUMNS:
            raise ValueError(f"give --train_file or a --task among {sorted(GLUE_COLUMNS)}")
        train_file = str(GLUE / args.task / "train.tsv")
        validation_file = validation_file or str(GLUE / args.task / "dev.tsv")
        text, pair, label = GLUE_COLUMNS[args.task]
    train, validation, labels = load_classification_data(
        train_file,
        validation_file,
        label,
        args.max_train_samples,
        args.max_eval_samples,
        seed=training_args.seed,
    )

    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model_name_or_path,
        trust_remote_code=True,
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
        encoded["labels"] = [labels["label2id"][str(value)] for value in batch[label]]
        return encoded

    sample = str(validation[text][0])
    with training_args.main_process_first(desc="tokenizing"):
        train = train.map(encode, batched=True, remove_columns=train.column_names)
        validation = validation.map(encode, batched=True, remove_columns=validation.column_names)

    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=classification_metrics,
    )
    metrics = train_and_evaluate(trainer)
    data = f"GLUE {args.task}" if args.train_file is None else Path(train_file).name
    save_and_share(trainer, f"{data} (fine-tuned from {args.model_name_or_path})", plot_text=sample)
    return metrics


if __name__ == "__main__":
    main()
