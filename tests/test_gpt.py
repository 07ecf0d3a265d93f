"""GPT: parity with transformers' OpenAI GPT and GPT-2 through the converters, generation,
fine-tuning heads, the Hugging Face contract, and bad input."""

import subprocess

import pytest
import torch
from conftest import (
    DECODING_MODE_NAMES,
    DECODING_MODES,
    EVERY_GENERATE_OUTPUT,
    assert_same_structure,
    assert_static_cache_generates_the_dynamic_caches_tokens,
    tiny_gpt_config,
)
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2DoubleHeadsModel,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
    OpenAIGPTConfig,
    OpenAIGPTDoubleHeadsModel,
    OpenAIGPTForSequenceClassification,
    OpenAIGPTLMHeadModel,
    OpenAIGPTModel,
)

from hf_scratch import (
    GPTTaskInputs,
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
)
from hf_scratch.convert import from_reference, rename_state_dict, to_reference

SIZES = dict(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=4)


def openai_config(**overrides):
    return OpenAIGPTConfig(**{**SIZES, **overrides})


def gpt2_config(**overrides):
    values = {**SIZES, "bos_token_id": 0, "eos_token_id": 0, **overrides}
    return GPT2Config(**values)


def _reference(model_class, config, implementation=None):
    kwargs = {"attn_implementation": implementation} if implementation else {}
    torch.manual_seed(0)
    model = model_class._from_config(config, **kwargs).eval()
    with torch.no_grad():  # non-trivial LayerNorms, so that a swapped norm cannot pass
        for name, parameter in model.named_parameters():
            if "ln" in name:
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return model


def _ours_from(reference, implementation="sdpa"):
    model = from_reference(reference)
    model.config._attn_implementation = implementation
    return model


def _padded_batch():
    torch.manual_seed(1)
    input_ids = torch.randint(1, SIZES["vocab_size"], (3, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # right padding
    attention_mask[2, 5:] = 0
    return input_ids, attention_mask


# --------------------------------------------------------------------------------------------------
# Logits parity
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_lm_logits_match_openai_gpt(implementation):
    reference = _reference(OpenAIGPTLMHeadModel, openai_config())
    ours = _ours_from(reference, implementation)
    input_ids, attention_mask = _padded_batch()
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask).logits
        logits = ours(input_ids, attention_mask=attention_mask).logits
    real = attention_mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_lm_logits_and_loss_match_gpt2(implementation):
    reference = _reference(GPT2LMHeadModel, gpt2_config(), "sdpa")
    ours = _ours_from(reference, implementation)
    input_ids, attention_mask = _padded_batch()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask, labels=labels)
        output = ours(input_ids, attention_mask=attention_mask, labels=labels)
    real = attention_mask.bool()
    torch.testing.assert_close(output.logits[real], expected.logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_base_models_match_and_token_types_are_embedded_like_openai():
    for reference_class, config in [(OpenAIGPTModel, openai_config()), (GPT2Model, gpt2_config())]:
        reference = _reference(reference_class, config)
        ours = _ours_from(reference)
        assert isinstance(ours, ScratchGPTModel)
        input_ids, _ = _padded_batch()
        token_type_ids = torch.randint(0, 3, input_ids.shape)
        with torch.no_grad():
            expected = reference(
                input_ids, token_type_ids=token_type_ids, output_hidden_states=True
            )
            output = ours(input_ids, token_type_ids=token_type_ids, output_hidden_states=True)
        torch.testing.assert_close(
            output.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-5
        )
        assert len(output.hidden_states) == len(expected.hidden_states) == 3
        for ours_state, expected_state in zip(
            output.hidden_states, expected.hidden_states, strict=True
        ):
            torch.testing.assert_close(ours_state, expected_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("reference_class", "make_config"),
    [(OpenAIGPTDoubleHeadsModel, openai_config), (GPT2DoubleHeadsModel, gpt2_config)],
)
def test_multiple_choice_matches_double_heads(reference_class, make_config):
    reference = _reference(reference_class, make_config())
    ours = _ours_from(reference)
    assert isinstance(ours, ScratchGPTForMultipleChoice)
    torch.manual_seed(2)
    input_ids = torch.randint(1, SIZES["vocab_size"], (2, 3, 10))
    mc_token_ids = torch.tensor([[9, 7, 8], [5, 9, 9]])
    mc_labels = torch.tensor([1, 2])
    with torch.no_grad():
        expected = reference(
            input_ids, mc_token_ids=mc_token_ids, labels=input_ids, mc_labels=mc_labels
        )
        output = ours(input_ids, mc_token_ids=mc_token_ids, labels=mc_labels)
    torch.testing.assert_close(output.logits, expected.mc_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.lm_logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.classification_loss, expected.mc_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.lm_loss, expected.loss, atol=1e-5, rtol=1e-5)
    # L3 = L2 + lambda * L1: the reference returns the two parts without combining them.
    torch.testing.assert_close(output.loss, expected.mc_loss + 0.5 * expected.loss)


@pytest.mark.parametrize(
    ("reference_class", "make_config"),
    [
        (OpenAIGPTForSequenceClassification, openai_config),
        (GPT2ForSequenceClassification, gpt2_config),
    ],
)
def test_sequence_classification_matches_reference(reference_class, make_config):
    reference = _reference(reference_class, make_config(num_labels=3, pad_token_id=0))
    ours = _ours_from(reference)
    assert isinstance(ours, ScratchGPTForSequenceClassification)
    input_ids, attention_mask = _padded_batch()
    input_ids = input_ids.masked_fill(
        attention_mask == 0, 0
    )  # the reference finds the end by pad id
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask, labels=labels)
        output = ours(input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(output.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.classification_loss, expected.loss, atol=1e-5, rtol=1e-5)
    assert output.lm_loss is not None
    torch.testing.assert_close(output.loss, output.classification_loss + 0.5 * output.lm_loss)


def test_conversion_round_trips_exactly():
    for reference in (
        _reference(OpenAIGPTDoubleHeadsModel, openai_config()),
        _reference(GPT2LMHeadModel, gpt2_config()),
    ):
        back = to_reference(from_reference(reference))
        assert type(back) is type(reference)
        expected = reference.state_dict()
        for name, tensor in back.state_dict().items():
            assert torch.equal(tensor, expected[name]), name


def test_conversion_reports_unplaced_and_missing_tensors():
    reference = _reference(GPT2LMHeadModel, gpt2_config())
    state_dict = reference.state_dict()
    state_dict["transformer.h.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn\.extra\.weight"):
        from hf_scratch.convert.rules import GPT2_RULES

        rename_state_dict(state_dict, GPT2_RULES)
    from hf_scratch.convert.families import load_strict

    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    partial = {k: v for k, v in model.state_dict().items() if "layers.1." not in k}
    with pytest.raises(ValueError, match=r"missing \[.*layers\.1\.feed_forward\.fc1\.bias"):
        load_strict(model, partial)


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def _prompts():
    torch.manual_seed(3)
    input_ids = torch.randint(1, SIZES["vocab_size"], (2, 6))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :2] = 0  # left padding, as for batched generation
    return input_ids, attention_mask


