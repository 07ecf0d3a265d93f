"""The Transformer: parity with torch.nn.Transformer and with transformers' Marian through the
converters, generation with the encoder-decoder cache, training, the Hugging Face contract, bad
input."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    DECODING_MODE_NAMES,
    DECODING_MODES,
    EVERY_GENERATE_OUTPUT,
    assert_accumulation_matches_one_large_batch,
    assert_same_structure,
    assert_static_cache_generates_the_dynamic_caches_tokens,
    copy_attention_into_torch,
    run_without_hf_scratch,
)
from conftest import tiny_transformer_config as tiny_config
from transformers import AutoModelForSeq2SeqLM, MarianConfig, MarianModel, MarianMTModel
from transformers.cache_utils import EncoderDecoderCache

from hf_scratch import (
    ScratchTransformerConfig,
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
)
from hf_scratch.convert import convert_folder, from_reference, main, to_reference

VOCAB = tiny_config().vocab_size


def _spread_weights(model: torch.nn.Module) -> None:
    """Weights large enough that greedy and beam search produce varied tokens (a freshly initialised
    model repeats one token, which any bug would reproduce too), and non-trivial LayerNorms."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "embed_positions" in name:  # Marian's sinusoid table is a frozen parameter
                continue
            if "norm" in name:
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
            else:
                parameter.normal_(0.0, 0.3)


def random_model(**overrides) -> ScratchTransformerForConditionalGeneration:
    model = ScratchTransformerForConditionalGeneration(tiny_config(**overrides)).eval()
    _spread_weights(model)
    return model


def source_batch(batch_size: int = 3, length: int = 9, vocab: int = VOCAB):
    """Source ids without special tokens and a right-padded attention mask."""
    input_ids = torch.randint(3, vocab, (batch_size, length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length - 3 :] = 0
    attention_mask[-1, 4:] = 0
    return input_ids, attention_mask


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), r"hidden_size \(30\) .* divisible .* \(4\)"),
        (dict(hidden_size=9, num_attention_heads=3), "even hidden_size, got 9"),
        (dict(sinusoid_layout="stacked"), "sinusoid_layout must be one of"),
        (dict(label_smoothing=1.0), r"label_smoothing must lie in \[0, 1\), got 1.0"),
        (dict(decoder_vocab_size=70), "vocab_size is 61 and decoder_vocab_size 70"),
        (dict(decoder_layers=0), "decoder_layers must be positive, got 0"),
    ],
)
def test_inconsistent_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_defaults_are_the_base_model_and_presets_load():
    from pathlib import Path

    config = ScratchTransformerConfig()
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (512, 6, 6)
    assert (config.num_attention_heads, config.d_ff, config.hidden_act) == (8, 2048, "relu")
    assert (config.hidden_dropout_prob, config.label_smoothing) == (0.1, 0.1)
    root = Path(__file__).resolve().parents[1] / "configuration"
    big = ScratchTransformerConfig.from_pretrained(root / "transformer-big")
    assert (big.hidden_size, big.num_attention_heads, big.intermediate_size) == (1024, 16, 4096)
    assert big.hidden_dropout_prob == 0.3
    base = ScratchTransformerConfig.from_pretrained(root / "transformer-base")
    assert base.to_diff_dict() == ScratchTransformerConfig().to_diff_dict() | {
        "architectures": base.architectures
    }


# --------------------------------------------------------------------------------------------------
# Parity with torch.nn.Transformer (post-LN, batch_first, same weights and masks)
# --------------------------------------------------------------------------------------------------


