"""The attention core shared by the Transformer, GPT and BERT.

Notation: B batch, T query length, S key/value length, H heads, D head dim (d_k = d_v), C hidden
size (d_model = H * D).

1. General soft attention (Bahdanau et al. 2015; Luong et al. 2015). A query q scores every hidden
   state h_i with a scoring function s(h_i, q); the weights are a_i = softmax_i(s(h_i, q)) and the
   context is c = sum_i a_i v_i. Plain attention sums the states themselves (v_i = h_i); key-value
   attention scores keys and sums separate values. The four classic scoring functions are modules
   with one signature, `score(query (..., T, Dq), keys (..., S, Dk)) -> (..., T, S)`, and
   `SoftAttention` puts one of them to work (e.g. in an RNN decoder attending over encoder states).
2. Multi-head scaled dot-product attention (Vaswani et al. 2017, §3.2): Attention(Q, K, V) =
   softmax(QK^T / sqrt(d_k)) V, run in H heads whose contexts are concatenated and projected,
   MultiHead = Concat(head_1..H) W^O. Self-attention takes Q = X W_Q, K = X W_K, V = X W_V from one
   sequence; cross-attention takes Q from the decoder and K, V from the encoder output. Two
   implementations give the same numbers (to 1e-5 in float32): "eager" is the formula written out
   with the pieces of part 1 and returns the attention probabilities; "sdpa" calls
   `torch.nn.functional.scaled_dot_product_attention` (fused kernels). `config._attn_implementation`
   chooses, as `from_pretrained(..., attn_implementation=...)` sets it.

Mask convention, the one used everywhere in hf_scratch: a boolean tensor broadcastable to
(B, H, T, S) in which **True means "may attend"**. It is the convention of SDPA and of Hugging
Face's 2-D `attention_mask` (1 = real token), and the opposite of `torch.nn.MultiheadAttention`'s
`key_padding_mask` / boolean `attn_mask` (True = masked). A query row with nothing to attend to (a
padding position under a causal mask, say) gets all-zero weights and a zero context, never NaN.

KV cache: the attention modules take the transformers `Cache` objects that `generate()` hands to the
model. Self-attention appends the new keys and values (`cache.update`) and attends over all of them;
cross-attention projects the encoder output once per sequence and then reads it back from an
`EncoderDecoderCache`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")

# --------------------------------------------------------------------------------------------------
# Masks (True = may attend)
# --------------------------------------------------------------------------------------------------


def causal_mask(
    query_length: int, key_length: int, device: torch.device | None = None
) -> torch.Tensor:
    """The decoder's "no peeking ahead" mask (§3.2.3), aligned to the end of the keys: (T, S), True
    = may attend.

    With a KV cache the T queries are the last T of the S positions, so query i sits at absolute
    position S - T + i and may attend to keys 0 .. S - T + i.
    """
    ones = torch.ones(query_length, key_length, dtype=torch.bool, device=device)
    return ones.tril(diagonal=key_length - query_length)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Hugging Face's 2-D `attention_mask` (B, S), 1 = real token and 0 = padding, as a (B, 1, 1, S)
    key mask."""
    return attention_mask.bool()[:, None, None, :]


def make_attention_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    query_length: int,
    key_length: int,
    causal: bool,
    past_length: int | torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Combine the padding mask with the causal mask into the (B, 1, T, S) boolean mask of this
    module.

    Returns None when nothing is padded: an attention module given no mask applies only its own
    causal structure, which lets SDPA pick its `is_causal` kernel instead of reading a mask. Models
    call this once per forward and hand the result to every layer.

    A 4-D `attention_mask` (B or 1, 1, T, S) is a custom mask, used as it is (no causal mask
    added), as transformers uses one: packed sequences, tree attention. It is boolean (True = may
    attend) or, as transformers' additive masks are, floating point: 0 where a query may attend and
    a large negative number (or -inf) where it may not.

    `past_length` is given for a static cache, whose S keys are buffers of fixed size: the
    `past_length` cached positions, then the T new ones, then empty slots. The queries sit at
    positions past_length .. past_length + T - 1; a mask is always returned, so that no query
    reads an empty slot. A 2-D `attention_mask` then covers the filled positions (or all S).

    Without an `attention_mask` and without cached keys, the caller's `position_ids` may pack
    several sequences into a row (see `packed_sequence_mask`).
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return _custom_mask(attention_mask, batch_size, query_length, key_length)
    if past_length is not None:
        return _static_cache_mask(attention_mask, batch_size, query_length, key_length, past_length)
    if attention_mask is None:
        if position_ids is None or key_length != query_length:
            return None
        return packed_sequence_mask(position_ids.expand(batch_size, -1), causal)
    if attention_mask.shape != (batch_size, key_length):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
            f"(batch_size, key_length) = ({batch_size}, {key_length})"
        )
    keep = attention_mask.bool()
    # Nothing padded: no mask, so that SDPA can use its causal kernel. Deciding so reads the mask's
    # values, which a compiled graph must not branch on: there the mask is always applied.
    if not torch.compiler.is_compiling() and keep.all():
        return None
    mask = padding_mask(keep)  # (B, 1, 1, S)
    if causal:
        mask = mask & causal_mask(query_length, key_length, keep.device)  # (B, 1, T, S)
    return mask