@pytest.mark.parametrize("layout", ["gpt2", "openai"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_matches_reference_token_for_token(layout, num_beams):
    if layout == "gpt2":
        reference = _reference(GPT2LMHeadModel, gpt2_config(), "sdpa")
    else:
        reference = _reference(OpenAIGPTLMHeadModel, openai_config(bos_token_id=0, eos_token_id=0))
    ours = _ours_from(reference)
    input_ids, attention_mask = _prompts()
    if layout == "openai":  # no position ids from the mask there: compare unpadded prompts
        attention_mask = torch.ones_like(input_ids)
    settings = dict(max_new_tokens=12, num_beams=num_beams, do_sample=False, pad_token_id=0)
    expected = reference.generate(input_ids, attention_mask=attention_mask, **settings)
    generated = ours.generate(input_ids, attention_mask=attention_mask, **settings)
    assert torch.equal(generated, expected)


def test_beam_search_outputs_are_gpt2s_in_shape_and_value():
    """Every field of a beam search's dictionary output (scores, logits, beam indices, attentions,
    hidden states, the cache) has GPT-2's shapes and values, same weights, left-padded prompts."""
    reference = _reference(GPT2LMHeadModel, gpt2_config(), "eager")
    ours = _ours_from(reference)
    input_ids, attention_mask = _prompts()
    settings = dict(
        attention_mask=attention_mask,
        num_beams=3,
        num_return_sequences=2,
        max_new_tokens=5,
        pad_token_id=0,
        **EVERY_GENERATE_OUTPUT,
    )
    expected = reference.generate(input_ids, **settings)
    output = ours.generate(input_ids, **settings)
    assert set(output.keys()) == set(expected.keys())
    # What a padded prompt position computes is meaningless (ours: a zero context where GPT-2
    # averages the masked keys), so those are zeroed in both; everything else must agree.
    padding = ~attention_mask.repeat_interleave(3, dim=0).bool()  # (B * beams, T)
    for outputs in (output, expected):
        for weights in outputs.attentions[0]:  # the prompt step: (B * beams, H, T, T)
            weights[padding[:, None, :, None].expand_as(weights)] = 0
        for states in outputs.hidden_states[0]:  # (B * beams, T, C)
            states[padding] = 0
        for layer in outputs.cache.layers:  # (B * beams, H, T + new, D)
            for tensor in (layer.keys, layer.values):
                prompt = tensor[:, :, : padding.shape[1]]
                prompt[padding[:, None].expand(-1, tensor.shape[1], -1)] = 0
    for name in expected.keys() - {"cache"}:
        assert_same_structure(output[name], expected[name], name)
    for index, (layer, reference_layer) in enumerate(
        zip(output.cache.layers, expected.cache.layers, strict=True)
    ):
        assert_same_structure(layer.keys, reference_layer.keys, f"cache[{index}].keys")
        assert_same_structure(layer.values, reference_layer.values, f"cache[{index}].values")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize(
    "settings",
    [
        dict(do_sample=False),
        dict(do_sample=False, num_beams=3, num_return_sequences=2),
        dict(do_sample=True, top_k=20, top_p=0.9),
    ],
    ids=["greedy", "beam", "sample"],
)
def test_cached_and_uncached_generation_are_identical(norm_first, settings):
    model = ScratchGPTLMHeadModel(tiny_gpt_config(norm_first=norm_first)).eval()
    input_ids, attention_mask = _prompts()
    outputs = []
    for use_cache in (True, False):
        torch.manual_seed(0)
        outputs.append(
            model.generate(
                input_ids,
                attention_mask=attention_mask,
                max_new_tokens=10,
                use_cache=use_cache,
                pad_token_id=0,
                **settings,
            )
        )
    assert torch.equal(outputs[0], outputs[1])


def test_left_padding_does_not_change_the_continuation():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    prompt = torch.randint(1, 101, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), prompt], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    alone = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    batched = model.generate(
        padded, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0
    )
    assert torch.equal(batched[:, 3:], alone)


def test_generation_past_the_position_table_is_a_clear_error():
    model = ScratchGPTLMHeadModel(tiny_gpt_config(max_position_embeddings=16)).eval()
    with pytest.raises(
        ValueError, match=r"position_ids contains 16, outside the valid range \[0, 16\)"
    ):
        model.generate(
            torch.randint(1, 101, (1, 10)), max_new_tokens=10, do_sample=False, pad_token_id=0
        )


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_bad_input_raises_value_errors_naming_value_and_limit():
    model = ScratchGPTLMHeadModel(tiny_gpt_config(max_position_embeddings=16)).eval()
    with pytest.raises(
        ValueError, match=r"input_ids contains 101, outside the valid range \[0, 101\)"
    ):
        model(torch.tensor([[1, 2, 101]]))
    with pytest.raises(
        ValueError, match=r"length 17 .* longer than max_position_embeddings \(16\)"
    ):
        model(torch.randint(0, 101, (1, 17)))
    with pytest.raises(
        ValueError, match=r"attention_mask has shape \(1, 4\), expected .* \(1, 5\)"
    ):
        model(torch.randint(0, 101, (1, 5)), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    with pytest.raises(
        ValueError, match=r"hidden_size \(30\) must be divisible by num_attention_heads \(4\)"
    ):
        tiny_gpt_config(hidden_size=30)


# --------------------------------------------------------------------------------------------------
# Hugging Face contract
# --------------------------------------------------------------------------------------------------


def test_save_and_reload_keeps_weights_and_tie(tmp_path):
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, ScratchGPTLMHeadModel)
    assert reloaded.lm_head.weight is reloaded.transformer.tokens_embed.weight
    input_ids = torch.randint(0, 101, (2, 7))
    torch.testing.assert_close(reloaded(input_ids).logits, model(input_ids).logits)
    assert (tmp_path / "model.safetensors").exists()


def test_resize_token_embeddings_keeps_the_rows_and_the_tie():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    before = model.transformer.tokens_embed.weight.detach().clone()  # (101, C)
    model.resize_token_embeddings(104)
    assert model.config.vocab_size == 104
    embedding = model.transformer.tokens_embed.weight
    torch.testing.assert_close(embedding[:101], before, rtol=0, atol=0)  # the old rows, unchanged
    assert model.lm_head.weight is embedding
    hidden = model.transformer(torch.tensor([[103, 1]])).last_hidden_state
    logits = model(torch.tensor([[103, 1]])).logits  # (1, 2, 104): h W_e^T with the new matrix
    torch.testing.assert_close(logits, hidden @ embedding.T)


@pytest.mark.parametrize("layout", ["gpt2", "openai"])
def test_attention_probabilities_and_hidden_states_match_the_reference(layout):
    """`output_attentions` / `output_hidden_states` against transformers' eager attention on the
    same weights, padded batch: every real query's probabilities, and every layer's states."""
    if layout == "gpt2":
        reference = _reference(GPT2LMHeadModel, gpt2_config(), "eager")
    else:
        reference = _reference(OpenAIGPTLMHeadModel, openai_config(), "eager")
    ours = _ours_from(reference, "sdpa")  # asking for the weights runs the eager formula
    input_ids, attention_mask = _padded_batch()
    settings = dict(
        attention_mask=attention_mask, output_attentions=True, output_hidden_states=True
    )
    with torch.no_grad():
        expected = reference(input_ids, **settings)
        output = ours(input_ids, **settings)
    real = attention_mask.bool()  # padded queries: transformers averages, ours gives zeros
    assert len(output.attentions) == len(expected.attentions) == SIZES["n_layer"]
    for theirs, mine in zip(expected.attentions, output.attentions, strict=True):
        torch.testing.assert_close(mine.transpose(1, 2)[real], theirs.transpose(1, 2)[real])
    assert len(output.hidden_states) == len(expected.hidden_states)
    for theirs, mine in zip(expected.hidden_states, output.hidden_states, strict=True):
        torch.testing.assert_close(mine[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    input_ids = torch.randint(0, 101, (2, 9))
    model(input_ids, labels=input_ids).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model.train()
    model(input_ids, labels=input_ids).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float16, 0.01), (torch.bfloat16, 0.05)], ids=["fp16", "bf16"]
)
def test_half_precision_is_close_to_float32(dtype, tolerance):
    """Logits and loss in half precision within `tolerance` of float32's (relative to the largest
    logit; bf16 keeps 8 bits of mantissa, fp16 11), padded batch."""
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    input_ids = torch.randint(1, 101, (2, 8))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :3] = 0
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, labels=input_ids)
        output = model.to(dtype)(input_ids, attention_mask=attention_mask, labels=input_ids)
    assert output.logits.dtype == dtype
    real = attention_mask.bool()
    scale = expected.logits[real].abs().max()
    error = (output.logits[real].float() - expected.logits[real]).abs().max()
    assert error <= tolerance * scale, (error, scale)
    torch.testing.assert_close(output.loss.float(), expected.loss, rtol=tolerance, atol=0)


