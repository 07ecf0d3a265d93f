"""hf_scratch.plotting: the attention matrices it extracts are the models' own, the heatmaps hold
exactly those numbers, the training curves hold the logged values, and the PNG files are real."""

import json
import struct

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config, tiny_gpt_config, tiny_transformer_config
from transformers import Trainer, TrainingArguments
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from hf_scratch import (
    ScratchBertModel,
    ScratchGPTLMHeadModel,
    ScratchTransformerForConditionalGeneration,
)
from hf_scratch.plotting import (
    attention_figure,
    attention_maps,
    find_trainer_state,
    plot_attention,
    plot_training_curves,
    text_attention_maps,
    training_curves_figure,
    write_run_plots,
)

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXT = "the cat sat on the mat"


def assert_png(path, min_width: int = 200) -> None:
    """A real PNG: the signature, an IHDR chunk with sensible dimensions, a plausible file size."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert min_width <= width <= 5000 and 150 <= height <= 5000, (width, height)
    assert 5_000 < len(data) < 3_000_000, len(data)


def reference_attentions(model, **inputs) -> dict[str, torch.Tensor]:
    """The model's own output_attentions for batch element 0, stacked to (L, H, T_q, T_k)."""
    with torch.no_grad():
        outputs = model.eval()(**inputs, output_attentions=True)
    fields = ["encoder_attentions", "decoder_attentions", "cross_attentions", "attentions"]
    return {
        name: torch.stack([weights[0] for weights in getattr(outputs, name)])
        for name in fields
        if getattr(outputs, name, None) is not None
    }


def heatmap(figure, layer: int, head: int, heads: int) -> np.ndarray:
    """The array drawn in the grid cell (layer, head)."""
    ax = figure.axes[layer * heads + head]
    assert ax.get_title() == f"layer {layer + 1}, head {head + 1}"
    return np.asarray(ax.images[0].get_array())


def assert_figure_holds(figure, weights: torch.Tensor) -> None:
    L, H = weights.shape[:2]
    for layer in range(L):
        for head in range(H):
            np.testing.assert_allclose(
                heatmap(figure, layer, head, H), weights[layer, head].numpy(), rtol=0, atol=1e-7
            )


# --------------------------------------------------------------------------------------------------
# Attention matrices
# --------------------------------------------------------------------------------------------------


def test_gpt_maps_are_the_models_causal_probabilities_under_sdpa():
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    assert model.config._attn_implementation == "sdpa"
    model.train()
    input_ids = torch.randint(0, 101, (2, 7))
    maps = attention_maps(model, input_ids)
    assert list(maps) == ["self-attention (causal)"]
    weights = maps["self-attention (causal)"]
    assert weights.shape == (2, 4, 7, 7) and weights.dtype == torch.float32
    torch.testing.assert_close(
        weights, reference_attentions(model, input_ids=input_ids)["attentions"]
    )
    assert (weights.triu(1) == 0).all()
    assert (weights[..., torch.ones(7, 7).tril().bool()] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
    # The eager formula ran for this call only: the model's setting and mode are unchanged.
    assert model.config._attn_implementation == "sdpa"
    model.train()
    attention_maps(model, input_ids)
    assert model.training


def test_bert_maps_put_no_weight_on_padding():
    model = ScratchBertModel(tiny_bert_config())
    input_ids = torch.randint(5, 99, (2, 8))
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[0, 5:] = 0
    maps = attention_maps(model, input_ids, attention_mask=attention_mask)
    assert list(maps) == ["self-attention"]  # bidirectional: not labelled causal
    weights = maps["self-attention"]
    assert weights.shape == (2, 4, 8, 8)
    expected = reference_attentions(model, input_ids=input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(weights, expected["attentions"])
    assert (weights[..., 5:] == 0).all()
    assert (weights[..., :5] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 8))


def test_transformer_maps_have_the_three_kinds_and_shapes():
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config())
    input_ids = torch.randint(3, 61, (2, 6))
    attention_mask = torch.ones(2, 6, dtype=torch.long)
    attention_mask[0, 4:] = 0
    decoder_input_ids = torch.randint(3, 61, (2, 5))
    inputs = dict(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    )
    maps = attention_maps(model, **inputs)
    assert list(maps) == ["encoder self-attention", "decoder self-attention", "cross-attention"]
    encoder, decoder, cross = maps.values()
    assert encoder.shape == (2, 4, 6, 6)
    assert decoder.shape == (3, 4, 5, 5)
    assert cross.shape == (3, 4, 5, 6)  # (layers, heads, T_target, S_source)
    expected = reference_attentions(model, **inputs)
    torch.testing.assert_close(encoder, expected["encoder_attentions"])
    torch.testing.assert_close(decoder, expected["decoder_attentions"])
    torch.testing.assert_close(cross, expected["cross_attentions"])
    assert (decoder.triu(1) == 0).all()
    assert (decoder[..., torch.ones(5, 5).tril().bool()] > 0).all()
    assert (cross[..., 4:] == 0).all() and (encoder[..., 4:] == 0).all()  # padded source keys
    for weights in maps.values():
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_transformer_loaded_with_trust_remote_code(tmp_path):
    """Classes from the saved folder's own copy of the code, as `trust_remote_code=True` loads them
    where hf_scratch is not installed (AutoModel* would pick the registered local classes here)."""
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config()).eval()
    model.save_pretrained(tmp_path)
    remote_class = get_class_from_dynamic_module(
        "modeling_transformer.ScratchTransformerForConditionalGeneration", str(tmp_path)
    )
    remote = remote_class.from_pretrained(tmp_path)
    assert type(remote).__module__.startswith("transformers_modules.")
    inputs = dict(
        input_ids=torch.randint(3, 61, (1, 6)), decoder_input_ids=torch.randint(3, 61, (1, 4))
    )
    maps = attention_maps(remote, **inputs)
    for kind, weights in attention_maps(model, **inputs).items():
        torch.testing.assert_close(maps[kind], weights)


