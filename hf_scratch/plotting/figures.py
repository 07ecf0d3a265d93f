"""Figures on matplotlib's Agg canvas, never through pyplot: nothing here needs a display or
changes matplotlib's global backend."""

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure on the Agg canvas (headless)."""
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
