"""The lean cross-entropy equals torch's in value and in gradient: ignored rows, label smoothing,
several row blocks, any upstream gradient (a negated or zero-weighted loss), and bfloat16 logits."""

import pytest
import torch
import torch.nn.functional as F

from hf_scratch import losses


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("upstream", [1.0, 0.25, -2.0, 0.0])
@pytest.mark.parametrize("labelled", ["most rows", "few rows"])  # a language model's, a masked LM's
def test_value_and_gradient_equal_torch(monkeypatch, label_smoothing, upstream, labelled):
    monkeypatch.setattr(losses, "_BLOCK_ELEMENTS", 700)  # 7 rows of 100 per block: several blocks
    logits = torch.randn(4, 9, 100, dtype=torch.float64).float() * 3
    labels = torch.randint(0, 100, (4, 9))
    labels[0, :4] = -100
    labels[2, 7] = -100
    if labelled == "few rows":
        labels[torch.rand(4, 9) > 0.2] = -100
        labels[0, 5] = 3
    ours_input = logits.clone().requires_grad_()
    torch_input = logits.clone().requires_grad_()

    ours = losses.cross_entropy(ours_input, labels, label_smoothing=label_smoothing)
    expected = F.cross_entropy(
        torch_input.view(-1, 100), labels.view(-1), label_smoothing=label_smoothing
    )
    torch.testing.assert_close(ours, expected)
    (ours * upstream).backward()
    (expected * upstream).backward()
    torch.testing.assert_close(ours_input.grad, torch_input.grad)
    assert ours_input.grad[0, :4].abs().max() == 0  # ignored positions get no gradient


def test_bfloat16_logits_and_num_items_in_batch():
    logits = (torch.randn(2, 5, 50) * 2).bfloat16()
    labels = torch.randint(0, 50, (2, 5))
    ours_input = logits.clone().requires_grad_()
    torch_input = logits.float().requires_grad_()
    ours = losses.cross_entropy(ours_input, labels, num_items_in_batch=20)
    expected = F.cross_entropy(torch_input.view(-1, 50), labels.view(-1), reduction="sum") / 20
    torch.testing.assert_close(ours, expected)
    ours.backward()
    expected.backward()
    assert ours_input.grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours_input.grad.float(), torch_input.grad, atol=1e-3, rtol=1e-2)
