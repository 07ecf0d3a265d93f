"""The models under the compiler: forward and training steps trace into one graph (no check that
reads tensor values runs under `torch.compile`, while eager calls keep their clear errors), the
Trainer's `--torch_compile` trains as eager, and `torch.export` gives eager's outputs.
(`backend="eager"` / `"aot_eager"` check the tracing, which is where graph breaks come from,
without generating kernels.)"""

import pytest
import torch
from conftest import plain_sgd_arguments, tiny_bert_config, tiny_gpt_config, tiny_transformer_config

from hf_scratch import (
    ScratchBertForMaskedLM,
    ScratchBertForPreTraining,
    ScratchBertForQuestionAnswering,
    ScratchBertModel,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
)

CASES = {
    "gpt": (ScratchGPTLMHeadModel, tiny_gpt_config, {"input_ids": (1, 101, (2, 9))}),
    "bert": (ScratchBertForMaskedLM, tiny_bert_config, {"input_ids": (5, 99, (2, 9))}),
    "transformer": (
        ScratchTransformerForConditionalGeneration,
        tiny_transformer_config,
        {"input_ids": (3, 61, (2, 7)), "decoder_input_ids": (3, 61, (2, 5))},
    ),
}


def _inputs(family: str) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        name: torch.randint(low, high, shape, generator=generator)
        for name, (low, high, shape) in CASES[family][2].items()
    }


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("family", list(CASES))
def test_inference_forward_compiles_to_one_graph_with_eagers_outputs(family, padded):
    torch._dynamo.reset()
    model_class, make_config, _ = CASES[family]
    model = model_class(make_config()).eval()
    inputs = _inputs(family)
    mask = torch.ones_like(inputs["input_ids"])
    if padded:
        mask[1, -3:] = 0
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(**inputs, attention_mask=mask).logits
        logits = compiled(**inputs, attention_mask=mask).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_eager_calls_still_check_ids():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    with pytest.raises(ValueError, match=r"input_ids contains 101, outside the valid range"):
        model(torch.tensor([[1, 2, 101]]))


@pytest.mark.parametrize("family", list(CASES))
def test_a_training_step_compiles_to_one_graph_with_eagers_loss_and_gradients(family):
    """Forward with labels and backward, traced whole (`aot_eager`: the autograd graph too). The
    loss then takes the plain cross-entropy formula, whose row count is not data."""
    torch._dynamo.reset()
    model_class, make_config, _ = CASES[family]
    overrides = {"sparse_prediction": True} if family == "bert" else {}
    model = model_class(make_config(**overrides)).train()
    inputs = _inputs(family)
    labels = inputs.get("decoder_input_ids", inputs["input_ids"]).clone()
    labels[:, ::2] = -100  # some positions unlabelled, as padding or MLM leave them

    def step(forward) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = forward(**inputs, labels=labels).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    expected_loss, expected = step(model)
    loss, gradients = step(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    for name, gradient in expected.items():
        torch.testing.assert_close(gradients[name], gradient, rtol=1e-5, atol=1e-6, msg=name)


def test_trainer_torch_compile_trains_as_eager(tmp_path):
    """`--torch_compile` (here with the `aot_eager` backend, no kernel generation): the same
    per-step losses and final weights as the uncompiled Trainer."""
    from transformers import Trainer

    generator = torch.Generator().manual_seed(0)
    rows = [torch.randint(1, 101, (12,), generator=generator) for _ in range(8)]
    dataset = [{"input_ids": row, "labels": row} for row in rows]
    initial = ScratchGPTLMHeadModel(tiny_gpt_config()).state_dict()
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        model = ScratchGPTLMHeadModel(tiny_gpt_config())
        model.load_state_dict(initial)
        settings = {"torch_compile": True, "torch_compile_backend": "aot_eager"} if compiled else {}
        arguments = plain_sgd_arguments(
            tmp_path / str(compiled), 4, 1, max_steps=3, logging_steps=1, **settings
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=dataset)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        runs[compiled] = losses, model.state_dict()
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    for name, value in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(runs[True][1]["lm_head.weight"], initial["lm_head.weight"])


@pytest.mark.parametrize(
    "model_class",
    [
        ScratchGPTModel,
        ScratchGPTLMHeadModel,
        ScratchGPTForSequenceClassification,
        ScratchBertModel,
        ScratchBertForPreTraining,
        ScratchBertForQuestionAnswering,
        ScratchTransformerModel,
        ScratchTransformerForConditionalGeneration,
    ],
)
def test_torch_export_gives_eagers_outputs(model_class):
    """`torch.export.export` of base models and heads. Outputs that carry a KV cache need the cache
    registered with torch's pytree, as for transformers' own models
    (`register_dynamic_cache_export_support`); the Transformer's `EncoderDecoderCache` has no such
    helper, so it is exported with `use_cache=False`, as Marian would be."""
    from transformers.integrations.executorch import register_dynamic_cache_export_support

    register_dynamic_cache_export_support()
    family = {"GPT": "gpt", "Bert": "bert", "Transformer": "transformer"}[
        next(name for name in ("GPT", "Bert", "Transformer") if name in model_class.__name__)
    ]
    model = model_class(CASES[family][1]()).eval()
    inputs = _inputs(family)
    if family == "transformer":
        inputs["use_cache"] = False
    exported = torch.export.export(model, (), kwargs=inputs)
    with torch.no_grad():
        expected = model(**inputs)
    output = exported.module()(**inputs)
    assert type(output) is type(expected)
    for name, value in expected.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(output[name], value, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_onnx_export_runs_in_onnx_runtime_with_eagers_outputs(family, tmp_path):
    """`torch.onnx.export(..., dynamo=True)` with a dynamic batch and sequence length: ONNX Runtime
    gives eager's logits on a batch of another shape, padded."""
    import numpy as np
    import onnxruntime
    from torch.export import Dim

    model_class, make_config, _ = CASES[family]
    model = model_class(make_config(use_cache=False)).eval()
    inputs = _inputs(family)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    batch, sequence = Dim("batch"), Dim("sequence", max=40)
    path = tmp_path / f"{family}.onnx"
    torch.onnx.export(
        model,
        (),
        str(path),
        kwargs=inputs,
        dynamo=True,
        dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs},
    )
    session = onnxruntime.InferenceSession(str(path))
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 99, (3, 13), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -5:] = 0
    feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    (logits,) = session.run(None, feed)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)


