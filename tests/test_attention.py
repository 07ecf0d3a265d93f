"""The attention core: scoring functions, masks, multi-head attention (vs
torch.nn.MultiheadAttention), eager vs SDPA, the KV cache, and the errors for bad input."""

import math
from functools import partial

import pytest
import torch
from conftest import block_config, copy_attention_into_torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from hf_scratch.attention import (
    AdditiveScore,
    BilinearScore,
    DotScore,
    MultiHeadAttention,
    ScaledDotScore,
    SoftAttention,
    causal_mask,
    make_attention_mask,
    masked_softmax,
)

# --------------------------------------------------------------------------------------------------
# Scoring functions against the formulas written out in float64
# --------------------------------------------------------------------------------------------------

B, T, S, DQ, DK = 2, 3, 5, 6, 4


def _reference_attention(scores, values, mask=None):
    """a_i = exp(s_i) / sum_j exp(s_j) over allowed j; context = sum_i a_i v_i, written as
    loops-free float64."""
    exp = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    if mask is not None:
        exp = exp * mask
    weights = exp / exp.sum(dim=-1, keepdim=True)
    return torch.einsum("bts,bsd->btd", weights, values), weights


def test_dot_score_is_h_dot_q():
    query, keys = (
        torch.randn(B, T, DK, dtype=torch.float64),
        torch.randn(B, S, DK, dtype=torch.float64),
    )
    expected = torch.einsum("btd,bsd->bts", query, keys)
    torch.testing.assert_close(DotScore()(query, keys), expected)


def test_scaled_dot_score_divides_by_sqrt_dk():
    query, keys = (
        torch.randn(B, T, DK, dtype=torch.float64),
        torch.randn(B, S, DK, dtype=torch.float64),
    )
    expected = torch.einsum("btd,bsd->bts", query, keys) / math.sqrt(DK)
    torch.testing.assert_close(ScaledDotScore()(query, keys), expected)