def test_causal_outputs_do_not_depend_on_future_tokens():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    input_ids = torch.randint(0, 101, (1, 10))
    changed = input_ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 101
    torch.testing.assert_close(model(input_ids).logits[:, :6], model(changed).logits[:, :6])


def test_fine_tuning_loss_weight_zero_turns_the_lm_loss_off():
    model = ScratchGPTForSequenceClassification(tiny_gpt_config(lm_loss_weight=0.0, num_labels=2))
    output = model(torch.randint(0, 101, (2, 5)), labels=torch.tensor([0, 1]))
    assert output.lm_loss is None and output.lm_logits is None
    torch.testing.assert_close(output.loss, output.classification_loss)


def test_similarity_sums_both_orderings():
    model = ScratchGPTForSequenceClassification(tiny_gpt_config(num_labels=1)).eval()
    pair = torch.randint(1, 101, (2, 2, 6))
    features = model.transformer(pair.view(4, 6)).last_hidden_state[:, -1].view(2, 2, -1).sum(1)
    torch.testing.assert_close(model(pair).logits, model.score(features))
    swapped = pair.flip(1)
    torch.testing.assert_close(model(swapped).logits, model(pair).logits)  # order-free


def test_problem_types_of_the_classification_head():
    base = dict(lm_loss_weight=0.0)
    regression = ScratchGPTForSequenceClassification(tiny_gpt_config(num_labels=1, **base))
    output = regression(torch.randint(0, 101, (3, 5)), labels=torch.tensor([0.5, 1.0, -2.0]))
    torch.testing.assert_close(
        output.loss,
        torch.nn.functional.mse_loss(output.logits.squeeze(-1), torch.tensor([0.5, 1.0, -2.0])),
    )
    multi = ScratchGPTForSequenceClassification(tiny_gpt_config(num_labels=3, **base))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    output = multi(torch.randint(0, 101, (2, 5)), labels=labels)
    torch.testing.assert_close(
        output.loss, torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels)
    )


