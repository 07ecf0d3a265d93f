"""What the example scripts share: their arguments, their tokenizer, their Trainer, and their
ending (train, evaluate on the held-out split, save and share everything)."""

import copy
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from datasets import IterableDataset
from transformers import (
    AutoConfig,
    AutoTokenizer,
    HfArgumentParser,
    Seq2SeqTrainer,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_utils import IntervalStrategy

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
    """transformers' `Seq2SeqTrainer` with hf_scratch's model card, leaving the model's generation
    config as it found it: `Seq2SeqTrainer.prediction_step` fills it with every default value
    (transformers 5.24), which `save_pretrained` would then write, and with `max_length: 20`
    saved, every later `generate(max_new_tokens=...)` warns that both were set."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        generation_config = copy.deepcopy(self.model.generation_config)
        try:
            return super().prediction_step(
                model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs
            )
        finally:
            self.model.generation_config = generation_config


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
    """The stages `--do_train` and `--do_eval` ask for (see `parse_arguments`): train (resuming from
    `--resume_from_checkpoint` if given), then evaluate on the held-out split, writing the metrics
    (eval_results.json). With `perplexity`, the metrics add exp(eval_loss), the perplexity of a
    language model's mean loss."""
    if trainer.args.do_train:
        trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    if not trainer.args.do_eval:
        return {}
    metrics = trainer.evaluate()
    if perplexity:
        metrics["perplexity"] = math.exp(metrics["eval_loss"])
        trainer.log({"perplexity": metrics["perplexity"]})  # into the history, for the curves
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def predict_labels(trainer: Trainer, dataset, id2label: dict[int, str]) -> dict[str, float]:
    """`--do_predict` for a classifier: the label predicted for each row of `dataset` (a test split,
    labelled or not), written as transformers' run_glue.py writes them, "index<TAB>prediction" per
    line in `<output_dir>/predict_results.txt`; the metrics too when the rows have labels."""
    output = trainer.predict(dataset, metric_key_prefix="predict")
    if trainer.is_world_process_zero():
        path = Path(trainer.args.output_dir) / "predict_results.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        predicted = output.predictions.argmax(-1).tolist()
        lines = [f"{index}\t{id2label[label]}" for index, label in enumerate(predicted)]
        path.write_text("\n".join(["index\tprediction", *lines]) + "\n")
        print(f"{len(lines)} predictions written to {path}")
    trainer.log_metrics("predict", output.metrics)
    trainer.save_metrics("predict", output.metrics)
    return output.metrics


def stage_splits(training_args: TrainingArguments) -> list[str]:
    """The data splits the stages asked for need: "train" for `--do_train`, "validation" for
    `--do_eval`, "test" for `--do_predict`."""
    stages = {
        "train": training_args.do_train,
        "validation": training_args.do_eval,
        "test": training_args.do_predict,
    }
    return [split for split, wanted in stages.items() if wanted]


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


TOKENIZER_RECORD = "tokenizer_training.json"


def text_fingerprint(texts: Iterable[str]) -> str:
    """A digest of a sequence of texts (their order and their boundaries included)."""
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        encoded = text.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def tokenizer_training_texts(train_split, column: str, rows: int | None = None) -> list[str]:
    """The texts a tokenizer is trained on: the first `rows` rows of the training split, all of
    them by default, but never a whole stream (`IterableDataset`): its first 100,000 rows."""
    if isinstance(train_split, IterableDataset):
        return [row[column] for row in islice(train_split, rows or 100_000)]
    return train_split[column] if rows is None else train_split[:rows][column]


def load_or_train_tokenizer(
    name_or_path: str | None,
    training_args: TrainingArguments,
    texts: Callable[[], Sequence[str]],
    train: Callable[[Sequence[str]], object],
    data: str = "",
    trust_remote_code: bool = False,
):
    """The tokenizer a script trains with.

    - `name_or_path` given: that tokenizer.
    - A run resumed from a checkpoint: the checkpoint's tokenizer, the one its weights were trained
      with (training one again need not give the same vocabulary).
    - Otherwise `train(texts())`, run once by the main process (the others wait and load it) and
      saved in the output folder with a record, tokenizer_training.json, of what it was trained
      on: `data` (in words), a fingerprint of the texts and the recipe (the function `train`, or
      the function and keywords of a `functools.partial`). A later run into the same folder
      reuses it only when the record matches; with other data or settings it trains a new one
      and says which one it replaces.

    The record is written last, after the tokenizer's files: a run killed while saving leaves no
    record, and the next run trains again instead of taking half a tokenizer."""
    if name_or_path:
        return from_pretrained(AutoTokenizer, name_or_path, trust_remote_code)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint and (Path(checkpoint) / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(checkpoint)
    folder = Path(training_args.output_dir)
    record_path = folder / TOKENIZER_RECORD
    recipe = {"trainer": getattr(train, "func", train).__name__, **getattr(train, "keywords", {})}
    training_texts = texts()
    record = {"data": data, "fingerprint": text_fingerprint(training_texts), "recipe": recipe}
    with training_args.main_process_first(desc="training the tokenizer"):
        previous = json.loads(record_path.read_text()) if record_path.is_file() else None
        same = previous is not None and all(
            previous.get(key) == record[key] for key in ("fingerprint", "recipe")
        )
        if same:
            print(f"using the tokenizer in {folder}, trained on this run's data ({data})")
        elif training_args.should_save:
            if previous is not None:
                print(
                    f"the tokenizer in {folder} was trained on {previous['data']} "
                    f"({previous['fingerprint']}, {previous['recipe']}); this run's data is {data} "
                    f"({record['fingerprint']}, {recipe}): training a new one"
                )
                record_path.unlink()
            partial = folder / "tokenizer.partial"
            shutil.rmtree(partial, ignore_errors=True)
            train(training_texts).save_pretrained(partial)
            for saved in partial.iterdir():
                os.replace(saved, folder / saved.name)
            partial.rmdir()
            partial_record = folder / f"{TOKENIZER_RECORD}.partial"
            partial_record.write_text(json.dumps(record, indent=2) + "\n")
            os.replace(partial_record, record_path)
        return AutoTokenizer.from_pretrained(folder)


_STAGES = ("do_train", "do_eval", "do_predict")
_TRUE, _FALSE = ("true", "yes", "1", "t", "y"), ("false", "no", "0", "f", "n")


def _named_flags(arguments: list[str], names: Iterable[str]) -> dict[str, bool]:
    """The boolean flags among `names` that `arguments` give, with their value: `--name` alone
    means True, `--name false` (or `--name=false`) False."""
    named = {}
    for index, argument in enumerate(arguments):
        flag, _, value = argument.partition("=")
        if not flag.startswith("--") or flag[2:] not in names:
            continue
        if not value and index + 1 < len(arguments):
            following = arguments[index + 1].lower()
            value = following if following in _TRUE + _FALSE else ""
        named[flag[2:]] = value.lower() not in _FALSE
    return named


def parse_arguments(
    dataclass_types: tuple,
    defaults: list[str],
    argv: list[str] | None,
    stages: Sequence[str] = ("do_train", "do_eval"),
    default_stages: Sequence[str] = ("do_train", "do_eval"),
):
    """HfArgumentParser over the script's defaults followed by the user's arguments (argparse keeps
    the last value given, so the user's win).

    Stages, as in transformers' example scripts: of the script's `stages` (`--do_train`,
    `--do_eval`, `--do_predict`), those the user names run, and only those; naming none runs the
    `default_stages`. Naming one the script does not have is an error. Without `--do_eval`, the
    script's per-epoch evaluation is off too, unless the user asked for an `--eval_strategy`.

    On a machine without an accelerator, batches are not copied to pinned memory (torch warns
    that pinning has no use there). When a launcher (torchrun, `accelerate launch`) started
    several processes on such a machine, the run trains on CPU, the processes together over
    gloo, as with `--use_cpu`: otherwise `TrainingArguments` would not set up the process group
    (on CPU it does so only with `--use_cpu` or ACCELERATE_USE_CPU, set here), and each process
    would train alone, all writing the same output folder."""
    accelerator = torch.accelerator.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not accelerator:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    user_arguments = sys.argv[1:] if argv is None else list(argv)
    parsed = HfArgumentParser(dataclass_types).parse_args_into_dataclasses(
        args=defaults + user_arguments
    )
    training_args = next(part for part in parsed if isinstance(part, TrainingArguments))
    named = _named_flags(user_arguments, _STAGES)
    for stage in _STAGES:
        if named.get(stage) and stage not in stages:
            script = Path(sys.argv[0]).name
            raise ValueError(
                f"--{stage}: {script} has only {', '.join(map('--{}'.format, stages))}"
            )
        chosen = named.get(stage, False) if named else stage in default_stages
        setattr(training_args, stage, chosen)
    user_flags = {argument.split("=")[0] for argument in user_arguments}
    if not training_args.do_eval and "--eval_strategy" not in user_flags:
        training_args.eval_strategy = IntervalStrategy.NO
    if not accelerator:
        training_args.dataloader_pin_memory = False
    return parsed


def from_pretrained(auto_class, name_or_path: str, trust_remote_code: bool = False, **kwargs):
    """`auto_class.from_pretrained(name_or_path, ...)`, running code that a folder or hub repository
    carries (config.json's `auto_map`) only when `trust_remote_code`, and saying so, with the
    scripts' flag, when it would be needed. Folders written by hf_scratch need no remote code where
    hf_scratch is installed: importing it registers their model types with the Auto classes."""
    try:
        return auto_class.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, **kwargs
        )
    except ValueError as error:
        if "trust_remote_code=True" not in str(error):
            raise
        raise ValueError(
            f"{name_or_path} holds model code of its own (config.json's auto_map names it) for a "
            "model type this installation does not know. It runs only if you opt in: read it, "
            "then pass --trust_remote_code (trust_remote_code=True in Python)."
        ) from error


@dataclass
class RemoteCodeArguments:
    """Whether a script may run the code that a model folder or hub repository carries."""

    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "run the model code of the folder or hub repository loaded (read it first); "
            "never needed for folders written by hf_scratch where it is installed"
        },
    )


@dataclass
class PretrainingModelArguments(RemoteCodeArguments):
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
    tokenizer_train_rows: int | None = field(
        default=None,
        metadata={
            "help": "rows of the training data the tokenizer is trained on (default: all; the "
            "first 100,000 of a stream)"
        },
    )


def pretraining_model(auto_class, arguments: PretrainingModelArguments, tokenizer, **settings):
    """The checkpoint at `model_name_or_path` with `settings` applied to its config; or a new model
    from `config_name` with `config_overrides`, the tokenizer's vocabulary size and special token
    ids, and `settings`."""
    trust_remote_code = arguments.trust_remote_code
    if arguments.model_name_or_path:
        return from_pretrained(
            auto_class, arguments.model_name_or_path, trust_remote_code, **settings
        )
    config = from_pretrained(AutoConfig, arguments.config_name, trust_remote_code)
    if arguments.config_overrides:
        config.update_from_string(arguments.config_overrides)
    config.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, name, getattr(tokenizer, name))
    for name, value in settings.items():
        setattr(config, name, value)
    config.validate_architecture()
    return auto_class.from_config(config, trust_remote_code=trust_remote_code)