def causal_cache_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    query_length: int,
    cache: Cache | None,
    past_length: int | torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The causal self-attention mask of a decoder reading `cache` (`make_attention_mask`), whose
    keys are the `past_length` cached ones and the `query_length` new ones. A static cache's keys
    are buffers of fixed size, their slots past the new tokens empty: the mask covers all of
    them and is told where the filled slots end."""
    static = cache is not None and cache.is_compileable
    key_length = query_length if cache is None else cache.get_mask_sizes(query_length, 0)[0]
    return make_attention_mask(
        attention_mask,
        batch_size,
        query_length,
        key_length,
        causal=True,
        past_length=past_length if static else None,
        position_ids=position_ids,
    )


def _static_cache_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    query_length: int,
    key_length: int,
    past_length: int | torch.Tensor,
) -> torch.Tensor:
    """The (B or 1, 1, T, S) mask over a static cache's slots: query i (at position past_length
    + i) may attend to the filled slots up to its own position, and not to padding."""
    device = attention_mask.device if attention_mask is not None else None
    keys = torch.arange(key_length, device=device)  # (S,)
    queries = past_length + torch.arange(query_length, device=device)  # (T,)
    mask = (keys[None, :] <= queries[:, None])[None, None]  # causal over filled slots: (1, 1, T, S)
    if attention_mask is None:
        return mask
    if attention_mask.dim() != 2 or attention_mask.shape[0] != batch_size:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected (batch_size, "
            f"filled positions) with batch_size {batch_size}"
        )
    if attention_mask.shape[1] > key_length:
        raise ValueError(
            f"attention_mask covers {attention_mask.shape[1]} positions, more than the cache's "
            f"{key_length}"
        )
    keep = F.pad(attention_mask.bool(), (0, key_length - attention_mask.shape[1]))  # (B, S)
    return mask & keep[:, None, None, :]


def packed_sequence_mask(position_ids: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """The mask of several sequences packed into each row without padding, as transformers'
    `DataCollatorWithFlattening` packs them: each sequence's positions restart (0, 1, 2, ...), and a
    token attends only to the tokens of its own sequence (and, `causal`, not to later ones). So a
    packed batch computes what the padded batch would, without computing the padding.

    A new sequence starts wherever a position is not its predecessor's plus one, as transformers
    finds them (`masking_utils.find_packed_sequence_indices`). Returns (B, 1, T, T), or None when no
    row holds more than one sequence (in eager mode only: deciding that reads the tensor, which a
    compiled graph must not branch on).
    """
    previous = torch.cat([position_ids[:, :1] - 1, position_ids[:, :-1]], dim=-1)
    sequence = (position_ids != previous + 1).cumsum(-1)  # index of each token's sequence: (B, T)
    if not torch.compiler.is_compiling() and not sequence[:, -1].any():
        return None
    mask = sequence[:, None, :, None] == sequence[:, None, None, :]  # (B, 1, T, T)
    if causal:
        T = position_ids.shape[-1]
        mask = mask & causal_mask(T, T, position_ids.device)
    return mask


def _custom_mask(
    attention_mask: torch.Tensor, batch_size: int, query_length: int, key_length: int
) -> torch.Tensor:
    """A 4-D `attention_mask` as this module's boolean mask, its shape and values checked."""
    batch, heads, queries, keys = attention_mask.shape
    if batch not in (1, batch_size) or heads != 1 or (queries, keys) != (query_length, key_length):
        raise ValueError(
            f"a 4-D attention_mask must have shape (batch_size or 1, 1, query_length, "
            f"key_length) = ({batch_size}, 1, {query_length}, {key_length}), got "
            f"{tuple(attention_mask.shape)}"
        )
    if not attention_mask.is_floating_point():
        return attention_mask.bool()
    keep = attention_mask == 0
    if not torch.compiler.is_compiling():
        blocked = attention_mask[~keep]
        if (blocked > torch.finfo(attention_mask.dtype).min / 2).any():
            raise ValueError(
                "a floating-point 4-D attention_mask is additive: 0 where a query may attend, a "
                "large negative number or -inf where it may not; other values (biases) are not "
                "supported"
            )
    return keep