# --------------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------------


def test_gpt_heatmaps_hold_the_attention_of_the_text(tmp_path, word_tokenizer):
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    maps, tokens, target_tokens = text_attention_maps(model, word_tokenizer, TEXT)
    assert tokens == TEXT.split() and target_tokens is None
    input_ids = word_tokenizer(TEXT, return_tensors="pt")["input_ids"]
    expected = reference_attentions(model, input_ids=input_ids)["attentions"]

    figure = attention_figure(maps["self-attention (causal)"], tokens, tokens)
    assert_figure_holds(figure, expected)
    bottom_left = figure.axes[1 * 4 + 0]  # layer 2, head 1: carries both axes' token labels
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == tokens
    assert [t.get_text() for t in bottom_left.get_yticklabels()] == tokens
    assert len(figure.axes) == 2 * 4 + 1  # the grid and one colorbar

    paths = plot_attention(tmp_path, model=model, tokenizer=word_tokenizer, text=TEXT)
    assert paths == [tmp_path / "attention_self_attention_causal.png"]
    assert_png(paths[0])


def test_transformer_heatmaps_for_a_given_and_a_generated_target(tmp_path, word_tokenizer):
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config())
    maps, source, target = text_attention_maps(
        model, word_tokenizer, TEXT, target_text="a big dog ran"
    )
    assert source == TEXT.split()
    assert target == ["<unk>", "a", "big", "dog", "ran"]  # the decoder start token (id 1) first
    assert maps["cross-attention"].shape == (3, 4, 5, 6)
    figure = attention_figure(maps["cross-attention"], target, source)
    expected = reference_attentions(
        model,
        input_ids=word_tokenizer(TEXT, return_tensors="pt")["input_ids"],
        decoder_input_ids=torch.tensor([[1, *word_tokenizer("a big dog ran")["input_ids"]]]),
    )
    assert_figure_holds(figure, expected["cross_attentions"])

    # No target: the decoder reads what greedy decoding generates.
    maps, _, target = text_attention_maps(model, word_tokenizer, TEXT, max_new_tokens=4)
    generated = model.generate(
        word_tokenizer(TEXT, return_tensors="pt")["input_ids"], max_new_tokens=4, num_beams=1
    )
    assert len(target) == generated.shape[1] == maps["decoder self-attention"].shape[-1]
    assert maps["cross-attention"].shape[-2:] == (generated.shape[1], 6)

    paths = plot_attention(tmp_path, model=model, tokenizer=word_tokenizer, text=TEXT)
    assert [path.name for path in paths] == [
        "attention_encoder_self_attention.png",
        "attention_decoder_self_attention.png",
        "attention_cross_attention.png",
    ]
    for path in paths:
        assert_png(path)


