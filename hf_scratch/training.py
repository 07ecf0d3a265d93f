"""What the example scripts share: their arguments, their tokenizer, and their ending (train,
evaluate on the held-out split, save everything)."""

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments


def train_evaluate_save(trainer: Trainer, perplexity: bool = False) -> dict[str, float]:
    """Train (resuming from `--resume_from_checkpoint` if given), evaluate, and write the metrics
    (eval_results.json), the model and tokenizer (`save_pretrained`, with the model's source files)
    and the trainer state (trainer_state.json, the loss curve) into the output folder. With
    `perplexity`, the metrics add exp(eval_loss), the perplexity of a language model's mean loss."""
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    if perplexity:
        metrics["perplexity"] = math.exp(metrics["eval_loss"])
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    trainer.save_model()
    trainer.save_state()
    return metrics


def load_or_train_tokenizer(
    name_or_path: str | None, training_args: TrainingArguments, train: Callable[[], object]
):
    """The tokenizer at `name_or_path`, or one made by `train()`: trained once, by the main process
    (the others wait and load it), saved in `<output_dir>/tokenizer` and reused by a resumed run."""
    if name_or_path:
        return AutoTokenizer.from_pretrained(name_or_path)
    saved = Path(training_args.output_dir) / "tokenizer"
    with training_args.main_process_first(desc="training the tokenizer"):
        if not (saved / "tokenizer.json").exists():
            train().save_pretrained(saved)
        return AutoTokenizer.from_pretrained(saved)


def parse_arguments(dataclass_types: tuple, defaults: list[str], argv: list[str] | None):
    """HfArgumentParser over the script's defaults followed by the user's arguments (argparse keeps
    the last value given, so the user's win)."""
    parser = HfArgumentParser(dataclass_types)
    return parser.parse_args_into_dataclasses(
        args=defaults + (sys.argv[1:] if argv is None else argv)
    )


@dataclass
class PretrainingModelArguments:
    """The model a pre-training script trains: a new one from a config, or a checkpoint to continue.
    Each script sets its own defaults for `config_name` and `tokenizer_vocab_size`."""

    config_name: str = field(
        default="",
        metadata={"help": "folder (or hub id) of the model config to train from scratch"},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "continue pre-training this checkpoint instead"}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "comma-separated config changes, e.g. 'num_hidden_layers=2,hidden_size=64'"
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "tokenizer to use; by default one is trained on the data"}
    )
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "vocabulary size of the trained tokenizer"}
    )


def pretraining_model(auto_class, arguments: PretrainingModelArguments, tokenizer, **settings):
    """The checkpoint at `model_name_or_path` with `settings` applied to its config; or a new model
    from `config_name` with `config_overrides`, the tokenizer's vocabulary size and special token
    ids, and `settings`."""
    if arguments.model_name_or_path:
        return auto_class.from_pretrained(
            arguments.model_name_or_path, trust_remote_code=True, **settings
        )
    config = AutoConfig.from_pretrained(arguments.config_name, trust_remote_code=True)
    if arguments.config_overrides:
        config.update_from_string(arguments.config_overrides)
    config.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, name, getattr(tokenizer, name))
    for name, value in settings.items():
        setattr(config, name, value)
    config.validate_architecture()
    return auto_class.from_config(config, trust_remote_code=True)