# --------------------------------------------------------------------------------------------------
# Task input transformations
# --------------------------------------------------------------------------------------------------


def test_task_inputs_wrap_texts_in_start_delimiter_and_extract(word_tokenizer):
    tokenizer = word_tokenizer.__class__(
        tokenizer_object=word_tokenizer.backend_tokenizer, pad_token="<pad>"
    )
    model = ScratchGPTForMultipleChoice(tiny_gpt_config(vocab_size=len(tokenizer)))
    inputs = GPTTaskInputs(tokenizer, model, max_length=7)
    assert (
        model.config.vocab_size == len(tokenizer) == model.transformer.tokens_embed.num_embeddings
    )
    assert model.lm_head.weight is model.transformer.tokens_embed.weight
    s, d, e = inputs.start_id, inputs.delimiter_id, inputs.extract_id
    cat, sat, dog, ran = tokenizer.convert_tokens_to_ids(["cat", "sat", "dog", "ran"])
    assert inputs.classification("cat sat") == [s, cat, sat, e]
    assert inputs.entailment("cat sat", "dog ran") == [s, cat, sat, d, dog, ran, e]
    assert inputs.similarity("cat", "dog") == [[s, cat, d, dog, e], [s, dog, d, cat, e]]
    assert inputs.multiple_choice("cat", ["sat", "ran"]) == [
        [s, cat, d, sat, e],
        [s, cat, d, ran, e],
    ]
    # max_length 7: the longest part is shortened, the special tokens stay
    assert inputs.entailment("cat sat on the mat", "dog ran") == [s, cat, sat, d, dog, ran, e]
    choices = torch.tensor([inputs.multiple_choice("cat", ["sat", "ran"])])
    assert model(choices).logits.shape == (1, 2)


