"""Building blocks shared by the three models: position embeddings, the position-wise feed-forward
network and the residual block of self-attention, optional cross-attention and feed-forward.

Notation: B batch, T sequence length, C hidden size (d_model), F inner feed-forward size (d_ff), P
positions.

The residual block reads these standard Hugging Face config fields (each model config defines them,
under the paper's names too where `attribute_map` aliases them): `hidden_size`,
`num_attention_heads`, `intermediate_size`, `hidden_act`, `hidden_dropout_prob`,
`attention_probs_dropout_prob` and `layer_norm_eps`. Post-LN or pre-LN is the block's own argument,
`norm_first` (False = post-LN as in all three papers, True = pre-LN as in GPT-2).
"""

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import MultiHeadAttention

# The activations the three papers and their checkpoints use, by their Hugging Face config names.
ACTIVATIONS = {
    "relu": nn.ReLU,  # the Transformer (§3.3)
    "gelu": nn.GELU,  # BERT: exact x * Phi(x) with the erf
    # GPT-1 / GPT-2 checkpoints: the tanh approximation
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "swish": nn.SiLU,  # Marian (opus-mt): x * sigmoid(x)
    "silu": nn.SiLU,
}


def get_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_index_range(ids: torch.Tensor, limit: int, name: str) -> None:
    """Raise a ValueError naming `name` and `limit` unless every id lies in [0, limit).

    An out-of-range id would otherwise fail deep inside an embedding lookup (or read garbage on some
    devices). The check reads the ids' values, so it runs in eager mode only: a compiled or
    exported graph must not branch on data.
    """
    if ids.numel() == 0 or torch.compiler.is_compiling():
        return
    smallest, largest = (int(extreme) for extreme in torch.aminmax(ids))
    if smallest < 0 or largest >= limit:
        bad = largest if largest >= limit else smallest
        raise ValueError(f"{name} contains {bad}, outside the valid range [0, {limit})")


def output_switches(
    config, output_attentions, output_hidden_states
) -> tuple[bool, bool | int | Sequence[int]]:
    """`output_attentions` and `output_hidden_states` of a forward call, each taken from the config
    when the caller leaves it None, as transformers' models resolve them."""
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
    )


def cache_switch(config, use_cache: bool | None, blocks: nn.ModuleList, training: bool) -> bool:
    """Whether a decoder keeps a KV cache: `use_cache`, or the config's when None; never while
    training under gradient checkpointing, where the backward pass replays each block and would
    write its keys and values into the cache a second time."""
    use_cache = config.use_cache if use_cache is None else use_cache
    checkpointing = any(getattr(block, "gradient_checkpointing", False) for block in blocks)
    return bool(use_cache) and not (training and checkpointing)


