"""What a Trainer logged: the `trainer_state.json` of a run (or of its latest checkpoint), and its
log history as series of (step, value) per metric."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Logged values that describe the run's speed, not the model: never plotted.
_NOT_METRICS = ("epoch", "step", "total_flos")
_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def _checkpoint_step(path: Path) -> int:
    suffix = path.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else -1


def find_trainer_state(output_dir: str | Path) -> Path:
    """`output_dir/trainer_state.json`, or else that of the latest `checkpoint-*` subfolder."""
    folder = Path(output_dir)
    if (folder / "trainer_state.json").is_file():
        return folder / "trainer_state.json"
    checkpoints = sorted(
        (path for path in folder.glob("checkpoint-*") if (path / "trainer_state.json").is_file()),
        key=_checkpoint_step,
    )
    if not checkpoints:
        raise FileNotFoundError(
            f"no trainer_state.json in {folder} nor in a checkpoint-* folder inside it"
        )
    return checkpoints[-1] / "trainer_state.json"


def _is_metric(key: str, value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and key not in _NOT_METRICS
        and not key.endswith(_SPEED_SUFFIXES)
    )


def training_series(log_history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list]]:
    """The curves in a Trainer's `log_history`, grouped by panel: {panel: {name: [steps, values]}}.

    Panels: "loss" (the training "loss" and every evaluation value ending in "loss"), "learning
    rate", and one per other evaluation metric (eval_bleu, eval_accuracy, perplexity...). The
    final summary (train_runtime, train_loss) and speed values are left out."""
    panels: dict[str, dict[str, list]] = {}

    def add(panel: str, name: str, step: int, value: float) -> None:
        steps, values = panels.setdefault(panel, {}).setdefault(name, [[], []])
        steps.append(step)
        values.append(float(value))

    for entry in log_history:
        step = entry.get("step")
        if step is None or "train_runtime" in entry:
            continue
        if "loss" in entry:  # a training log: loss, learning_rate, grad_norm, epoch
            add("loss", "train loss", step, entry["loss"])
            if "learning_rate" in entry:
                add("learning rate", "learning rate", step, entry["learning_rate"])
            continue
        for key, value in entry.items():  # an evaluation log
            if _is_metric(key, value):
                add("loss" if key.endswith("loss") else key, key, step, value)
    return panels