def test_additive_score_is_v_tanh_wh_plus_uq():
    score = AdditiveScore(query_size=DQ, key_size=DK, hidden_size=7).double()
    query, keys = (
        torch.randn(B, T, DQ, dtype=torch.float64),
        torch.randn(B, S, DK, dtype=torch.float64),
    )
    W, U, v = score.key_proj.weight, score.query_proj.weight, score.v.weight[0]
    expected = torch.empty(B, T, S, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            for s in range(S):
                expected[b, t, s] = v @ torch.tanh(W @ keys[b, s] + U @ query[b, t])
    torch.testing.assert_close(score(query, keys), expected)


def test_bilinear_score_is_h_w_q():
    score = BilinearScore(query_size=DQ, key_size=DK).double()
    query, keys = (
        torch.randn(B, T, DQ, dtype=torch.float64),
        torch.randn(B, S, DK, dtype=torch.float64),
    )
    expected = torch.empty(B, T, S, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            for s in range(S):
                expected[b, t, s] = keys[b, s] @ score.weight @ query[b, t]
    torch.testing.assert_close(score(query, keys), expected)


@pytest.mark.parametrize(
    "make_score",
    [DotScore, ScaledDotScore, partial(AdditiveScore, DK, DK, 8), partial(BilinearScore, DK, DK)],
    ids=["dot", "scaled_dot", "additive", "bilinear"],
)
def test_soft_attention_is_softmax_weighted_sum_of_values(make_score):
    score = make_score().double()
    attention = SoftAttention(score)
    query = torch.randn(B, T, DK, dtype=torch.float64)
    keys, values = (
        torch.randn(B, S, DK, dtype=torch.float64),
        torch.randn(B, S, 3, dtype=torch.float64),
    )
    mask = torch.ones(B, 1, S, dtype=torch.bool)
    mask[1, :, 3:] = False  # the second sequence has two padding positions
    context, weights = attention(query, keys, values, mask=mask)
    expected_context, expected_weights = _reference_attention(score(query, keys), values, mask)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(context, expected_context)
    assert (weights[1, :, 3:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T, dtype=torch.float64))


def test_plain_attention_on_a_worked_example():
    """K = V = H: with keys e_1, e_2 and the query 2 e_1, the dot scores are (2, 0), the weights
    (e^2, 1) / (e^2 + 1) and the context the keys weighted by them."""
    attention = SoftAttention(DotScore())
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)  # (1, S=2, 2)
    query = torch.tensor([[[2.0, 0.0]]], dtype=torch.float64)  # (1, T=1, 2)
    context, weights = attention(query, keys)
    e2 = math.exp(2.0)
    expected = torch.tensor([[[e2 / (e2 + 1), 1 / (e2 + 1)]]], dtype=torch.float64)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(context, expected)  # sum_i a_i e_i = (a_1, a_2)


def test_rnn_decoder_style_single_query_attention():
    """A decoder state q (B, Dq) attends over encoder states h_i (B, S, Dk) of another size, the
    Bahdanau use: a_i = softmax_i(v^T tanh(W h_i + U q)), c = sum_i a_i h_i, written out per
    position with the module's own W, U and v."""
    score = AdditiveScore(query_size=10, key_size=DK, hidden_size=16).double()
    attention = SoftAttention(score)
    decoder_state = torch.randn(B, 10, dtype=torch.float64)
    encoder_states = torch.randn(B, S, DK, dtype=torch.float64)
    context, weights = attention(decoder_state.unsqueeze(1), encoder_states)
    W, U, v = score.key_proj.weight, score.query_proj.weight, score.v.weight[0]
    for b in range(B):
        scores = torch.stack(
            [v @ torch.tanh(W @ encoder_states[b, i] + U @ decoder_state[b]) for i in range(S)]
        )
        a = scores.softmax(0)
        torch.testing.assert_close(weights[b, 0], a)
        torch.testing.assert_close(context[b, 0], (a[:, None] * encoder_states[b]).sum(0))


# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------


def test_causal_mask_is_end_aligned():
    assert torch.equal(causal_mask(3, 3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    # two queries at absolute positions 3 and 4 over five keys (three of them cached)
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool())


def test_make_attention_mask_combines_padding_and_causal():
    attention_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])  # left padding in the first row
    mask = make_attention_mask(
        attention_mask, batch_size=2, query_length=3, key_length=3, causal=True
    )
    assert mask.shape == (2, 1, 3, 3)
    assert torch.equal(mask[1, 0], causal_mask(3, 3))
    assert torch.equal(mask[0, 0], torch.tensor([[0, 0, 0], [0, 1, 0], [0, 1, 1]]).bool())
    # nothing padded: no mask at all, so SDPA can use its causal kernel
    assert make_attention_mask(torch.ones(2, 3), 2, 3, 3, causal=True) is None