def _compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _generate_without_output(model, capfd, **kwargs) -> torch.Tensor:
    """`model.generate(**kwargs)`, checking that it printed nothing and warned of nothing a user
    would see."""
    import warnings

    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generated = model.generate(**kwargs)
    printed = capfd.readouterr()
    assert printed.out == printed.err == "", printed
    # DeprecationWarnings are hidden outside __main__, as Python shows them: torch's first compile
    # in a process raises some of its own.
    shown = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert shown == []
    return generated


@pytest.mark.parametrize("family", ["gpt", "transformer"])
def test_static_cache_generate_compiles_the_decoding_step_on_cpu_and_reuses_it(family, capfd):
    """`generate(cache_implementation="static")` on CPU compiles the decoding step (transformers
    compiles it on accelerators only), decodes the dynamic cache's tokens, prints nothing, and
    reuses the compiled step: again for a shorter call, and after one more compile (sizes made
    dynamic) for other batch sizes."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model_class, make_config, _ = CASES[family]
    model = model_class(make_config()).eval()
    generator = torch.Generator().manual_seed(0)

    def check(batch_size: int, new_tokens: int) -> None:
        input_ids = torch.randint(3, 61, (batch_size, 7), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, :2] = 0  # left padding for GPT, a short source for the Transformer
        if family == "transformer":
            attention_mask = attention_mask.flip(-1)
        settings = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        dynamic = model.generate(**settings)
        static = _generate_without_output(model, capfd, **settings, cache_implementation="static")
        assert torch.equal(static, dynamic)

    check(batch_size=2, new_tokens=8)
    assert _compiled_graphs() == 1  # the decoding step (the prefill runs eagerly)
    check(batch_size=2, new_tokens=5)
    assert _compiled_graphs() == 1
    check(batch_size=3, new_tokens=8)
    check(batch_size=4, new_tokens=8)
    assert _compiled_graphs() == 2  # one recompile, for a dynamic batch size


def test_a_step_compiled_with_dynamic_sizes_takes_the_4d_mask_of_a_static_cache():
    """A decoding step whose cache length the compiler has made symbolic (as torch does once it
    has seen a second length) reads the 4-D mask of fixed size that transformers builds for a
    static cache, and gives eager's logits."""
    from transformers import StaticCache

    torch._dynamo.reset()
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    prompt = torch.randint(1, 101, (2, 5))
    logits = {}
    for name, step in (("eager", model), ("compiled", torch.compile(model, fullgraph=True))):
        cache = StaticCache(config=model.config, max_cache_len=9)
        with torch.no_grad():
            model(prompt, cache=cache)  # the prefill, eagerly
            for layer in cache.layers:
                torch._dynamo.maybe_mark_dynamic(layer.keys, 2)
                torch._dynamo.maybe_mark_dynamic(layer.values, 2)
            mask = (torch.arange(9) <= 5)[None, None, None, :].expand(2, 1, 1, 9)  # (B, 1, T, S)
            position_ids = torch.full((2, 1), 5)
            token = prompt[:, -1:]
            logits[name] = step(token, attention_mask=mask, position_ids=position_ids, cache=cache)
    torch.testing.assert_close(logits["compiled"].logits, logits["eager"].logits)
