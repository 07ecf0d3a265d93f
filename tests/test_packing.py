"""Packed weights for decoding (`hf_scratch.packing`): the same products as `nn.Linear`, made only
where they pay, never stale, freed after `generate()`."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt_config, tiny_transformer_config

from hf_scratch import ScratchGPTLMHeadModel, ScratchTransformerForConditionalGeneration
from hf_scratch.packing import _MKL_PACKED_GEMM, Linear, packed_weights

pytestmark = pytest.mark.skipif(not _MKL_PACKED_GEMM, reason="torch is built without MKL")


def _packed_linears(model) -> list[Linear]:
    return [m for m in model.modules() if isinstance(m, Linear) and m._pack is not None]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 24), (3, 24), (4, 24), (2, 4, 24), (8, 64, 24), (600, 24)])
def test_packed_product_equals_nn_linear(shape, bias):
    linear = Linear(24, 40, bias=bias)
    x = torch.randn(shape)
    expected = F.linear(x, linear.weight, linear.bias)
    small_batch = 8 <= x.numel() // 24 <= 512
    with torch.no_grad(), packed_weights(linear):
        first = linear(x)
        assert linear._pack is None or linear._pack[1] is None  # used once: not packed
        second = linear(x)
        assert (linear._pack is not None) == small_batch  # packed for 8 to 512 rows only
    assert linear._pack is None and not linear.packing  # freed on leaving
    for y in (first, second):
        assert y.shape == expected.shape
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_a_strided_input_gives_the_same_product():
    linear = Linear(24, 40)
    hidden = torch.randn(8, 5, 24)
    x = hidden[:, -1:]  # the last position of every row: (8, 1, 24), not contiguous
    with torch.no_grad(), packed_weights(linear):
        linear(x)
        y = linear(x)
        assert linear._pack[1] is not None
    torch.testing.assert_close(y, F.linear(x, linear.weight, linear.bias))


@pytest.mark.parametrize("in_features, packed", [(1024, True), (1000, False)])
def test_a_weight_of_a_million_entries_is_packed_from_four_rows(in_features, packed):
    linear = Linear(in_features, 1024)
    x = torch.randn(4, in_features)
    with torch.no_grad(), packed_weights(linear):
        linear(x)
        torch.testing.assert_close(linear(x), F.linear(x, linear.weight, linear.bias))
        assert (linear._pack is not None) == packed


def test_a_weight_written_inside_the_context_is_repacked():
    linear = Linear(16, 32)
    x = torch.randn(8, 16)
    with torch.no_grad(), packed_weights(linear):
        linear(x), linear(x)
        linear.weight.mul_(2.0)  # in place: same storage, new version
        linear(x)
        torch.testing.assert_close(linear(x), F.linear(x, linear.weight, linear.bias))


def test_with_gradients_it_is_nn_linear():
    linear = Linear(16, 32)
    x = torch.randn(8, 16)
    with packed_weights(linear):
        linear(x), linear(x).sum().backward()
        assert linear._pack is None
    assert linear.weight.grad is not None


def test_under_autocast_it_is_nn_linear():
    linear = Linear(16, 32)
    x = torch.randn(8, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), packed_weights(linear):
        linear(x)
        y = linear(x)
        assert linear._pack is None
    assert y.dtype == torch.bfloat16


def test_nested_contexts_keep_the_outer_packs():
    linear = Linear(16, 32)
    x = torch.randn(8, 16)
    with torch.no_grad(), packed_weights(linear):
        with packed_weights(linear):
            linear(x), linear(x)
        assert linear.packing and linear._pack[1] is not None


def test_a_packed_layer_can_be_copied():
    linear = Linear(16, 32)
    x = torch.randn(8, 16)
    with torch.no_grad(), packed_weights(linear):
        linear(x), linear(x)
        copied = copy.deepcopy(linear)
        assert linear._pack[1] is not None  # the original keeps its pack
    assert copied._pack is None and not copied.packing
    torch.testing.assert_close(copied(x), linear(x))


def _generate_with_and_without_packing(model, inputs, settings):
    model.pack_weights_for_generation = False
    plain = model.generate(**inputs, **settings)
    model.pack_weights_for_generation = True
    packed = model.generate(**inputs, **settings)
    assert not _packed_linears(model)  # generate() freed its packs
    return plain, packed


@pytest.mark.parametrize("num_beams", [1, 3])
def test_gpt_generation_is_the_same_with_packed_weights(num_beams):
    model = ScratchGPTLMHeadModel(tiny_gpt_config(norm_first=True)).eval()
    inputs = {"input_ids": torch.randint(1, 101, (8, 5))}
    settings = dict(max_new_tokens=10, num_beams=num_beams, do_sample=False, pad_token_id=0)
    plain, packed = _generate_with_and_without_packing(model, inputs, settings)
    assert torch.equal(packed, plain)


def test_transformer_beam_search_is_the_same_with_packed_weights():
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config()).eval()
    inputs = {"input_ids": torch.randint(3, 61, (4, 9))}
    settings = dict(max_new_tokens=10, min_new_tokens=10, num_beams=4, do_sample=False)
    plain, packed = _generate_with_and_without_packing(model, inputs, settings)
    assert torch.equal(packed, plain)
