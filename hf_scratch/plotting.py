"""Pictures of what a model learned and how its training went: attention heatmaps and training
curves, written as PNG files.

    from hf_scratch.plotting import write_run_plots
    write_run_plots("outputs/gpt-pydoc", model, tokenizer, text="The for statement")

- `attention_maps(model, input_ids, ...)` runs a model once with `output_attentions=True` and
  returns the attention probabilities of the first sequence, per kind of attention, each
  (L, H, T_query, T_key): "self-attention (causal)" for a decoder-only model (GPT),
  "self-attention" for an encoder (BERT), and "encoder self-attention", "decoder self-attention",
  "cross-attention" for an encoder-decoder (the Transformer). It reads only the output fields, so
  it works as well for a model loaded with `trust_remote_code=True`.
- `plot_attention(...)` draws one grid of heatmaps per kind (rows: layers, columns: heads).
- `plot_training_curves(output_dir)` draws the loss, learning rate and evaluation metrics that a
  Trainer logged in `trainer_state.json`.
- `write_run_plots(...)`, the examples' ending, writes both into `output_dir/plots/`.

Figures are built on matplotlib's Agg canvas, never through pyplot: nothing here needs a display or
changes matplotlib's global backend.
"""

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CAUSAL_SELF_ATTENTION = "self-attention (causal)"
SELF_ATTENTION = "self-attention"
ENCODER_SELF_ATTENTION = "encoder self-attention"
DECODER_SELF_ATTENTION = "decoder self-attention"
CROSS_ATTENTION = "cross-attention"

# Which token sequence labels the rows (queries) and columns (keys) of each kind.
_AXES = {
    CAUSAL_SELF_ATTENTION: ("source", "source"),
    SELF_ATTENTION: ("source", "source"),
    ENCODER_SELF_ATTENTION: ("source", "source"),
    DECODER_SELF_ATTENTION: ("target", "target"),
    CROSS_ATTENTION: ("target", "source"),
}

# Logged values that describe the run's speed, not the model: never plotted.
_NOT_METRICS = ("epoch", "step", "total_flos")
_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure on the Agg canvas (headless)."""
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------


def _first_sequence(layers: Sequence[torch.Tensor] | None, field: str) -> torch.Tensor:
    """A tuple of L tensors (B, H, T_q, T_k) -> batch element 0 as one float32 CPU tensor
    (L, H, T_q, T_k)."""
    if not layers or any(weights is None for weights in layers):
        raise ValueError(
            f"the model returned no `{field}` with output_attentions=True; its attention "
            "implementation may not form the probabilities"
        )
    return torch.stack([weights[0] for weights in layers]).detach().float().cpu()


def _is_causal(weights: torch.Tensor) -> bool:
    """Whether (L, H, T, T) weights put nothing above the diagonal: a causal mask's exact zeros (a
    softmax over unmasked scores is never exactly 0)."""
    T_query, T_key = weights.shape[-2:]
    if T_query != T_key or T_query < 2:
        return False
    return bool((torch.triu(weights, diagonal=1) == 0).all())


def attention_maps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **inputs: Any,
) -> dict[str, torch.Tensor]:
    """Run `model` once (eval mode, no gradients, `output_attentions=True`) and return the attention
    probabilities of the first sequence of the batch, per kind, each (L, H, T_query, T_key) in
    float32 on the CPU.

    `inputs` are further forward arguments: an encoder-decoder needs `decoder_input_ids` (or
    `labels`). The kinds are read from the output fields: `cross_attentions` (with
    `encoder_attentions` and `decoder_attentions`) mean an encoder-decoder; otherwise `attentions`
    is a self-attention, "causal" when every weight above the diagonal is zero. Models running
    "sdpa" compute these calls with the eager formula (the fused kernel forms no probabilities); the
    model's setting is left as it was, and so is its training mode."""
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]  # (T,) -> (1, T)
        if attention_mask is not None and attention_mask.dim() == 1:
            attention_mask = attention_mask[None, :]
    device = next(model.parameters()).device
    inputs = {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in inputs.items()
    }
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(input_ids=input_ids.to(device), output_attentions=True, **inputs)
    finally:
        model.train(was_training)
    if isinstance(outputs, tuple):
        raise TypeError("attention_maps needs a model that returns a ModelOutput, not a tuple")

    if getattr(outputs, "cross_attentions", None) is not None:
        return {
            ENCODER_SELF_ATTENTION: _first_sequence(
                outputs.encoder_attentions, "encoder_attentions"
            ),
            DECODER_SELF_ATTENTION: _first_sequence(
                outputs.decoder_attentions, "decoder_attentions"
            ),
            CROSS_ATTENTION: _first_sequence(outputs.cross_attentions, "cross_attentions"),
        }
    weights = _first_sequence(getattr(outputs, "attentions", None), "attentions")
    return {CAUSAL_SELF_ATTENTION if _is_causal(weights) else SELF_ATTENTION: weights}