def test_precomputed_maps_and_label_limits(tmp_path):
    weights = torch.softmax(torch.randn(1, 2, 45, 45), dim=-1)
    figure = attention_figure(weights, [f"t{i}" for i in range(45)], [f"t{i}" for i in range(45)])
    assert_figure_holds(figure, weights)
    assert not any(t.get_text().startswith("t") for t in figure.axes[0].get_yticklabels())
    paths = plot_attention(tmp_path, {"self-attention": weights}, prefix="mine")
    assert paths == [tmp_path / "mine_self_attention.png"]
    assert_png(paths[0])
    with pytest.raises(ValueError, match="expected weights"):
        attention_figure(weights[0])
    with pytest.raises(ValueError, match="3 query tokens for 45 query positions"):
        attention_figure(weights, ["a", "b", "c"])
    with pytest.raises(ValueError, match="either `attentions` or `model`"):
        plot_attention(tmp_path)


# --------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------


def _panel(figure, title: str):
    (ax,) = [ax for ax in figure.axes if ax.get_title() == title]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_training_curves_of_a_real_trainer_run(tmp_path):
    from datasets import Dataset

    ids = torch.randint(0, 101, (8, 8)).tolist()
    dataset = Dataset.from_dict({"input_ids": ids, "labels": ids})
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        max_steps=4,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=4,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    Trainer(model=model, args=arguments, train_dataset=dataset, eval_dataset=dataset).train()
    assert not (tmp_path / "trainer_state.json").exists()
    state_path = find_trainer_state(tmp_path)
    assert state_path == tmp_path / "checkpoint-4" / "trainer_state.json"
    history = json.loads(state_path.read_text())["log_history"]

    figure = training_curves_figure(history)
    loss = _panel(figure, "loss")
    assert loss["train loss"][0] == [1, 2, 3, 4]
    assert loss["train loss"][1] == [e["loss"] for e in history if "loss" in e]
    assert loss["eval_loss"] == ([2, 4], [e["eval_loss"] for e in history if "eval_loss" in e])
    assert _panel(figure, "learning rate")["learning rate"][0] == [1, 2, 3, 4]
    titles = {ax.get_title() for ax in figure.axes if ax.get_visible()}
    assert titles == {"loss", "learning rate"}  # no eval_runtime or throughput panels

    path = plot_training_curves(tmp_path)
    assert path == tmp_path / "plots" / "training_curves.png"
    assert_png(path)


def _state(steps: int) -> dict:
    history = [
        {"loss": 5.0 - s / 10, "learning_rate": 1e-3, "epoch": s / 10, "step": s}
        for s in range(1, steps + 1)
    ]
    history += [
        {
            "eval_loss": 4.0 - s / 10,
            "eval_bleu": 10.0 + s,
            "eval_runtime": 0.5,
            "eval_samples_per_second": 90.0,
            "step": s,
        }
        for s in range(5, steps + 1, 5)
    ]
    history.append({"train_runtime": 3.0, "train_loss": 4.5, "total_flos": 1.0, "step": steps})
    return {"global_step": steps, "log_history": history}


def test_training_curves_from_the_latest_checkpoint(tmp_path):
    for steps in (9, 10):  # numeric order: checkpoint-10 is later than checkpoint-9
        (tmp_path / f"checkpoint-{steps}").mkdir()
        (tmp_path / f"checkpoint-{steps}" / "trainer_state.json").write_text(
            json.dumps(_state(steps))
        )
    assert find_trainer_state(tmp_path) == tmp_path / "checkpoint-10" / "trainer_state.json"
    figure = training_curves_figure(_state(10)["log_history"])
    assert _panel(figure, "eval_bleu") == {"eval_bleu": ([5, 10], [15.0, 20.0])}
    assert _panel(figure, "loss")["eval_loss"] == ([5, 10], [3.5, 3.0])
    assert len(_panel(figure, "loss")["train loss"][0]) == 10
    assert_png(plot_training_curves(tmp_path, tmp_path / "out"))


def test_missing_trainer_state(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        plot_training_curves(tmp_path)
    assert write_run_plots(tmp_path) == []
    assert "training curves skipped: no trainer_state.json in" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no logged loss or metric"):
        training_curves_figure([{"train_runtime": 1.0, "train_loss": 2.0, "step": 3}])


# --------------------------------------------------------------------------------------------------
# The examples' ending
# --------------------------------------------------------------------------------------------------


def test_write_run_plots(tmp_path, word_tokenizer, capsys):
    (tmp_path / "trainer_state.json").write_text(json.dumps(_state(10)))
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    paths = write_run_plots(tmp_path, model, word_tokenizer, text=TEXT)
    plots = tmp_path / "plots"
    assert paths == [plots / "training_curves.png", plots / "attention_self_attention_causal.png"]
    for path in paths:
        assert_png(path)
    assert f"plots written to {plots}" in capsys.readouterr().out
