"""Training curves: the loss, learning rate and evaluation metrics a Trainer logged, drawn as a
PNG file."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .figures import new_figure, save_figure
from .trainer_state import find_trainer_state, training_series


def training_curves_figure(
    log_history: Sequence[Mapping[str, Any]], title: str | None = None
) -> Figure:
    """One panel per group of `training_series`, each value against the global step."""
    panels = training_series(log_history)
    if not panels:
        raise ValueError("the log history holds no logged loss or metric to plot")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = new_figure(figsize=(5.0 * columns, 3.5 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel, series) in zip(axes, panels.items(), strict=False):
        for name, (steps, values) in series.items():
            ax.plot(
                steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name
            )
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


def plot_training_curves(output_dir: str | Path, plots_dir: str | Path | None = None) -> Path:
    """Read the Trainer's `trainer_state.json` from `output_dir` (or its latest checkpoint-*
    folder), draw the training loss, learning rate and evaluation metrics against the step, and
    write `training_curves.png` into `plots_dir` (default `output_dir/plots`); return its path."""
    state_path = find_trainer_state(output_dir)
    state = json.loads(state_path.read_text(encoding="utf-8"))
    figure = training_curves_figure(state.get("log_history", []), title=str(state_path.parent))
    plots_dir = Path(output_dir) / "plots" if plots_dir is None else Path(plots_dir)
    return save_figure(figure, plots_dir / "training_curves.png")