def _token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """One readable label per id: the token as text, whitespace-only tokens quoted."""
    labels = []
    for token_id in ids:
        text = tokenizer.decode([int(token_id)])
        labels.append(text.strip() or repr(text))
    return labels


def _forward_arguments(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _decoder_start_token_id(model: torch.nn.Module) -> int:
    for config in (model.config, getattr(model, "generation_config", None)):
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ValueError("the model's config sets no decoder_start_token_id")


def text_attention_maps(
    model: torch.nn.Module,
    tokenizer: Any,
    text: str,
    target_text: str | None = None,
    max_length: int = 64,
    max_new_tokens: int = 20,
) -> tuple[dict[str, torch.Tensor], list[str], list[str] | None]:
    """`attention_maps` for one text: returns the maps, the labels of the input tokens and, for an
    encoder-decoder, the labels of the decoder's tokens (else None).

    `text` is truncated to `max_length` tokens (at most the model's positions). For an
    encoder-decoder, `text` is the source and the decoder reads [decoder start] + the target
    tokens: those of `target_text`, or, when it is None, a target of up to `max_new_tokens`
    generated greedily."""
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    accepted = _forward_arguments(model)
    inputs = {
        key: value
        for key, value in encoded.items()
        if key in ("input_ids", "attention_mask") or key in accepted
    }
    input_ids = inputs.pop("input_ids")  # (1, S)
    source_labels = _token_labels(tokenizer, input_ids[0].tolist())
    if not getattr(model.config, "is_encoder_decoder", False):
        return attention_maps(model, input_ids, **inputs), source_labels, None

    device = next(model.parameters()).device
    if target_text is None:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                generated = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=inputs.get("attention_mask", torch.ones_like(input_ids)).to(
                        device
                    ),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )  # (1, 1 + new tokens): starts with the decoder start token
        finally:
            model.train(was_training)
        decoder_input_ids = generated.cpu()
    else:
        target = tokenizer(
            text_target=target_text, return_tensors="pt", truncation=True, max_length=max_length
        )["input_ids"]  # (1, T)
        start = torch.full((1, 1), _decoder_start_token_id(model), dtype=target.dtype)
        decoder_input_ids = torch.cat([start, target], dim=1)  # (1, 1 + T)
    maps = attention_maps(model, input_ids, decoder_input_ids=decoder_input_ids, **inputs)
    return maps, source_labels, _token_labels(tokenizer, decoder_input_ids[0].tolist())


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
    figure = _new_figure(figsize=(cell * H + 1.2, cell * L + 0.6), layout="constrained")
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
        paths.append(_save(figure, Path(output_dir) / _file_name(kind, prefix)))
    return paths


# --------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------


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


def training_curves_figure(
    log_history: Sequence[Mapping[str, Any]], title: str | None = None
) -> Figure:
    """One panel per group of `training_series`, each value against the global step."""
    panels = training_series(log_history)
    if not panels:
        raise ValueError("the log history holds no logged loss or metric to plot")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = _new_figure(figsize=(5.0 * columns, 3.5 * rows), layout="constrained")
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
    return _save(figure, plots_dir / "training_curves.png")


# --------------------------------------------------------------------------------------------------
# The examples' ending
# --------------------------------------------------------------------------------------------------


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


__all__ = [
    "attention_figure",
    "attention_maps",
    "find_trainer_state",
    "plot_attention",
    "plot_training_curves",
    "text_attention_maps",
    "training_curves_figure",
    "training_series",
    "write_run_plots",
]
