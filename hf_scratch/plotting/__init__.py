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

Modules, one idea each: `attention_maps` (running a model for its attention), `attention_plots`
(drawing them), `trainer_state` (reading what a Trainer logged), `training_curves` (drawing it),
`run_plots` (the examples' ending) and `figures` (the Agg canvas).
"""

from .attention_maps import attention_maps, text_attention_maps
from .attention_plots import attention_figure, plot_attention
from .run_plots import write_run_plots
from .trainer_state import find_trainer_state, training_series
from .training_curves import plot_training_curves, training_curves_figure

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