# --------------------------------------------------------------------------------------------------
# General soft attention: a = softmax(s(h, q)), context = sum_i a_i v_i
# --------------------------------------------------------------------------------------------------


class DotScore(nn.Module):
    """s(h, q) = h^T q (Luong et al. 2015, "dot"). Query and keys must have the same size."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(-1, -2)  # (..., T, S)


class ScaledDotScore(nn.Module):
    """s(h, q) = h^T q / sqrt(d_k) (Vaswani et al. 2017, §3.2.1, Eq. 1).

    The scale keeps the variance of the scores at 1 for unit-variance inputs, so the softmax does
    not saturate as d_k grows.
    """

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return (query @ keys.transpose(-1, -2)) * keys.shape[-1] ** -0.5  # (..., T, S)


class AdditiveScore(nn.Module):
    """s(h, q) = v^T tanh(W h + U q) (Bahdanau et al. 2015, "concat" in Luong et al.)."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)  # W
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)  # U
        self.v = nn.Linear(hidden_size, 1, bias=False)  # v^T

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        projected_keys = self.key_proj(keys).unsqueeze(-3)  # (..., 1, S, A)
        projected_query = self.query_proj(query).unsqueeze(-2)  # (..., T, 1, A)
        return self.v(torch.tanh(projected_keys + projected_query)).squeeze(-1)  # (..., T, S)