def _copy_block(ours, theirs, cross: bool) -> None:
    copy_attention_into_torch(ours.self_attn, theirs.self_attn)
    theirs.linear1.load_state_dict(ours.feed_forward.fc1.state_dict())
    theirs.linear2.load_state_dict(ours.feed_forward.fc2.state_dict())
    theirs.norm1.load_state_dict(ours.self_attn_norm.state_dict())
    if cross:
        copy_attention_into_torch(ours.cross_attn, theirs.multihead_attn)
        theirs.norm2.load_state_dict(ours.cross_attn_norm.state_dict())
        theirs.norm3.load_state_dict(ours.feed_forward_norm.state_dict())
    else:
        theirs.norm2.load_state_dict(ours.feed_forward_norm.state_dict())


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # nn.Transformer's own
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_stacks_match_torch_nn_transformer(implementation):
    config = tiny_config(encoder_layers=2, decoder_layers=2, attn_implementation=implementation)
    model = ScratchTransformerModel(config).eval()
    _spread_weights(model)
    reference = torch.nn.Transformer(
        d_model=32,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=48,
        dropout=0.0,
        batch_first=True,
        norm_first=False,
    ).eval()
    # nn.Transformer always ends each stack with a LayerNorm; the paper's post-LN stacks do not.
    reference.encoder.norm = torch.nn.Identity()
    reference.decoder.norm = torch.nn.Identity()
    with torch.no_grad():
        for ours, theirs in zip(model.encoder.layers, reference.encoder.layers, strict=True):
            _copy_block(ours, theirs, cross=False)
        for ours, theirs in zip(model.decoder.layers, reference.decoder.layers, strict=True):
            _copy_block(ours, theirs, cross=True)

    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(3, VOCAB, (3, 6))
    with torch.no_grad():
        outputs = model(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        )
        source = model.encoder._embed(input_ids, None, past_length=0)
        target = model.decoder._embed(decoder_input_ids, None, past_length=0)
        # nn.Transformer's masks say True = ignore, the opposite of ours (True = may attend).
        padding = attention_mask == 0
        expected = reference(
            source,
            target,
            tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(6),
            src_key_padding_mask=padding,
            memory_key_padding_mask=padding,
            tgt_is_causal=True,
        )
        memory = reference.encoder(source, src_key_padding_mask=padding)
    torch.testing.assert_close(outputs.last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    real = attention_mask.bool()  # nn.TransformerEncoder's fast path zeroes padded positions
    torch.testing.assert_close(
        outputs.encoder_last_hidden_state[real], memory[real], atol=1e-5, rtol=1e-5
    )


# --------------------------------------------------------------------------------------------------
# Parity with transformers' Marian, through the converters
# --------------------------------------------------------------------------------------------------


def marian_config(**overrides) -> MarianConfig:
    values = dict(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_position_embeddings=40,
        activation_function="swish",
        scale_embedding=True,
        dropout=0.0,
        pad_token_id=VOCAB - 1,
        decoder_start_token_id=VOCAB - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
    )
    values.update(overrides)
    return MarianConfig(**values)


def random_marian(model_class=MarianMTModel, implementation="sdpa", **overrides):
    reference = model_class._from_config(
        marian_config(**overrides), attn_implementation=implementation
    ).eval()
    _spread_weights(reference)
    if hasattr(reference, "final_logits_bias"):
        reference.final_logits_bias.normal_(0.0, 0.5)
    return reference


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("shared", [True, False])
def test_logits_and_loss_match_marian(implementation, shared):
    overrides = (
        {} if shared else dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=67)
    )
    reference = random_marian(implementation=implementation, **overrides)
    model = from_reference(reference)
    model.config._attn_implementation = implementation
    input_ids, attention_mask = source_batch()
    labels = torch.randint(1, 61, (3, 7))
    labels[1, 5:] = -100
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        actual = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(actual.loss, expected.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        actual.encoder_last_hidden_state[attention_mask.bool()],
        expected.encoder_last_hidden_state[attention_mask.bool()],
        atol=1e-5,
        rtol=1e-5,
    )
    # and back: the reference rebuilt from our weights computes the same logits
    with torch.no_grad():
        round_trip = to_reference(model)(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels
        )
    torch.testing.assert_close(round_trip.logits, expected.logits, atol=1e-5, rtol=1e-5)


def test_base_model_matches_marian_model_and_attentions():
    reference = random_marian(MarianModel, implementation="eager")
    model = from_reference(reference)
    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(1, VOCAB, (3, 5))
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        output_attentions=True,
        output_hidden_states=True,
    )
    with torch.no_grad():
        expected, actual = reference(**kwargs), model(**kwargs)
    torch.testing.assert_close(
        actual.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-5
    )
    for name in ("cross_attentions", "decoder_attentions", "decoder_hidden_states"):
        assert len(getattr(actual, name)) == len(getattr(expected, name)), name
        for ours, theirs in zip(getattr(actual, name), getattr(expected, name), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5, msg=name)
    cross = actual.cross_attentions[0]  # (B, H, T, S): no weight on padded source tokens
    assert cross.shape == (3, 4, 5, 9)
    assert cross[1, :, :, 6:].abs().max() == 0
    torch.testing.assert_close(cross.sum(-1), torch.ones(3, 4, 5))