def test_make_attention_mask_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        make_attention_mask(
            torch.ones(2, 3), batch_size=2, query_length=4, key_length=4, causal=True
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_masked_softmax_fully_masked_row_is_zero(dtype):
    scores = torch.randn(2, 4, 5).to(dtype)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[0, 1] = False
    weights = masked_softmax(scores, mask)
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    assert (weights[0, 1] == 0).all()
    torch.testing.assert_close(weights[1].float().sum(-1), torch.ones(4), atol=1e-2, rtol=0)


# --------------------------------------------------------------------------------------------------
# Multi-head attention against torch.nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------

C, H = 32, 4


def _paired_modules(implementation, cross=False, causal=False):
    ours = MultiHeadAttention(
        block_config(C, H, attn_implementation=implementation),
        is_causal=causal,
        is_cross_attention=cross,
        layer_idx=0,
    ).eval()
    reference = nn.MultiheadAttention(C, H, batch_first=True).eval()
    copy_attention_into_torch(ours, reference)
    return ours, reference


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_self_attention_matches_nn_multihead_attention_with_padding_and_causal(implementation):
    ours, reference = _paired_modules(implementation, causal=True)
    x = torch.randn(3, 7, C)
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 5:] = 0  # right padding
    attention_mask[2, :2] = 0  # left padding: the first two rows of sequence 2 see nothing
    mask = make_attention_mask(attention_mask, 3, 7, 7, causal=True)
    out, _ = ours(x, attention_mask=mask)
    # nn.MultiheadAttention's boolean masks mean the opposite: True = may NOT attend.
    expected, _ = reference(
        x,
        x,
        x,
        key_padding_mask=attention_mask == 0,
        attn_mask=~causal_mask(7, 7),
        need_weights=False,
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The two fully masked rows: a zero context, so only the bias of W^O remains.
    torch.testing.assert_close(out[2, :2], ours.out_proj.bias.expand(2, C))


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_causal_attention_without_mask_matches_reference(implementation):
    ours, reference = _paired_modules(implementation, causal=True)
    x = torch.randn(2, 6, C)
    out, _ = ours(x)
    expected, _ = reference(x, x, x, attn_mask=~causal_mask(6, 6), need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_cross_attention_matches_nn_multihead_attention(implementation):
    ours, reference = _paired_modules(implementation, cross=True)
    decoder_states, encoder_states = torch.randn(2, 4, C), torch.randn(2, 9, C)
    encoder_mask = torch.ones(2, 9, dtype=torch.long)
    encoder_mask[0, 6:] = 0
    mask = make_attention_mask(encoder_mask, 2, 4, 9, causal=False)
    out, _ = ours(decoder_states, key_value_states=encoder_states, attention_mask=mask)
    expected, _ = reference(
        decoder_states, encoder_states, encoder_states, key_padding_mask=encoder_mask == 0
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_eager_returns_the_same_weights_as_nn_multihead_attention():
    ours, reference = _paired_modules("eager")
    x = torch.randn(2, 5, C)
    _, weights = ours(x, output_attentions=True)
    _, expected = reference(x, x, x, need_weights=True, average_attn_weights=False)
    assert weights.shape == (2, H, 5, 5)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)


def test_sdpa_falls_back_to_eager_when_weights_are_asked_for():
    ours, _ = _paired_modules("sdpa", causal=True)
    x = torch.randn(2, 5, C)
    out, weights = ours(x, output_attentions=True)
    plain, none = ours(x)
    assert none is None
    assert torch.equal(
        weights.triu(1), torch.zeros_like(weights)
    )  # causal: nothing above the diagonal
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# eager == sdpa on random shapes and masks
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([4, 8, 16]),
    query_length=st.integers(1, 9),
    other_length=st.integers(0, 9),
    kind=st.sampled_from(["self", "causal", "cross"]),
    mask_kind=st.sampled_from(["none", "padding", "random"]),
    seed=st.integers(0, 2**16),
)
def test_eager_and_sdpa_agree(
    batch, heads, head_dim, query_length, other_length, kind, mask_kind, seed
):
    """Self-attention runs over `other_length` cached positions plus the queries; cross-attention
    attends to `other_length` (at least 1) encoder states."""
    generator = torch.Generator().manual_seed(seed)
    config = block_config(heads * head_dim, heads, attn_implementation="eager")
    causal, cross = kind == "causal", kind == "cross"
    module = MultiHeadAttention(
        config, is_causal=causal, is_cross_attention=cross, layer_idx=0
    ).eval()
    hidden = torch.randn(batch, query_length, heads * head_dim, generator=generator)
    key_length = max(other_length, 1) if cross else other_length + query_length
    encoder_states = torch.randn(batch, key_length, heads * head_dim, generator=generator)
    past = torch.randn(batch, heads, other_length, head_dim, generator=generator)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "padding":
        lengths = torch.randint(0, key_length + 1, (batch,), generator=generator)
        attention_mask = torch.arange(key_length)[None, :] < lengths[:, None]
        mask = make_attention_mask(attention_mask, batch, query_length, key_length, causal)
    else:
        mask = torch.rand(batch, 1, query_length, key_length, generator=generator) < 0.6
        if causal:
            mask = mask & causal_mask(query_length, key_length)

    outputs = {}
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        if cross:
            outputs[implementation], _ = module(
                hidden, key_value_states=encoder_states, attention_mask=mask
            )
        else:
            cache = DynamicCache()
            if other_length:
                cache.update(past, past.flip(-1), 0)
            outputs[implementation], _ = module(hidden, attention_mask=mask, cache=cache)
    assert torch.isfinite(outputs["sdpa"]).all()
    torch.testing.assert_close(outputs["eager"], outputs["sdpa"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fully_padded_rows_are_zero_not_nan(implementation, dtype):
    module = MultiHeadAttention(
        block_config(C, H, attn_implementation=implementation), is_causal=True
    ).to(dtype)
    attention_mask = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    mask = make_attention_mask(attention_mask, 3, 5, 5, causal=True)
    x = torch.randn(3, 5, C, dtype=dtype, requires_grad=True)
    out, _ = module(x, attention_mask=mask)
    assert out.dtype == dtype and torch.isfinite(out).all()
    context_of_zero = module.out_proj.bias.detach()
    torch.testing.assert_close(out[0, :3].detach(), context_of_zero.expand(3, C))
    torch.testing.assert_close(out[2].detach(), context_of_zero.expand(5, C))
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------------------------------
# KV cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_incremental_self_attention_with_cache_equals_full_causal(implementation):
    module = MultiHeadAttention(
        block_config(C, H, attn_implementation=implementation), is_causal=True, layer_idx=0
    ).eval()
    x = torch.randn(2, 8, C)
    full, _ = module(x)
    cache = DynamicCache()
    chunks = [x[:, :3], x[:, 3:4], x[:, 4:7], x[:, 7:]]  # a prefill, then single steps and a chunk
    incremental = torch.cat([module(chunk, cache=cache)[0] for chunk in chunks], dim=1)
    assert cache.get_seq_length() == 8
    torch.testing.assert_close(incremental, full, atol=1e-5, rtol=1e-5)


def test_cross_attention_projects_the_encoder_once_per_sequence():
    module = MultiHeadAttention(block_config(C, H), is_cross_attention=True, layer_idx=0).eval()
    decoder_states, encoder_states = torch.randn(2, 4, C), torch.randn(2, 6, C)
    full, _ = module(decoder_states, key_value_states=encoder_states)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    steps = []
    for t in range(4):
        steps.append(
            module(decoder_states[:, t : t + 1], key_value_states=encoder_states, cache=cache)[0]
        )
        if t == 0:
            cached_keys = cache.cross_attention_cache.layers[0].keys
    assert cache.cross_attention_cache.layers[0].keys is cached_keys  # never recomputed or appended
    assert cache.cross_attention_cache.get_seq_length() == 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_hidden_size_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"hidden_size \(30\).*num_attention_heads \(4\)"):
        MultiHeadAttention(block_config(30, 4))


def test_mask_of_wrong_shape_or_dtype():
    module = MultiHeadAttention(block_config(C, H))
    x = torch.randn(2, 5, C)
    with pytest.raises(ValueError, match=r"does not broadcast to \(B, H, T, S\) = \(2, 4, 5, 5\)"):
        module(x, attention_mask=torch.ones(2, 1, 5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        module(x, attention_mask=torch.ones(2, 1, 5, 5))


def test_unknown_attention_implementation():
    module = MultiHeadAttention(block_config(C, H, attn_implementation="eager"))
    module.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="flash_attention_2"):
        module(torch.randn(1, 3, C))


def test_cross_attention_needs_encoder_states_and_an_encoder_decoder_cache():
    module = MultiHeadAttention(block_config(C, H), is_cross_attention=True, layer_idx=0)
    with pytest.raises(ValueError, match="key_value_states"):
        module(torch.randn(1, 3, C))
    with pytest.raises(ValueError, match="EncoderDecoderCache"):
        module(torch.randn(1, 3, C), key_value_states=torch.randn(1, 4, C), cache=DynamicCache())
    with pytest.raises(ValueError, match="cannot be causal"):
        MultiHeadAttention(block_config(C, H), is_cross_attention=True, is_causal=True)


def test_dropout_on_attention_weights_only_in_training():
    config = block_config(C, H, attn_implementation="eager", dropout=0.5)
    module = MultiHeadAttention(config)
    x = torch.randn(2, 5, C)
    module.eval()
    torch.testing.assert_close(module(x)[0], module(x)[0])
    module.train()
    assert not torch.allclose(module(x)[0], module(x)[0])
