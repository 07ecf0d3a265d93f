"""Position embeddings, the feed-forward network and the residual block (vs
torch.nn.TransformerEncoderLayer / TransformerDecoderLayer with copied weights), with the KV cache
through a stack of decoder blocks."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from conftest import block_config, copy_attention_into_torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

from hf_scratch.attention import causal_mask, make_attention_mask
from hf_scratch.layers import (
    ACTIVATIONS,
    FeedForward,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    TransformerBlock,
    get_activation,
    sinusoidal_position_table,
)

# --------------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------------


def test_sinusoidal_table_is_the_papers_formula():
    table = sinusoidal_position_table(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_half_layout_matches_marian():
    marian = MarianSinusoidalPositionalEmbedding(64, 24)
    torch.testing.assert_close(
        sinusoidal_position_table(64, 24, interleaved=False), marian.create_weight()
    )


def test_sinusoidal_embedding_looks_up_positions_and_rejects_out_of_range():
    embedding = SinusoidalPositionEmbedding(10, 8)
    positions = torch.tensor([[0, 1, 2], [5, 6, 9]])
    torch.testing.assert_close(embedding(positions), sinusoidal_position_table(10, 8)[positions])
    assert "weight" not in embedding.state_dict()  # a fixed table is not saved
    with pytest.raises(
        ValueError, match=r"position_ids contains 10, outside the valid range \[0, 10\)"
    ):
        embedding(torch.tensor([[8, 9, 10]]))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_position_table(10, 7)


def test_learned_position_embedding_rejects_out_of_range():
    embedding = LearnedPositionEmbedding(4, 8)
    assert embedding(torch.tensor([[0, 3]])).shape == (1, 2, 8)
    with pytest.raises(ValueError, match=r"contains 4, outside the valid range \[0, 4\)"):
        embedding(torch.tensor([[3, 4]]))
    with pytest.raises(ValueError, match=r"contains -1"):
        embedding(torch.tensor([[-1, 0]]))


# --------------------------------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_transformers(name):
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(get_activation(name)(x), ACT2FN[name](x), atol=1e-6, rtol=1e-5)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="'gelu_fast'"):
        get_activation("gelu_fast")


def test_feed_forward_is_w2_act_w1():
    ffn = FeedForward(8, 32, "relu")
    x = torch.randn(2, 3, 8)
    expected = torch.relu(x @ ffn.fc1.weight.T + ffn.fc1.bias) @ ffn.fc2.weight.T + ffn.fc2.bias
    torch.testing.assert_close(ffn(x), expected)


# --------------------------------------------------------------------------------------------------
# The residual block against torch.nn.TransformerEncoderLayer / TransformerDecoderLayer
# --------------------------------------------------------------------------------------------------

C, H, FF = 32, 4, 64


def _copy_common(ours: TransformerBlock, reference):
    copy_attention_into_torch(ours.self_attn, reference.self_attn)
    reference.linear1.load_state_dict(ours.feed_forward.fc1.state_dict())
    reference.linear2.load_state_dict(ours.feed_forward.fc2.state_dict())
    reference.norm1.load_state_dict(ours.self_attn_norm.state_dict())


def _randomise_norms(block):
    for module in block.modules():
        if isinstance(module, nn.LayerNorm):
            nn.init.normal_(module.weight, 1.0, 0.2)
            nn.init.normal_(module.bias, 0.0, 0.2)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_encoder_block_matches_nn_transformer_encoder_layer(norm_first, activation, implementation):
    config = block_config(C, H, FF, activation, implementation)
    ours = TransformerBlock(config, is_causal=False, norm_first=norm_first).eval()
    _randomise_norms(ours)
    reference = nn.TransformerEncoderLayer(
        C, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    with torch.no_grad():
        _copy_common(ours, reference)
        reference.norm2.load_state_dict(ours.feed_forward_norm.state_dict())

    x = torch.randn(3, 6, C)
    attention_mask = torch.ones(3, 6, dtype=torch.long)
    attention_mask[0, 4:] = 0
    mask = make_attention_mask(attention_mask, 3, 6, 6, causal=False)
    out, _, _ = ours(x, attention_mask=mask)
    # nn.Transformer's key_padding_mask marks padding with True, the opposite of ours.
    # Grad mode keeps it off its inference fast path, which returns zeros at padded positions.
    with torch.enable_grad():
        expected = reference(x, src_key_padding_mask=attention_mask == 0)
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_decoder_block_matches_nn_transformer_decoder_layer(norm_first, implementation):
    config = block_config(C, H, FF, "relu", implementation)
    ours = TransformerBlock(
        config, is_causal=True, has_cross_attention=True, norm_first=norm_first, layer_idx=0
    ).eval()
    _randomise_norms(ours)
    reference = nn.TransformerDecoderLayer(
        C, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    with torch.no_grad():
        _copy_common(ours, reference)
        copy_attention_into_torch(ours.cross_attn, reference.multihead_attn)
        reference.norm2.load_state_dict(ours.cross_attn_norm.state_dict())
        reference.norm3.load_state_dict(ours.feed_forward_norm.state_dict())

    target, memory = torch.randn(2, 5, C), torch.randn(2, 7, C)
    target_padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    memory_padding = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    out, _, _ = ours(
        target,
        attention_mask=make_attention_mask(target_padding, 2, 5, 5, causal=True),
        encoder_hidden_states=memory,
        encoder_attention_mask=make_attention_mask(memory_padding, 2, 5, 7, causal=False),
    )
    expected = reference(
        target,
        memory,
        tgt_mask=~causal_mask(5, 5),  # True = masked in nn.Transformer
        tgt_key_padding_mask=target_padding == 0,
        memory_key_padding_mask=memory_padding == 0,
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_block_returns_attention_weights_when_asked():
    config = block_config(C, H, FF, attn_implementation="sdpa")
    block = TransformerBlock(config, is_causal=True, has_cross_attention=True, layer_idx=0)
    out, self_weights, cross_weights = block(
        torch.randn(2, 4, C), encoder_hidden_states=torch.randn(2, 6, C), output_attentions=True
    )
    assert out.shape == (2, 4, C)
    assert self_weights.shape == (2, H, 4, 4) and cross_weights.shape == (2, H, 4, 6)
    assert (self_weights.triu(1) == 0).all()


def test_block_gradient_checkpointing_gives_the_same_gradients():
    config = block_config(C, H, FF)
    block = TransformerBlock(config, is_causal=True)
    x = torch.randn(2, 5, C, requires_grad=True)
    block(x)[0].sum().backward()
    expected = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    block.gradient_checkpointing = True
    block._gradient_checkpointing_func = partial(
        torch.utils.checkpoint.checkpoint, use_reentrant=False
    )
    block(x)[0].sum().backward()
    for p, g in zip(block.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


# --------------------------------------------------------------------------------------------------
# Incremental decoding through a stack of decoder blocks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_with_cache_equals_full_causal_pass(implementation, norm_first):
    config = block_config(C, H, FF, "gelu", implementation)
    blocks = nn.ModuleList(
        TransformerBlock(
            config, is_causal=True, has_cross_attention=True, norm_first=norm_first, layer_idx=i
        )
        for i in range(3)
    ).eval()
    target, memory = torch.randn(2, 7, C), torch.randn(2, 5, C)
    memory_padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])

    def run(hidden, cache=None):
        encoder_mask = make_attention_mask(memory_padding, 2, hidden.shape[1], 5, causal=False)
        for block in blocks:
            hidden = block(
                hidden,
                encoder_hidden_states=memory,
                encoder_attention_mask=encoder_mask,
                cache=cache,
            )[0]
        return hidden

    full = run(target)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    steps = [run(target[:, :3], cache)] + [run(target[:, t : t + 1], cache) for t in range(3, 7)]
    assert cache.get_seq_length() == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_block_rejects_heads_that_do_not_divide_hidden_size():
    with pytest.raises(
        ValueError, match=r"hidden_size \(32\) must be divisible by num_attention_heads \(5\)"
    ):
        TransformerBlock(block_config(32, 5), is_causal=False)


def test_block_applies_residual_dropout_to_each_sublayer_output_in_training_only():
    """Training: x = LayerNorm(x + Dropout(Sublayer(x))) for each sublayer (§5.4), the dropout
    masks drawn in that order; evaluation: no dropout."""
    config = block_config(C, H, FF)
    config.hidden_dropout_prob = 0.5  # attention dropout stays 0: only the residual ones draw
    block = TransformerBlock(config, is_causal=False).train()
    x = torch.randn(2, 5, C)

    def by_hand(dropout) -> torch.Tensor:
        attention, _ = block.self_attn(x)
        hidden = block.self_attn_norm(x + dropout(attention))
        return block.feed_forward_norm(hidden + dropout(block.feed_forward(hidden)))

    torch.manual_seed(0)
    training = block(x)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(training, by_hand(lambda t: F.dropout(t, 0.5, training=True)))
    block.eval()
    evaluation = block(x)[0]
    torch.testing.assert_close(evaluation, by_hand(lambda t: t))
    assert not torch.allclose(training, evaluation)