@pytest.mark.parametrize(
    "generation",
    [
        dict(num_beams=1),
        dict(num_beams=4, length_penalty=0.6),
        dict(num_beams=3, num_return_sequences=2, length_penalty=1.5),
        dict(do_sample=True, num_return_sequences=3, top_k=8),
    ],
    ids=["greedy", "beam4", "beam3x2", "sampling-x3"],
)
def test_generation_matches_marian_token_for_token(generation):
    reference = random_marian()
    model = from_reference(reference)
    input_ids, attention_mask = source_batch(batch_size=4)
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=15, **generation)
    kwargs.setdefault("do_sample", False)
    torch.manual_seed(0)
    expected = reference.generate(input_ids, **kwargs)
    torch.manual_seed(0)
    actual = model.generate(input_ids, **kwargs)
    assert torch.equal(actual, expected)
    assert len({tuple(row.tolist()) for row in actual}) > 1  # the outputs are not degenerate


def test_convert_command_both_ways(tmp_path):
    reference = random_marian()
    reference.generation_config.num_beams = 3
    reference.save_pretrained(tmp_path / "marian")
    assert main([str(tmp_path / "marian"), str(tmp_path / "ours")]) == 0
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    assert type(ours) is ScratchTransformerForConditionalGeneration
    assert ours.generation_config.num_beams == 3
    assert ours.config.sinusoid_layout == "halves" and ours.config.add_final_logits_bias
    back = convert_folder(tmp_path / "ours", tmp_path / "back", to_hf=True)
    assert type(back) is MarianMTModel
    reloaded = MarianMTModel.from_pretrained(tmp_path / "back").eval()
    input_ids, attention_mask = source_batch()
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids)
        for model in (ours, reloaded):
            actual = model(input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids)
            torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(
        ours.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8),
        reference.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8),
    )


def test_layouts_marian_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="sinusoid_layout='interleaved'"):
        to_reference(random_model())
    with pytest.raises(ValueError, match="encoder_ffn_dim=48, decoder_ffn_dim=64"):
        from_reference(random_marian(decoder_ffn_dim=64))


# --------------------------------------------------------------------------------------------------
# Generation and the cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generation",
    [
        dict(num_beams=1, do_sample=False),
        dict(num_beams=4, do_sample=False, length_penalty=2.0, early_stopping=True),
        dict(do_sample=True, top_k=10, temperature=0.8),
    ],
    ids=["greedy", "beam", "sampling"],
)
def test_cached_and_uncached_generation_are_identical(generation):
    model = random_model()
    input_ids, attention_mask = source_batch()
    outputs = []
    for use_cache in (True, False):
        torch.manual_seed(0)
        outputs.append(
            model.generate(
                input_ids,
                attention_mask=attention_mask,
                max_new_tokens=12,
                use_cache=use_cache,
                **generation,
            )
        )
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0][:, 0].eq(1).all()  # every translation starts with decoder_start_token_id


@torch.no_grad()
def decode_step_by_step(model, input_ids, attention_mask, decoder_input_ids, cache=None):
    """The logits of every target position, one decoder call per position with the cache (a new
    dynamic one unless given), and the cache."""
    encoder_outputs = model.get_encoder()(input_ids, attention_mask=attention_mask)
    steps = []
    for t in range(decoder_input_ids.shape[1]):
        step = model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids[:, t : t + 1],
            cache=cache,
            use_cache=True,
        )
        cache = step.cache
        steps.append(step.logits)
    return torch.cat(steps, dim=1), cache


