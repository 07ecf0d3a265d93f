"""The examples' ending: a run's training curves and attention heatmaps, written into
`output_dir/plots/`."""

from pathlib import Path
from typing import Any

import torch

from .attention_plots import plot_attention
from .training_curves import plot_training_curves


def write_run_plots(
    output_dir: str | Path,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    text: str | None = None,
    target_text: str | None = None,
) -> list[Path]:
    """Write a run's pictures into `output_dir/plots/`: the training curves (if the folder holds a
    trainer_state.json) and, given a model, a tokenizer and a text, the attention heatmaps for that
    text (for an encoder-decoder, `text` is the source and `target_text` the target, generated
    greedily when None)."""
    plots_dir = Path(output_dir) / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        paths.append(plot_training_curves(output_dir, plots_dir))
    except (FileNotFoundError, ValueError) as error:
        print(f"training curves skipped: {error}")
    if model is not None and text is not None:
        paths += plot_attention(
            plots_dir, model=model, tokenizer=tokenizer, text=text, target_text=target_text
        )
    if paths:
        print(f"plots written to {plots_dir}: {', '.join(path.name for path in paths)}")
    return paths
