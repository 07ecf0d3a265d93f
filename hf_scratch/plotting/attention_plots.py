"""Attention heatmaps: one grid per kind of attention (rows: layers, columns: heads), written as
PNG files."""

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from .attention_maps import (
    CAUSAL_SELF_ATTENTION,
    CROSS_ATTENTION,
    DECODER_SELF_ATTENTION,
    ENCODER_SELF_ATTENTION,
    SELF_ATTENTION,
    text_attention_maps,
)
from .figures import new_figure, save_figure

# Which token sequence labels the rows (queries) and columns (keys) of each kind.
_AXES = {
    CAUSAL_SELF_ATTENTION: ("source", "source"),
    SELF_ATTENTION: ("source", "source"),
    ENCODER_SELF_ATTENTION: ("source", "source"),
    DECODER_SELF_ATTENTION: ("target", "target"),
    CROSS_ATTENTION: ("target", "source"),
}


def attention_figure(
    weights: torch.Tensor,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str | None = None,
    max_labels: int = 40,
) -> Figure:
    """A grid of heatmaps of attention probabilities (L, H, T_query, T_key): row l, column h shows
    layer l + 1, head h + 1, queries down, keys across, on one colour scale from 0. Tokens label
    the outer axes when there are at most `max_labels` of them."""
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 4:
        raise ValueError(
            f"expected weights (layers, heads, T_query, T_key), got {tuple(weights.shape)}"
        )
    L, H, T_query, T_key = weights.shape
    for tokens, size, name in [(query_tokens, T_query, "query"), (key_tokens, T_key, "key")]:
        if tokens is not None and len(tokens) != size:
            raise ValueError(f"{len(tokens)} {name} tokens for {size} {name} positions")

    cell = min(6.0, max(1.8, 1.0 + 0.12 * max(T_query, T_key)))  # inches per heatmap
    scale = min(1.0, 40.0 / (cell * max(L, H)))  # keep the figure under ~40 inches (4000 px)
    cell *= scale
    figure = new_figure(figsize=(cell * H + 1.2, cell * L + 0.6), layout="constrained")
    axes = figure.subplots(L, H, squeeze=False)
    vmax = float(weights.max()) or 1.0
    font = max(3.0, min(7.0, 0.8 * 72 * cell / max(T_query, T_key)))  # points per label
    image = None
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            image = ax.imshow(
                weights[layer, head].numpy(),
                cmap="viridis",
                vmin=0.0,
                vmax=vmax,
                aspect="auto",
                interpolation="nearest",
            )
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            ax.tick_params(labelsize=font, length=2)
            if layer < L - 1:
                ax.set_xticks([])
            elif key_tokens is not None and T_key <= max_labels:
                ax.set_xticks(range(T_key), [t[:12] for t in key_tokens], rotation=90)
            if head > 0:
                ax.set_yticks([])
            elif query_tokens is not None and T_query <= max_labels:
                ax.set_yticks(range(T_query), [t[:12] for t in query_tokens])
    figure.colorbar(image, ax=axes, shrink=0.8, label="attention probability")
    figure.supxlabel("key (attended to)", fontsize=9)
    figure.supylabel("query", fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


def _file_name(kind: str, prefix: str) -> str:
    return f"{prefix}_{re.sub(r'[^a-z0-9]+', '_', kind.lower()).strip('_')}.png"


def plot_attention(
    output_dir: str | Path,
    attentions: Mapping[str, torch.Tensor] | None = None,
    *,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    text: str | None = None,
    target_text: str | None = None,
    tokens: Sequence[str] | None = None,
    target_tokens: Sequence[str] | None = None,
    max_length: int = 64,
    max_new_tokens: int = 20,
    prefix: str = "attention",
) -> list[Path]:
    """Write one PNG of heatmaps per kind of attention into `output_dir`
    (`attention_self_attention_causal.png`, `attention_cross_attention.png`, ...) and return the
    paths.

    Either precomputed `attentions` ({kind: (L, H, T_query, T_key)}, as `attention_maps` returns),
    labelled by `tokens` (the input) and `target_tokens` (an encoder-decoder's decoder tokens), or
    `model`, `tokenizer` and `text` (and `target_text`), run through `text_attention_maps`."""
    if (attentions is None) == (model is None):
        raise ValueError("give either `attentions` or `model` (with `tokenizer` and `text`)")
    if model is not None:
        if tokenizer is None or text is None:
            raise ValueError("plotting a model's attention needs `tokenizer` and `text`")
        attentions, tokens, target_tokens = text_attention_maps(
            model, tokenizer, text, target_text, max_length, max_new_tokens
        )
    labels = {"source": tokens, "target": target_tokens}
    paths = []
    for kind, weights in attentions.items():
        query_axis, key_axis = _AXES.get(kind, (None, None))
        figure = attention_figure(weights, labels.get(query_axis), labels.get(key_axis), title=kind)
        paths.append(save_figure(figure, Path(output_dir) / _file_name(kind, prefix)))
    return paths