def test_incremental_decoding_equals_full_decoding():
    model = random_model()
    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(3, VOCAB, (3, 7))
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    logits, cache = decode_step_by_step(model, input_ids, attention_mask, decoder_input_ids)
    torch.testing.assert_close(logits, full.logits, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == 7


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_several_sequences_per_source_equal_repeated_sources(implementation):
    """k target sequences per source (a decoder batch k times the encoder's) read the source once
    and give what the source repeated k times gives: logits, cross-attention weights, and step by
    step with a cache."""
    model = random_model()
    model.set_attn_implementation(implementation)
    input_ids, attention_mask = source_batch()  # source 1 and 2 padded
    decoder_input_ids = torch.randint(3, VOCAB, (6, 4))  # 2 per source
    repeated = dict(
        input_ids=input_ids.repeat_interleave(2, dim=0),
        attention_mask=attention_mask.repeat_interleave(2, dim=0),
    )
    with torch.no_grad():
        expected = model(**repeated, decoder_input_ids=decoder_input_ids, output_attentions=True)
        actual = model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            output_attentions=True,
        )
    logits, cache = decode_step_by_step(model, input_ids, attention_mask, decoder_input_ids)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, expected.logits, atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(actual.cross_attentions, expected.cross_attentions, strict=True):
        assert ours.shape == (6, 4, 4, 9)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert cache.cross_attention_cache.layers[0].keys.shape[0] == 3  # one row per source
    message = r"batch size 7, not a multiple of the encoder output's 3 sequences"
    with pytest.raises(ValueError, match=message):
        model(input_ids, decoder_input_ids=torch.randint(3, VOCAB, (7, 4)))


@pytest.mark.parametrize("settings", DECODING_MODES, ids=DECODING_MODE_NAMES)
def test_static_cache_generates_the_dynamic_caches_tokens(settings):
    """`generate(cache_implementation="static")` on padded sources: fixed-size self-attention
    buffers, a cross-attention buffer of one row per source, the 4-D masks transformers builds;
    the dynamic cache's tokens. The steps run eagerly here; test_compile.py checks the compiled
    ones."""
    model = random_model()
    input_ids, attention_mask = source_batch()
    assert_static_cache_generates_the_dynamic_caches_tokens(
        model, input_ids, attention_mask=attention_mask, **settings
    )


def test_static_cache_layers_passed_in_continue_as_the_full_forward():
    """An `EncoderDecoderCache` of two `StaticCache`s, filled step by step, gives the logits of
    the full forward; the cross-attention buffer holds one row per source."""
    from transformers import StaticCache

    model = random_model()
    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(3, VOCAB, (6, 5))  # two target sequences per source
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        cache = EncoderDecoderCache(
            StaticCache(config=model.config, max_cache_len=12),
            StaticCache(config=model.config, max_cache_len=input_ids.shape[1]),
        )
        logits, _ = decode_step_by_step(
            model, input_ids, attention_mask, decoder_input_ids, cache=cache
        )
    torch.testing.assert_close(logits, full.logits, atol=1e-5, rtol=1e-5)
    assert int(cache.get_seq_length()) == 5
    assert cache.cross_attention_cache.layers[0].keys.shape[0] == 3


def test_beam_search_outputs_are_marians_in_shape_and_value():
    """Decoding reads one encoder output per source, yet every output field, the returned cache
    included, has Marian's shapes (one cross-attention row per hypothesis) and values."""
    reference = random_marian(implementation="eager")
    model = from_reference(reference).eval()
    input_ids, attention_mask = source_batch()
    settings = dict(
        attention_mask=attention_mask,
        num_beams=4,
        num_return_sequences=2,
        max_new_tokens=6,
        **EVERY_GENERATE_OUTPUT,
    )
    expected, output = (
        reference.generate(input_ids, **settings),
        model.generate(input_ids, **settings),
    )
    assert set(output.keys()) == set(expected.keys())
    for name in expected.keys() - {"cache"}:
        assert_same_structure(output[name], expected[name], name)
    for part in ("self_attention_cache", "cross_attention_cache"):
        layers = getattr(output.cache, part).layers
        expected_layers = getattr(expected.cache, part).layers
        for index, (layer, reference_layer) in enumerate(zip(layers, expected_layers, strict=True)):
            assert layer.keys.shape[0] == 12  # 3 sources x 4 beams
            assert_same_structure(layer.keys, reference_layer.keys, f"{part}[{index}].keys")
            assert_same_structure(layer.values, reference_layer.values, f"{part}[{index}].values")


