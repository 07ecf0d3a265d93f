"""What the example scripts share: their arguments, their tokenizer, their Trainer, and their
ending (train, evaluate on the held-out split, save and share everything)."""

import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    HfArgumentParser,
    Seq2SeqTrainer,
    Trainer,
    TrainingArguments,
)

from .hub import write_model_card
from .plotting import write_run_plots


class ModelCardMixin:
    """`create_model_card`, which `Trainer.push_to_hub` calls before uploading, writes hf_scratch's
    card (`hub.model_card`: what the model is, how to load it without hf_scratch) instead of
    transformers' draft. `dataset` describes the training data."""

    def create_model_card(self, model_name=None, dataset=None, dataset_tags=None, **unused):
        write_model_card(self, dataset or "not recorded", dataset_tags, model_name)


class ScratchTrainer(ModelCardMixin, Trainer):
    """transformers' `Trainer` with hf_scratch's model card."""


class ScratchSeq2SeqTrainer(ModelCardMixin, Seq2SeqTrainer):
    """transformers' `Seq2SeqTrainer` with hf_scratch's model card."""


class PreTrainingTrainer(ScratchTrainer):
    """`ScratchTrainer` for BERT pre-training (`ScratchBertForPreTraining`, whose loss is the MLM
    mean over masked tokens plus the NSP mean over sequences): each term is divided by its count
    over the whole optimizer step (every accumulated micro-batch, on every process), so that a
    step is that of one large batch whatever the number of processes and of accumulation steps.
    The plain Trainer averages the micro-batches' and the processes' own means instead, which is
    the same only when they hold equally many masked tokens. Evaluation is unchanged."""

    _step_counts = None  # masked tokens and sequences of the current optimizer step

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = torch.tensor(
            [sum(map(_masked_tokens, batches)), sum(map(_sequences, batches))], device=device
        )
        if self._averages_across_processes():
            counts = self.accelerator.gather(counts).view(-1, 2).sum(0)
        self._step_counts = counts.tolist()
        return batches, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training and self._step_counts is not None and not self.model_accepts_loss_kwargs:
            masked, sequences = self._step_counts
            parts = [
                (outputs.get("mlm_loss"), _masked_tokens(inputs), masked),
                (outputs.get("nsp_loss"), _sequences(inputs), sequences),
            ]
            # local mean * local count / count of the step = local sum / count of the step
            loss = sum(
                mean * (count / max(total, 1)) for mean, count, total in parts if mean is not None
            )
            # The Trainer divides by the step's micro-batches and DDP averages the processes'
            # gradients: undo both, the counts are already those of the whole step.
            loss = loss * self.current_gradient_accumulation_steps
            if self._averages_across_processes():
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _averages_across_processes(self) -> bool:
        return self.args.average_tokens_across_devices and self.args.world_size > 1


def _masked_tokens(batch) -> int:
    labels = batch.get("labels")
    return 0 if labels is None else int((labels != -100).sum())


def _sequences(batch) -> int:
    labels = batch.get("next_sentence_label")
    return 0 if labels is None else labels.numel()


def train_and_evaluate(trainer: Trainer, perplexity: bool = False) -> dict[str, float]:
    """Train (resuming from `--resume_from_checkpoint` if given) and evaluate on the held-out split,
    writing the metrics (eval_results.json). With `perplexity`, the metrics add exp(eval_loss), the
    perplexity of a language model's mean loss."""
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    if perplexity:
        metrics["perplexity"] = math.exp(metrics["eval_loss"])
        trainer.log({"perplexity": metrics["perplexity"]})  # into the history, for the curves
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def model_is_sharded(trainer: Trainer) -> bool:
    """Whether the trained model's parameters are split across the processes (FSDP, DeepSpeed
    ZeRO-3): then a forward pass needs every process, and one process alone (samples, attention
    plots) would wait for the others forever or fail."""
    if trainer.is_fsdp_enabled:
        return True
    plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    return plugin is not None and plugin.zero_stage == 3


def save_and_share(
    trainer: Trainer,
    dataset: str,
    dataset_id: str | None = None,
    plot_text: str | None = None,
    plot_target: str | None = None,
) -> None:
    """Write into the output folder the model and tokenizer (`save_pretrained`, with the model's
    source files), the trainer state (trainer_state.json, the loss curve), the pictures
    (plots/: training curves, and the attention heatmaps of `plot_text`, translated as
    `plot_target` by an encoder-decoder) and the model card (README.md); with `--push_to_hub`,
    upload the folder to `--hub_model_id`. `dataset` describes the training data for the card;
    `dataset_id` is its hub id, if it has one."""
    if trainer.is_fsdp_enabled:
        # Checkpoints may stay sharded (fsdp_state_dict_type SHARDED_STATE_DICT), but the model
        # folder is gathered into one full state dict: the Trainer saves no model otherwise.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model()
    trainer.save_state()
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        if plot_text is not None and model_is_sharded(trainer):
            print("attention plots skipped: the model is sharded; draw them from the saved folder")
            model = None
        write_run_plots(
            trainer.args.output_dir,
            model,
            trainer.processing_class,
            text=plot_text,
            target_text=plot_target,
        )
    trainer.create_model_card(dataset=dataset, dataset_tags=dataset_id)
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset=dataset, dataset_tags=dataset_id)


def load_or_train_tokenizer(
    name_or_path: str | None, training_args: TrainingArguments, train: Callable[[], object]
):
    """The tokenizer at `name_or_path`, or one made by `train()`: trained once, by the main process
    (the others wait and load it), saved in `<output_dir>/tokenizer` and reused by a later run. A
    run resumed from a checkpoint takes the checkpoint's tokenizer, the one its weights were
    trained with (training one again need not give the same vocabulary)."""
    if name_or_path:
        return AutoTokenizer.from_pretrained(name_or_path)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint and (Path(checkpoint) / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(checkpoint)
    saved = Path(training_args.output_dir) / "tokenizer"
    with training_args.main_process_first(desc="training the tokenizer"):
        if not (saved / "tokenizer.json").exists():
            # Saved aside, then renamed: a run killed while saving leaves no partial tokenizer.
            partial = saved.with_name("tokenizer.partial")
            shutil.rmtree(partial, ignore_errors=True)
            train().save_pretrained(partial)
            shutil.rmtree(saved, ignore_errors=True)
            partial.rename(saved)
        return AutoTokenizer.from_pretrained(saved)


def parse_arguments(dataclass_types: tuple, defaults: list[str], argv: list[str] | None):
    """HfArgumentParser over the script's defaults followed by the user's arguments (argparse keeps
    the last value given, so the user's win).

    When a launcher (torchrun, `accelerate launch`) started several processes on a machine without
    an accelerator, the run trains on CPU, the processes together over gloo, as with `--use_cpu`:
    otherwise `TrainingArguments` would not set up the process group (on CPU it does so only with
    `--use_cpu` or ACCELERATE_USE_CPU, set here), and each process would train alone, all writing
    the same output folder."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
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