def embed_tokens(
    embedding: nn.Embedding, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
) -> torch.Tensor:
    """The token embeddings E[x] of `input_ids` (B, T) -> (B, T, C), or the caller's own
    `inputs_embeds` (B, T, C): exactly one of the two must be given."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if inputs_embeds is not None:
        return inputs_embeds
    check_index_range(input_ids, embedding.num_embeddings, "input_ids")
    return embedding(input_ids)  # (B, T, C)


def keep_positions(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """The positions a head projects to the vocabulary, as transformers' `logits_to_keep` selects
    them: the last n (an int; 0 keeps all), or those indexed (a 1-D tensor). `generate()` passes 1,
    so a decoding step projects one position, not the whole prompt."""
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:]  # (B, n, C); 0 keeps every position
    return hidden_states[:, logits_to_keep]


def check_sequence_length(past_length: int | torch.Tensor, length: int, limit: int) -> None:
    """Raise a ValueError when `length` new tokens after `past_length` cached ones run past the
    `limit` positions of the position table.

    A static cache counts its tokens in a tensor; reading it is a check on data, made in eager mode
    only (a compiled decoding step is sized by its cache, which `generate()` makes no longer than
    the model's positions)."""
    if torch.compiler.is_compiling():
        return
    past_length = int(past_length)
    if past_length + length > limit:
        cached = f" ({past_length} cached + {length} new tokens)" if past_length else ""
        raise ValueError(
            f"sequence of length {past_length + length}{cached} is longer than "
            f"max_position_embeddings ({limit})"
        )


def default_position_ids(
    past_length: int | torch.Tensor, length: int, limit: int, device
) -> torch.Tensor:
    """Positions past_length, ..., past_length + length - 1 of a sequence that continues a cache:
    (1, T), checked against the `limit` positions of the table."""
    check_sequence_length(past_length, length, limit)
    return (past_length + torch.arange(length, device=device))[None]  # (1, T)


def sinusoidal_position_table(
    num_positions: int, embedding_dim: int, interleaved: bool = True
) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (§3.5): (P, d)
    float32.

    `interleaved=True` is the paper's layout (sin and cos alternate along the features);
    `interleaved=False` puts all sines in the first half and all cosines in the second, the layout
    of Marian (opus-mt) checkpoints. The table is computed in float64 and rounded once.
    """
    if embedding_dim % 2 != 0:
        raise ValueError(f"sinusoidal positions need an even embedding_dim, got {embedding_dim}")
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    frequencies = torch.exp(
        torch.arange(0, embedding_dim, 2, dtype=torch.float64)
        * (-math.log(10000.0) / embedding_dim)
    )  # 1 / 10000^(2i/d): (d/2,)
    angles = positions * frequencies  # (P, d/2)
    if interleaved:
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(
            1
        )  # (P, d): sin, cos, sin, ...
    else:
        table = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (P, d): all sin | all cos
    return table.float()


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sinusoidal position encodings (§3.5), looked up by position id.

    The table is a non-persistent buffer: it is not saved in checkpoints, and a model's
    `_init_weights` must rebuild it with `computed_table()` after `from_pretrained` materialises
    buffers from the meta device.
    """

    def __init__(self, num_positions: int, embedding_dim: int, interleaved: bool = True):
        super().__init__()
        self.num_positions = num_positions
        self.embedding_dim = embedding_dim
        self.interleaved = interleaved
        # In the default dtype, as parameters are made: a model built or loaded in half precision
        # (`from_pretrained(..., dtype=torch.bfloat16)`) adds its positions in that precision.
        table = sinusoidal_position_table(num_positions, embedding_dim, interleaved)
        self.register_buffer("weight", table.to(torch.get_default_dtype()), persistent=False)

    def computed_table(self) -> torch.Tensor:
        """The table this module should hold, for `init.copy_(module.weight,
        module.computed_table())`."""
        return sinusoidal_position_table(self.num_positions, self.embedding_dim, self.interleaved)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        check_index_range(position_ids, self.num_positions, "position_ids")
        return self.weight[position_ids]  # (B, T) -> (B, T, C)

    def span(self, start: int | torch.Tensor, length: int) -> torch.Tensor:
        """The encodings of positions start, ..., start + length - 1 of a sequence continuing a
        cache, with one range check: (T, C). `start` is a tensor for a static cache."""
        if isinstance(start, int):
            check_sequence_length(start, length, self.num_positions)
            return self.weight[start : start + length]
        positions = default_position_ids(start, length, self.num_positions, self.weight.device)
        return self.weight[positions[0]]


class LearnedPositionEmbedding(nn.Embedding):
    """Learned absolute position embeddings W_p (GPT: h_0 = U W_e + W_p; BERT), looked up by
    position id."""

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        check_index_range(position_ids, self.num_embeddings, "position_ids")
        return super().forward(position_ids)  # (B, T) -> (B, T, C)


class FeedForward(nn.Module):
    """Position-wise feed-forward network FFN(x) = act(x W_1 + b_1) W_2 + b_2 (§3.3, Eq. 2): (B, T,
    C) -> (B, T, C).

    The paper uses ReLU; BERT and GPT use GELU. Dropout is applied by the residual block, on the
    output.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)  # W_1: (B, T, C) -> (B, T, F)
        self.activation = get_activation(activation)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)  # W_2: (B, T, F) -> (B, T, C)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.fc1(hidden_states))  # act(x W_1 + b_1): (B, T, F)
        return self.fc2(hidden)  # (B, T, C)


class TransformerBlock(GradientCheckpointingLayer):
    """One encoder or decoder layer (§3.1): self-attention, optional cross-attention, feed-forward.

    Every sublayer is wrapped in a residual connection with dropout and layer normalisation, Add &
    Norm: post-LN (the paper, BERT, GPT-1): x = LayerNorm(x + Dropout(Sublayer(x)));
    pre-LN  (GPT-2, `norm_first=True`): x = x + Dropout(Sublayer(LayerNorm(x))).
    An encoder block (BERT, the Transformer encoder) is `is_causal=False`; a decoder block masks the
    future (`is_causal=True`, GPT and the Transformer decoder) and, in an encoder-decoder, also
    attends to the encoder output (`has_cross_attention=True`).

    `forward(hidden_states (B, T, C), attention_mask, encoder_hidden_states (B, S, C),
    encoder_attention_mask, cache, output_attentions)` returns `(hidden_states (B, T, C),
    self-attention weights, cross-attention weights)`, the weights None unless asked for. Masks
    follow `attention.py`: boolean, True = may attend.
    """

    def __init__(
        self,
        config,
        *,
        is_causal: bool,
        has_cross_attention: bool = False,
        norm_first: bool = False,
        layer_idx: int | None = None,
    ):
        super().__init__()
        hidden_size, eps = config.hidden_size, config.layer_norm_eps
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(config, is_causal=is_causal, layer_idx=layer_idx)
        self.self_attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        if has_cross_attention:
            self.cross_attn = MultiHeadAttention(
                config, is_cross_attention=True, layer_idx=layer_idx
            )
            self.cross_attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        else:
            self.cross_attn = None
        self.feed_forward = FeedForward(hidden_size, config.intermediate_size, config.hidden_act)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _sublayer_input(self, hidden_states: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(hidden_states) if self.norm_first else hidden_states

    def _add_and_norm(
        self, residual: torch.Tensor, sublayer_output: torch.Tensor, norm: nn.LayerNorm
    ) -> torch.Tensor:
        hidden_states = residual + self.dropout(sublayer_output)
        return hidden_states if self.norm_first else norm(hidden_states)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        attn_output, self_attn_weights = self.self_attn(
            self._sublayer_input(hidden_states, self.self_attn_norm),
            attention_mask=attention_mask,
            cache=cache,
            output_attentions=output_attentions,
        )
        hidden_states = self._add_and_norm(hidden_states, attn_output, self.self_attn_norm)

        cross_attn_weights = None
        if self.cross_attn is not None:
            attn_output, cross_attn_weights = self.cross_attn(
                self._sublayer_input(hidden_states, self.cross_attn_norm),
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                output_attentions=output_attentions,
            )
            hidden_states = self._add_and_norm(hidden_states, attn_output, self.cross_attn_norm)

        ffn_output = self.feed_forward(self._sublayer_input(hidden_states, self.feed_forward_norm))
        hidden_states = self._add_and_norm(hidden_states, ffn_output, self.feed_forward_norm)
        return hidden_states, self_attn_weights, cross_attn_weights


def hidden_state_selection(
    output_hidden_states: bool | int | Sequence[int] | None, count: int
) -> set[int] | None:
    """Which of a stack's `count` hidden states to return, as transformers 5 reads
    `output_hidden_states`: all of them (True), none (False or None: returns None), or those
    indexed (an int or a list of ints; negative ones count from the end, out-of-range ones select
    nothing)."""
    if output_hidden_states is None or isinstance(output_hidden_states, bool):
        return set(range(count)) if output_hidden_states else None
    indices = (
        [output_hidden_states] if isinstance(output_hidden_states, int) else output_hidden_states
    )
    return {index % count for index in indices if -count <= index < count}


def run_blocks(
    blocks: nn.ModuleList,
    hidden_states: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    cache: Cache | None = None,
    final_norm: nn.Module | None = None,
    output_attentions: bool = False,
    output_hidden_states: bool | int | Sequence[int] = False,
) -> tuple[torch.Tensor, tuple | None, tuple | None, tuple | None]:
    """h_l = block_l(h_{l-1}) through the stack, then the final LayerNorm if the layout has one.

    Returns the last hidden states (B, T, C) and, when asked, the hidden states (the input of every
    block, then the final output: L + 1 of them; with an index or a list of indices as
    `output_hidden_states`, the others are None), every block's self-attention weights and, in a
    decoder that attends to an encoder, every block's cross-attention weights, as Hugging Face's
    `output_hidden_states` / `output_attentions` define them.
    """
    selected = hidden_state_selection(output_hidden_states, len(blocks) + 1)
    all_hidden_states = [] if selected is not None else None

    def record(state: torch.Tensor) -> None:
        if all_hidden_states is not None:
            all_hidden_states.append(state if len(all_hidden_states) in selected else None)

    all_attentions = () if output_attentions else None
    all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
    for block in blocks:
        record(hidden_states)
        # The tensors go positionally: under gradient checkpointing only positional arguments are
        # the checkpoint's inputs, and with `use_reentrant=True` a tensor passed by keyword (the
        # encoder output) would be backpropagated through once per block instead of once.
        hidden_states, attn_weights, cross_attn_weights = block(
            hidden_states,
            attention_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            cache=cache,
            output_attentions=output_attentions,
        )
        if output_attentions:
            all_attentions += (attn_weights,)
        if all_cross_attentions is not None:
            all_cross_attentions += (cross_attn_weights,)
    if final_norm is not None:
        hidden_states = final_norm(hidden_states)
    record(hidden_states)
    if all_hidden_states is not None:
        all_hidden_states = tuple(all_hidden_states)
    return hidden_states, all_hidden_states, all_attentions, all_cross_attentions


def merge_choices(tensor: torch.Tensor | None, batch_dims: int) -> torch.Tensor | None:
    """Inputs with several sequences per example as one batch of sequences:
    (B, K, T, ...) -> (B * K, T, ...) for `batch_dims` = 2 (unchanged for 1); None stays None."""
    return None if tensor is None else tensor.reshape(-1, *tensor.shape[batch_dims:])
