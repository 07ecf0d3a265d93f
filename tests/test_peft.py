"""LoRA through `peft` on the three families: the adapters land on the named projections (the
Transformer's cross-attention included), start as the identity, train alone, and save and reload as
a small adapter folder."""

import peft
import pytest
import torch
from conftest import tiny_bert_config, tiny_gpt_config, tiny_transformer_config

from hf_scratch import (
    ScratchBertForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchTransformerForConditionalGeneration,
)

# peft itself still calls the old name of activation checkpointing.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")

# The projections every family has: self-attention's stacked [W_Q; W_K; W_V], cross-attention's
# W_Q and [W_K; W_V], the attention output W^O, and the feed-forward W_1, W_2 (README, "LoRA").
TARGET_MODULES = ["qkv_proj", "q_proj", "kv_proj", "out_proj", "fc1", "fc2"]


def _gpt():
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    input_ids = torch.randint(3, 101, (2, 12))
    return model, {"input_ids": input_ids, "labels": input_ids}, "CAUSAL_LM", None


def _bert():
    model = ScratchBertForSequenceClassification(tiny_bert_config(num_labels=3))
    batch = {"input_ids": torch.randint(5, 99, (2, 12)), "labels": torch.tensor([0, 2])}
    return model, batch, "SEQ_CLS", ["classifier"]


def _transformer():
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config())
    batch = {"input_ids": torch.randint(3, 61, (2, 10)), "labels": torch.randint(3, 61, (2, 7))}
    return model, batch, "SEQ_2_SEQ_LM", None


FAMILIES = {"gpt": _gpt, "bert": _bert, "transformer": _transformer}


def _lora(model, task_type, modules_to_save):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=TARGET_MODULES,
        modules_to_save=modules_to_save,
        task_type=task_type,
    )
    return peft.get_peft_model(model, config)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_only_the_adapters_and_reloads(family, tmp_path):
    base, batch, task_type, modules_to_save = FAMILIES[family]()
    base.eval()
    with torch.no_grad():
        base_logits = base(**batch).logits
    base_state = {name: tensor.clone() for name, tensor in base.state_dict().items()}

    model = _lora(base, task_type, modules_to_save)
    adapted = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    for suffix in ["self_attn.qkv_proj", "self_attn.out_proj", "feed_forward.fc1"]:
        assert any(name.endswith(suffix) for name in adapted), suffix
    if family == "transformer":
        assert any(name.endswith("cross_attn.q_proj") for name in adapted)
        assert any(name.endswith("cross_attn.kv_proj") for name in adapted)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "modules_to_save" in name for name in trainable)
    with torch.no_grad():  # B starts at zero: the adapted model is the base model
        torch.testing.assert_close(model(**batch).logits, base_logits)

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    for name, tensor in model.get_base_model().state_dict().items():
        original = name.replace(".base_layer", "")
        if "lora_" not in name and "modules_to_save" not in name and original in base_state:
            assert torch.equal(tensor, base_state[original]), f"{name} changed"
    with torch.no_grad():
        trained_logits = model(**batch).logits
    assert not torch.allclose(trained_logits, base_logits)

    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    fresh, *_ = FAMILIES[family]()
    fresh.load_state_dict(base_state)
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained_logits)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**batch).logits, trained_logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["gpt", "transformer"])
def test_adapted_model_generates_with_the_cache(family):
    base, batch, task_type, _ = FAMILIES[family]()
    model = _lora(base, task_type, None).eval()
    with torch.no_grad():  # non-zero adapters, so that a bypassed LoRA would show
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(input_ids=batch["input_ids"], **settings)
    uncached = model.generate(input_ids=batch["input_ids"], use_cache=False, **settings)
    assert torch.equal(cached, uncached)
    merged = model.merge_and_unload()
    assert torch.equal(merged.generate(input_ids=batch["input_ids"], **settings), cached)