# --------------------------------------------------------------------------------------------------
# The conversion command
# --------------------------------------------------------------------------------------------------


def test_convert_command_both_ways_with_tokenizer(tmp_path, word_tokenizer):
    reference = _reference(GPT2LMHeadModel, gpt2_config(vocab_size=len(word_tokenizer)))
    reference.save_pretrained(tmp_path / "hf")
    word_tokenizer.save_pretrained(tmp_path / "hf")
    result = subprocess.run(
        ["hf-scratch-convert", str(tmp_path / "hf"), str(tmp_path / "ours")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote ScratchGPTLMHeadModel" in result.stdout
    assert (tmp_path / "ours" / "tokenizer.json").exists()
    assert (tmp_path / "ours" / "modeling_gpt.py").exists()
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours", trust_remote_code=True).eval()
    assert ours.config.norm_first
    input_ids = torch.randint(0, len(word_tokenizer), (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            ours(input_ids).logits, reference(input_ids).logits, atol=1e-5, rtol=1e-5
        )

    from hf_scratch.convert import main

    assert main(["--to-hf", str(tmp_path / "ours"), str(tmp_path / "back")]) == 0
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids).logits, reference(input_ids).logits)
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 1  # a clear error, exit 1


def test_bf16_autocast_training_step_is_finite():
    model = ScratchGPTLMHeadModel(tiny_gpt_config())
    input_ids = torch.randint(1, 101, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(input_ids, labels=input_ids)
    assert output.logits.dtype == torch.bfloat16
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Static cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True], ids=["gpt1", "gpt2"])
@pytest.mark.parametrize("settings", DECODING_MODES, ids=DECODING_MODE_NAMES)
def test_static_cache_generates_the_dynamic_caches_tokens(norm_first, settings):
    """`generate(cache_implementation="static")`: fixed-size key/value buffers, with the 4-D masks
    transformers builds for them, give the tokens of the dynamic cache (left-padded prompts). The
    steps run eagerly here; test_compile.py checks the compiled ones."""
    model = ScratchGPTLMHeadModel(tiny_gpt_config(norm_first=norm_first)).eval()
    input_ids, attention_mask = _prompts()
    assert_static_cache_generates_the_dynamic_caches_tokens(
        model, input_ids, attention_mask=attention_mask, pad_token_id=0, **settings
    )


def test_a_static_cache_passed_in_continues_as_the_full_forward():
    from transformers import StaticCache

    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    input_ids, attention_mask = _prompts()
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask).logits
        cache = StaticCache(config=model.config, max_cache_len=16)
        first = model(input_ids[:, :4], attention_mask=attention_mask[:, :4], cache=cache)
        rest = model(input_ids[:, 4:], attention_mask=attention_mask, cache=cache)
    logits = torch.cat([first.logits, rest.logits], dim=1)
    real = attention_mask.bool()
    torch.testing.assert_close(logits[real], full[real], rtol=1e-5, atol=1e-5)
    assert int(cache.get_seq_length()) == 6
