"""Model folders load completely or not at all: a damaged, mismatched or incomplete checkpoint is
refused with an error naming the file and the tensors, never loaded with silently initialised
weights; pickle weights need the user's explicit opt-in (`pretrained.ScratchPreTrainedModel`)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_bert_config, tiny_gpt_config
from safetensors.torch import load_file, save_file

from hf_scratch import (
    ScratchBertForPreTraining,
    ScratchBertForSequenceClassification,
    ScratchBertModel,
    ScratchGPTLMHeadModel,
)
from hf_scratch.pretrained import CheckpointError


@pytest.fixture
def gpt_folder(tmp_path) -> Path:
    folder = tmp_path / "gpt"
    ScratchGPTLMHeadModel(tiny_gpt_config()).save_pretrained(folder)
    return folder


def _error_naming(folder: Path, file_name: str, load) -> str:
    """Runs `load`, which must raise; returns its message, which must name the file."""
    with pytest.raises(Exception) as raised:
        load()
    message = str(raised.value)
    assert str(folder / file_name) in message, message
    return message


def test_an_intact_folder_loads_with_its_weights(gpt_folder):
    model = ScratchGPTLMHeadModel.from_pretrained(gpt_folder)
    saved = load_file(gpt_folder / "model.safetensors")
    for name, value in saved.items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_truncated_weights_file_is_refused_naming_it(gpt_folder):
    weights = gpt_folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _error_naming(
        gpt_folder, "model.safetensors", lambda: ScratchGPTLMHeadModel.from_pretrained(gpt_folder)
    )


@pytest.mark.parametrize("damage", ["garbled bytes", "inconsistent offsets"])
def test_a_weights_file_with_a_tampered_header_is_refused_naming_it(gpt_folder, damage):
    """Only the header can be checked: safetensors keeps no checksum of the tensors' bytes, so a
    changed value inside a tensor loads (and is not tested here)."""
    weights = gpt_folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    header_length = int.from_bytes(data[:8], "little")
    if damage == "garbled bytes":
        middle = 8 + header_length // 2
        for index in range(middle, middle + 4):
            data[index] ^= 0xFF
    else:  # valid JSON, but the first tensor claims 4 bytes more than it has
        header = json.loads(data[8 : 8 + header_length])
        name = next(key for key in header if key != "__metadata__")
        header[name]["data_offsets"][1] += 4
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        data = bytearray(len(text).to_bytes(8, "little") + text + data[8 + header_length :])
    weights.write_bytes(bytes(data))
    _error_naming(
        gpt_folder, "model.safetensors", lambda: ScratchGPTLMHeadModel.from_pretrained(gpt_folder)
    )


def test_a_folder_of_another_model_type_is_refused_naming_both_types(tmp_path):
    folder = tmp_path / "bert"
    ScratchBertForPreTraining(tiny_bert_config()).save_pretrained(folder)
    with pytest.raises(ValueError) as raised:
        ScratchGPTLMHeadModel.from_pretrained(folder)
    message = str(raised.value)
    assert "hf_scratch_bert" in message and "hf_scratch_gpt" in message, message


def test_a_weights_file_missing_a_tensor_is_refused_naming_it(gpt_folder):
    weights = gpt_folder / "model.safetensors"
    tensors = load_file(weights)
    removed = "transformer.layers.1.feed_forward.fc2.weight"
    del tensors[removed]
    save_file(tensors, weights, metadata={"format": "pt"})
    message = _error_naming(
        gpt_folder, "model.safetensors", lambda: ScratchGPTLMHeadModel.from_pretrained(gpt_folder)
    )
    assert removed in message, message


def test_pickle_weights_load_only_when_the_user_opts_in(tmp_path):
    folder = tmp_path / "pickled"
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    message = _error_naming(
        folder, "pytorch_model.bin", lambda: ScratchGPTLMHeadModel.from_pretrained(folder)
    )
    assert "use_safetensors=False" in message, message
    loaded = ScratchGPTLMHeadModel.from_pretrained(folder, use_safetensors=False)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_tensor_of_the_wrong_shape_is_refused_naming_it_and_both_shapes(gpt_folder):
    weights = gpt_folder / "model.safetensors"
    tensors = load_file(weights)
    name = "transformer.positions_embed.weight"
    tensors[name] = tensors[name][:10].clone()
    save_file(tensors, weights, metadata={"format": "pt"})
    message = _error_naming(
        gpt_folder, "model.safetensors", lambda: ScratchGPTLMHeadModel.from_pretrained(gpt_folder)
    )
    assert name in message and "(10, 32)" in message and "(48, 32)" in message, message


def test_strict_false_accepts_missing_tensors_and_initialises_them(gpt_folder):
    weights = gpt_folder / "model.safetensors"
    tensors = load_file(weights)
    del tensors["transformer.layers.1.feed_forward.fc2.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    model, info = ScratchGPTLMHeadModel.from_pretrained(
        gpt_folder, strict=False, output_loading_info=True
    )
    assert info["missing_keys"] == {"transformer.layers.1.feed_forward.fc2.weight"}
    assert torch.isfinite(model.transformer.layers[1].feed_forward.fc2.weight).all()


def test_a_new_head_on_a_pretrained_encoder_is_initialised_as_in_transformers(tmp_path):
    """Fine-tuning starts from a checkpoint of another class: the heads that class did not have are
    new (and reported), but the encoder itself must be complete."""
    folder = tmp_path / "pretrained"
    pretrained = ScratchBertForPreTraining(tiny_bert_config())
    pretrained.save_pretrained(folder)
    classifier = ScratchBertForSequenceClassification.from_pretrained(folder, num_labels=3)
    for name, value in pretrained.bert.state_dict().items():
        assert torch.equal(classifier.bert.state_dict()[name], value), name
    assert ScratchBertModel.from_pretrained(folder).pooler.weight.shape == (32, 32)

    tensors = load_file(folder / "model.safetensors")
    del tensors["bert.layers.0.self_attn.qkv_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"bert\.layers\.0\.self_attn\.qkv_proj"):
        ScratchBertForSequenceClassification.from_pretrained(folder, num_labels=3)