class BilinearScore(nn.Module):
    """s(h, q) = h^T W q (Luong et al. 2015, "general"). Query and keys may have different sizes."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(key_size, query_size))  # W
        nn.init.xavier_uniform_(self.weight)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        transformed_query = F.linear(query, self.weight)  # W q: (..., T, Dk)
        return transformed_query @ keys.transpose(-1, -2)  # (..., T, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """a_i = exp(s_i) / sum_{j allowed} exp(s_j) over the last dim; masked positions get weight 0.

    The softmax runs in at least float32 (float16 scores overflow in exp), and a row with nothing
    allowed gets all-zero weights instead of the 0/0 = NaN of a softmax over -inf.
    """
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)
    if mask is None:
        return scores.softmax(dim=-1, dtype=softmax_dtype).to(scores.dtype)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1, dtype=softmax_dtype)
    # A fully masked row came out uniform over its masked positions; zeroing masked positions makes
    # it all-zero (and is exact for the other rows, whose masked weights are already 0).
    return weights.masked_fill(~mask, 0.0).to(scores.dtype)


class SoftAttention(nn.Module):
    """Soft (key-value) attention with any scoring function: a = softmax(s(k_i, q)), context = sum_i
    a_i v_i.

    `forward(query (..., T, Dq), keys (..., S, Dk), values (..., S, Dv) = keys, mask broadcastable
    to (..., T, S))` returns `(context (..., T, Dv), weights (..., T, S))`. Without `values` it is
    plain attention over the keys.
    """

    def __init__(self, score: nn.Module):
        super().__init__()
        self.score = score

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if values is None:
            values = keys
        weights = masked_softmax(self.score(query, keys), mask)  # (..., T, S)
        context = weights @ values  # (..., T, Dv)
        return context, weights


# --------------------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O, head_h = Attention(Q W_Q^h, K W_K^h, V
    W_V^h) (Vaswani et al. 2017, §3.2.2), with Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.

    The per-head projections of all heads are one matrix each (W_Q = [W_Q^1 .. W_Q^H], C x C).
    Self-attention stores the three stacked as `qkv_proj` = [W_Q; W_K; W_V] (3C x C), the layout of
    `torch.nn.MultiheadAttention.in_proj_weight`, and computes Q, K and V in one matrix product.
    Cross-attention projects two different inputs, so it has `q_proj` (W_Q, for the decoder
    states) and `kv_proj` ([W_K; W_V], 2C x C, for the encoder output). Every projection is an
    `nn.Linear` called as a module, so adapters that wrap linear layers (PEFT's
    LoRA) see them all.

    Reads from `config`: `hidden_size`, `num_attention_heads`, `attention_probs_dropout_prob` and,
    at every call, `_attn_implementation` ("eager" or "sdpa"), so `model.set_attn_implementation`
    takes effect at once.

    `forward(hidden_states (B, T, C), key_value_states (B, S, C) for cross-attention,
    attention_mask, cache, output_attentions)` returns `(output (B, T, C), attention probabilities
    (B, H, T, S) or None)`. `attention_mask` is the full boolean mask (True = may attend,
    broadcastable to (B, H, T, S), causal part included, see `make_attention_mask`) or None; with
    None a causal module still masks the future itself.

    Cross-attention also serves k decoder sequences per encoder output: given `key_value_states`
    (B_src, S, C) with B = B_src * k, decoder rows i*k .. i*k + k - 1 read output i (the order of
    `repeat_interleave(k)`). Beam search's hypotheses of one source share its keys and values this
    way, stored once: the k query sequences attend as one of k T positions, and the mask is then
    broadcastable to (B_src, H, k T, S). Nothing is passed for it; the shapes say it.
    """

    def __init__(
        self,
        config,
        *,
        is_causal: bool = False,
        is_cross_attention: bool = False,
        layer_idx: int | None = None,
    ):
        super().__init__()
        hidden_size, num_heads = config.hidden_size, config.num_attention_heads
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by "
                f"num_attention_heads ({num_heads})"
            )
        if is_causal and is_cross_attention:
            raise ValueError(
                "cross-attention attends to a whole encoder output and cannot be causal"
            )
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        # Read by transformers' own attention functions when the mask is None; an encoder without it
        # would silently turn causal there.
        self.is_causal = is_causal
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.dropout = config.attention_probs_dropout_prob
        if is_cross_attention:
            self.q_proj = nn.Linear(hidden_size, hidden_size)  # W_Q
            self.kv_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [W_K; W_V]
        else:
            self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size)  # [W_Q; W_K; W_V]
        self.out_proj = nn.Linear(hidden_size, hidden_size)  # W^O
        self.score = ScaledDotScore()

    @property
    def implementation(self) -> str:
        """ "eager" or "sdpa", read from the config at every call; a bare config (None) means
        "sdpa", the default `PreTrainedModel` picks for models that support it."""
        implementation = self.config._attn_implementation or "sdpa"
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attention implementation {implementation!r} is not supported; use one of "
                f"{ATTENTION_IMPLEMENTATIONS}"
            )
        return implementation

    def _split_heads(self, projected: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """(B, L, parts * C) -> `parts` tensors of (B, H, L, D).

        Unbinding the (B, L, parts, H, D) view along `parts` lets the backward pass stack the
        gradients straight into the projection's layout, one copy."""
        B, L, _ = projected.shape
        projected = projected.view(B, L, parts, self.num_heads, self.head_dim)
        return tuple(part.transpose(1, 2) for part in projected.unbind(2))  # (B, H, L, D) each

    def _project_cross_key_value(
        self, key_value_states: torch.Tensor, cache: Cache | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K = C W_K, V = C W_V from the encoder output C, computed once per sequence when a cache
        is given."""
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise ValueError(
                f"cross-attention needs an EncoderDecoderCache, got {type(cache).__name__}"
            )
        if cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            return layer.keys, layer.values
        key_value = self.kv_proj(key_value_states)  # (B, S, 2C)
        key, value = self._split_heads(key_value, 2)  # (B, H, S, D) each
        if cache is not None:
            key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
            cache.is_updated[self.layer_idx] = True
        return key, value

    def _check_mask(
        self, attention_mask: torch.Tensor, batch_size: int, query_length: int, key_length: int
    ) -> None:
        expected = (batch_size, self.num_heads, query_length, key_length)
        shape = tuple(attention_mask.shape)
        if attention_mask.dtype != torch.bool:
            raise ValueError(
                "attention_mask must be boolean (True = may attend), got dtype "
                f"{attention_mask.dtype}"
            )
        # `!=`, not `n in (1, m)`: under torch.compile, `in` on a tuple holding a symbolic size
        # compared without guarding and refused a valid mask.
        if len(shape) != 4 or any(n != 1 and n != m for n, m in zip(shape, expected, strict=True)):
            raise ValueError(
                f"attention_mask of shape {shape} does not broadcast to (B, H, T, S) = {expected}"
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = hidden_states.shape
        # 1. Project into H heads: Q = X W_Q, and K = X W_K, V = X W_V (self-attention) or
        #    K = Z W_K, V = Z W_V from the encoder output Z (cross-attention).
        if self.is_cross_attention:
            if key_value_states is None:
                raise ValueError("cross-attention needs key_value_states (the encoder output)")
            (query,) = self._split_heads(self.q_proj(hidden_states), 1)  # (B, H, T, D)
            key, value = self._project_cross_key_value(key_value_states, cache)  # (B_src, H, S, D)
            query = self._queries_per_source(query, key.shape[0])  # (B_src, H, k T, D)
        else:
            query, key, value = self._split_heads(self.qkv_proj(hidden_states), 3)  # (B, H, T, D)
            if cache is not None:
                if isinstance(cache, EncoderDecoderCache):
                    cache = cache.self_attention_cache
                key, value = cache.update(key, value, self.layer_idx)  # (B, H, S, D), S = past + T

        # 2. The mask. Without one, a causal module masks the future itself: a single query (one
        #    decoding step) may see every key; T == S is SDPA's `is_causal` case; anything else
        #    needs the end-aligned mask written out. Asking for the attention probabilities runs
        #    the eager formula for that call even under "sdpa": the fused kernel never forms them.
        S = key.shape[-2]
        if attention_mask is not None:
            self._check_mask(attention_mask, query.shape[0], query.shape[2], S)
        eager = output_attentions or self.implementation == "eager"
        use_sdpa_is_causal = False
        if attention_mask is None and self.is_causal and T > 1:
            if T == S and not eager:
                use_sdpa_is_causal = True
            else:
                attention_mask = causal_mask(T, S, hidden_states.device)  # (T, S)

        # 3. head_h = softmax(Q_h K_h^T / sqrt(d_k)) V_h, every head at once.
        dropout = self.dropout if self.training else 0.0
        context, attn_weights = self._attend(
            query, key, value, attention_mask, use_sdpa_is_causal, dropout, eager
        )  # (B or B_src, H, T or k T, D)

        # 4. Concat(head_1, ..., head_H) W^O.
        context = self._one_row_per_sequence(context, B)  # (B, H, T, D)
        context = context.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        if attn_weights is not None:
            attn_weights = self._one_row_per_sequence(attn_weights, B)  # (B, H, T, S)
        return self.out_proj(context), attn_weights

    def _queries_per_source(self, query: torch.Tensor, sources: int) -> torch.Tensor:
        """(B, H, T, D) -> (B_src, H, k T, D): the k = B / B_src query sequences that read the same
        encoder output (rows i*k .. i*k + k - 1 read output i) as one sequence of k T queries, so
        that each source's keys and values are stored and read once. Unchanged when k = 1."""
        B, H, T, D = query.shape
        if sources == B:
            return query
        if B % sources != 0:
            raise ValueError(
                f"cross-attention got {B} decoder sequences for {sources} encoder outputs; it "
                "needs the same number, or a whole number of sequences per output"
            )
        query = query.reshape(sources, B // sources, H, T, D).transpose(1, 2)  # (B_src, H, k, T, D)
        return query.reshape(sources, H, -1, D)

    @staticmethod
    def _one_row_per_sequence(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(B_src, H, k T, X) -> (B, H, T, X), undoing `_queries_per_source`."""
        sources, H, length, X = tensor.shape
        if sources == batch_size:
            return tensor
        k = batch_size // sources
        tensor = tensor.reshape(sources, H, k, length // k, X)  # (B_src, H, k, T, X)
        tensor = tensor.transpose(1, 2)  # (B_src, k, H, T, X)
        return tensor.reshape(batch_size, H, length // k, X)

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        is_causal: bool,
        dropout: float,
        eager: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """softmax(Q K^T / sqrt(d_k)) V per head: (B, H, T, D) -> (B, H, T, D), plus the weights if
        eager."""
        if eager:
            attn_weights = masked_softmax(self.score(query, key), attention_mask)  # (B, H, T, S)
            dropped_weights = F.dropout(attn_weights, p=dropout, training=dropout > 0)
            return dropped_weights @ value, attn_weights
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=is_causal
        )
        return context, None