def test_source_padding_does_not_change_the_translation():
    model = random_model()
    input_ids = torch.randint(3, VOCAB, (1, 6))
    padded = torch.cat([input_ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    decoder_input_ids = torch.randint(3, VOCAB, (1, 5))
    with torch.no_grad():
        alone = model(input_ids, decoder_input_ids=decoder_input_ids).logits
        with_padding = model(padded, attention_mask=mask, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(with_padding.logits, alone, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    model = random_model()
    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(3, VOCAB, (3, 8))
    changed = decoder_input_ids.clone()
    changed[:, 5:] = torch.randint(3, VOCAB, (3, 3))
    with torch.no_grad():
        before = model(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        )
        after = model(input_ids, attention_mask=attention_mask, decoder_input_ids=changed)
    torch.testing.assert_close(after.logits[:, :5], before.logits[:, :5])
    assert not torch.allclose(after.logits[:, 5:], before.logits[:, 5:])


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def test_loss_is_label_smoothed_cross_entropy_on_shifted_labels():
    model = random_model(label_smoothing=0.1)
    input_ids, attention_mask = source_batch()
    labels = torch.randint(3, VOCAB, (3, 6))
    labels[0, 4:] = -100
    outputs = model(input_ids, attention_mask=attention_mask, labels=labels)
    decoder_input_ids = torch.cat([torch.ones(3, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    decoder_input_ids[decoder_input_ids == -100] = 0  # padding
    assert torch.equal(model.prepare_decoder_input_ids_from_labels(labels), decoder_input_ids)
    logits = model(
        input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    ).logits
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=0.1)
    torch.testing.assert_close(outputs.loss, expected)
    torch.testing.assert_close(outputs.logits, logits)


def test_gradient_checkpointing_gives_the_same_gradients():
    input_ids, attention_mask = source_batch()
    labels = torch.randint(3, VOCAB, (3, 6))
    gradients = []
    for checkpointing in (False, True):
        model = random_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    from datasets import Dataset

    torch.manual_seed(3)
    input_ids = torch.randint(3, VOCAB, (8, 7))
    labels = torch.randint(3, VOCAB, (8, 6))
    for row, length in enumerate([6, 1, 2, 6, 3, 5, 1, 4]):  # unequal target lengths
        labels[row, length:] = -100
    dataset = Dataset.from_dict({"input_ids": input_ids.tolist(), "labels": labels.tolist()})
    assert_accumulation_matches_one_large_batch(
        lambda: ScratchTransformerForConditionalGeneration(tiny_config()), dataset, tmp_path
    )


@pytest.mark.parametrize(
    ("dtype", "tolerance", "cosine"),
    [(torch.float16, 0.01, 0.995), (torch.bfloat16, 0.05, 0.98)],
    ids=["fp16", "bf16"],
)
def test_half_precision_is_close_to_float32_with_a_fully_padded_source(dtype, tolerance, cosine):
    """Logits and loss in half precision within `tolerance` of float32's (relative to the largest
    logit), and the gradient of all parameters pointing the same way (at least `cosine`; five
    random models measured >= 0.9988 in fp16 and >= 0.988 in bf16), with one source that has
    nothing to attend to."""
    torch.manual_seed(0)
    input_ids, attention_mask = source_batch()
    attention_mask[0] = 0  # nothing to attend to in the first source
    labels = torch.randint(3, VOCAB, (3, 5))
    reference, results = random_model(), {}
    for precision in (torch.float32, dtype):
        model = copy.deepcopy(reference).to(precision)
        outputs = model(input_ids, attention_mask=attention_mask, labels=labels)
        outputs.loss.backward()
        gradients = torch.cat(
            [p.grad.float().flatten() for p in model.parameters() if p.grad is not None]
        )
        results[precision] = (
            outputs.logits.detach().float(),
            outputs.loss.detach().float(),
            gradients,
        )
    (logits, loss, gradients), (expected_logits, expected_loss, expected_gradients) = (
        results[dtype],
        results[torch.float32],
    )
    assert (logits - expected_logits).abs().max() <= tolerance * expected_logits.abs().max()
    torch.testing.assert_close(loss, expected_loss, rtol=tolerance, atol=0)
    similarity = torch.nn.functional.cosine_similarity(gradients, expected_gradients, dim=0)
    assert similarity >= cosine, similarity


# --------------------------------------------------------------------------------------------------
# The Hugging Face contract and bad input
# --------------------------------------------------------------------------------------------------


def test_saved_model_loads_and_translates_where_hf_scratch_is_not_installed(tmp_path):
    model = random_model(sinusoid_layout="halves", add_final_logits_bias=True)
    model.final_logits_bias.normal_()
    model.save_pretrained(tmp_path / "model")
    input_ids, attention_mask = source_batch()
    expected = model.generate(
        input_ids, attention_mask=attention_mask, num_beams=2, max_new_tokens=9
    )
    result = run_without_hf_scratch(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForSeq2SeqLM
        model = AutoModelForSeq2SeqLM.from_pretrained("model", trust_remote_code=True).eval()
        input_ids = torch.tensor({input_ids.tolist()})
        attention_mask = torch.tensor({attention_mask.tolist()})
        output = model.generate(input_ids, attention_mask=attention_mask, num_beams=2,
                                max_new_tokens=9)
        print(type(model).__name__, output.tolist())
        print(type(AutoModel.from_pretrained("model", trust_remote_code=True)).__name__)
        """,
        cwd=tmp_path,
    )
    assert result.stdout.split("\n")[:2] == [
        f"ScratchTransformerForConditionalGeneration {expected.tolist()}",
        "ScratchTransformerModel",
    ]


def test_tied_weights_survive_save_and_load(tmp_path):
    model = random_model()
    model.save_pretrained(tmp_path)
    loaded = ScratchTransformerForConditionalGeneration.from_pretrained(tmp_path)
    embedding = loaded.model.encoder.embed_tokens.weight
    assert (
        loaded.lm_head.weight is embedding and loaded.model.decoder.embed_tokens.weight is embedding
    )
    torch.testing.assert_close(embedding, model.lm_head.weight)
    table = loaded.model.decoder.embed_positions
    torch.testing.assert_close(table.weight, table.computed_table())


def test_resizing_the_shared_vocabulary_keeps_everything_tied(tmp_path):
    model = random_model(add_final_logits_bias=True)
    model.final_logits_bias.normal_()
    bias = model.final_logits_bias.clone()
    model.resize_token_embeddings(VOCAB + 5)
    assert model.config.vocab_size == model.config.decoder_vocab_size == VOCAB + 5
    embedding = model.model.encoder.embed_tokens.weight
    assert embedding.shape == (VOCAB + 5, 32)
    assert (
        model.lm_head.weight is embedding and model.model.decoder.embed_tokens.weight is embedding
    )
    assert torch.equal(model.final_logits_bias[:, :VOCAB], bias)
    assert model.final_logits_bias[:, VOCAB:].abs().max() == 0
    input_ids, attention_mask = source_batch()
    input_ids[0, 0] = VOCAB + 4  # a new token
    logits = model(input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids).logits
    assert logits.shape == (3, 9, VOCAB + 5)
    model.save_pretrained(tmp_path)
    reloaded = ScratchTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    reloaded_logits = reloaded(
        input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids
    ).logits
    torch.testing.assert_close(reloaded_logits, logits)


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda: dict(input_ids=torch.tensor([[3, 61]])), r"input_ids contains 61, .*\[0, 61\)"),
        (
            lambda: dict(input_ids=torch.full((1, 41), 3)),
            r"length 41 is longer than max_position_embeddings \(40\)",
        ),
        (
            lambda: dict(input_ids=torch.full((1, 5), 3), decoder_input_ids=torch.full((1, 41), 3)),
            r"length 41 is longer than max_position_embeddings \(40\)",
        ),
        (
            lambda: dict(input_ids=torch.full((2, 5), 3), attention_mask=torch.ones(2, 6)),
            r"attention_mask has shape \(2, 6\), expected .* \(2, 5\)",
        ),
        (
            lambda: dict(
                input_ids=torch.full((2, 5), 3),
                decoder_input_ids=torch.full((3, 2), 3),
            ),
            "decoder input has batch size 3, not a multiple of the encoder output's 2 sequences",
        ),
        (
            lambda: dict(
                input_ids=torch.full((2, 5), 3),
                decoder_input_ids=torch.full((2, 2), 3),
                decoder_attention_mask=torch.ones(2, 3),
            ),
            r"attention_mask has shape \(2, 3\), expected .* \(2, 2\)",
        ),
    ],
    ids=["token-id", "source-length", "target-length", "source-mask", "batch", "target-mask"],
)
def test_bad_input_raises(make_inputs, message):
    model = random_model()
    inputs = make_inputs()
    inputs.setdefault("decoder_input_ids", torch.full((inputs["input_ids"].shape[0], 2), 3))
    with pytest.raises(ValueError, match=message):
        model(**inputs)
