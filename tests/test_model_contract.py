"""transformers' model contract, where users and libraries rely on it: the old name of the cache
argument, pre-shifted labels, loading in half precision, reentrant gradient checkpointing, untied
embeddings that survive a reload, and a shape mismatch at load time catchable as transformers'
`RuntimeError`."""

import pytest
import torch
from conftest import tiny_bert_config, tiny_gpt_config, tiny_transformer_config

from hf_scratch import (
    ScratchBertForMaskedLM,
    ScratchBertForMultipleChoice,
    ScratchBertForNextSentencePrediction,
    ScratchBertForPreTraining,
    ScratchBertForQuestionAnswering,
    ScratchBertForSequenceClassification,
    ScratchBertForTokenClassification,
    ScratchBertModel,
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
)

# --------------------------------------------------------------------------------------------------
# past_key_values, the cache argument's old name
# --------------------------------------------------------------------------------------------------


def test_gpt_accepts_the_old_cache_name_with_a_deprecation_warning():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    input_ids = torch.randint(1, 101, (2, 9))
    with torch.no_grad():
        full = model(input_ids).logits
        prefix = model(input_ids[:, :6], use_cache=True)
        with pytest.warns(FutureWarning, match="past_key_values"):
            rest = model(input_ids[:, 6:], past_key_values=prefix.cache, use_cache=True)
    torch.testing.assert_close(rest.logits, full[:, 6:], rtol=1e-5, atol=1e-5)
    assert rest.cache.get_seq_length() == 9


def test_transformer_accepts_the_old_cache_name_with_a_deprecation_warning():
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config()).eval()
    source = torch.randint(3, 61, (2, 7))
    target = torch.randint(3, 61, (2, 6))
    with torch.no_grad():
        full = model(input_ids=source, decoder_input_ids=target).logits
        prefix = model(input_ids=source, decoder_input_ids=target[:, :4], use_cache=True)
        with pytest.warns(FutureWarning, match="past_key_values"):
            rest = model(
                encoder_outputs=(prefix.encoder_last_hidden_state,),
                decoder_input_ids=target[:, 4:],
                past_key_values=prefix.cache,
                use_cache=True,
            )
    torch.testing.assert_close(rest.logits, full[:, 4:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# shift_labels
# --------------------------------------------------------------------------------------------------


def test_gpt_loss_reads_pre_shifted_labels():
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    input_ids = torch.randint(1, 101, (2, 8))
    # A packed batch's collator shifts itself: position i holds the token position i predicts,
    # with -100 where a sequence ends.
    shift_labels = torch.randint(1, 101, (2, 8))
    shift_labels[0, 3] = shift_labels[:, -1] = -100
    with torch.no_grad():
        logits = model(input_ids).logits
        loss = model(input_ids, shift_labels=shift_labels).loss
        from_labels = model(input_ids, labels=input_ids).loss
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), shift_labels.flatten())
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, from_labels)
    # a named argument would join the Trainer's label_names, and evaluation would find no labels
    from transformers.utils import find_labels

    assert find_labels(ScratchGPTLMHeadModel) == ["labels"]
    # the same targets given unshifted give the same loss
    unshifted = torch.nn.functional.pad(shift_labels[:, :-1], (1, 0), value=7)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids, labels=unshifted).loss, loss)


# --------------------------------------------------------------------------------------------------
# Half precision
# --------------------------------------------------------------------------------------------------

# bfloat16 keeps 8 bits of mantissa, float16 11: outputs of these tiny models stay within 4% (bf16)
# and 0.5% (fp16) of the largest float32 output, while a wrong computation is off by its whole size.
HALF_TOLERANCE = {torch.bfloat16: 0.04, torch.float16: 0.005}


def _half_inputs(family: str) -> dict:
    generator = torch.Generator().manual_seed(1)
    if family == "transformer":
        return {
            "input_ids": torch.randint(3, 61, (2, 7), generator=generator),
            "decoder_input_ids": torch.randint(3, 61, (2, 5), generator=generator),
        }
    vocabulary = 101 if family == "gpt" else 99
    return {"input_ids": torch.randint(5, vocabulary, (2, 9), generator=generator)}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(
    ("family", "model_class", "make_config"),
    [
        ("gpt", ScratchGPTLMHeadModel, tiny_gpt_config),
        ("bert", ScratchBertForMaskedLM, tiny_bert_config),
        ("transformer", ScratchTransformerForConditionalGeneration, tiny_transformer_config),
    ],
)
def test_loading_in_half_precision_gives_the_float32_outputs(
    tmp_path, family, model_class, make_config, dtype
):
    model = model_class(make_config()).eval()
    model.save_pretrained(tmp_path)
    half = model_class.from_pretrained(tmp_path, dtype=dtype).eval()
    assert {tensor.dtype for tensor in half.state_dict().values()} == {dtype}
    inputs = _half_inputs(family)
    with torch.no_grad():
        expected = model(**inputs).logits
        logits = half(**inputs).logits
    assert logits.dtype == dtype
    error = (logits.float() - expected).abs().max() / expected.abs().max()
    assert error < HALF_TOLERANCE[dtype], f"{error:.4f}"


# --------------------------------------------------------------------------------------------------
# Reentrant gradient checkpointing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non-reentrant"])
@pytest.mark.parametrize(
    ("family", "model_class", "make_config"),
    [
        ("gpt", ScratchGPTLMHeadModel, tiny_gpt_config),
        ("bert", ScratchBertForMaskedLM, tiny_bert_config),
        ("transformer", ScratchTransformerForConditionalGeneration, tiny_transformer_config),
    ],
)
def test_checkpointed_gradients_equal_plain_ones(family, model_class, make_config, reentrant):
    model = model_class(make_config()).train()
    inputs = _half_inputs(family)
    labels = inputs.get("decoder_input_ids", inputs["input_ids"])

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(**inputs, labels=labels).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    expected = gradients()
    model.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": reentrant}
    )
    checkpointed = gradients()
    assert checkpointed.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(checkpointed[name], value, msg=name)


# --------------------------------------------------------------------------------------------------
# Untied embeddings
# --------------------------------------------------------------------------------------------------


def test_an_untied_transformer_saves_and_reloads_three_matrices(tmp_path):
    model = ScratchTransformerForConditionalGeneration(
        tiny_transformer_config(tie_word_embeddings=False)
    ).eval()
    matrices = {
        "source": lambda m: m.model.encoder.embed_tokens.weight,
        "target": lambda m: m.model.decoder.embed_tokens.weight,
        "output": lambda m: m.lm_head.weight,
    }
    pointers = {matrix(model).data_ptr() for matrix in matrices.values()}
    assert len(pointers) == 3  # three matrices, over one vocabulary
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # make them differ, as training would
    model.save_pretrained(tmp_path)
    loaded = ScratchTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.share_embeddings and not loaded.config.tie_word_embeddings
    for name, matrix in matrices.items():
        assert torch.equal(matrix(loaded), matrix(model)), name
    inputs = _half_inputs("transformer")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    # resizing keeps the three apart and the same size
    loaded.resize_token_embeddings(70)
    assert {tuple(matrix(loaded).shape) for matrix in matrices.values()} == {(70, 32)}


# --------------------------------------------------------------------------------------------------
# A head of another shape
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_class", "make_config", "setting"),
    [
        (ScratchGPTForSequenceClassification, tiny_gpt_config, "num_labels"),
        (ScratchGPTForMultipleChoice, tiny_gpt_config, "vocab_size"),
        (ScratchGPTLMHeadModel, tiny_gpt_config, "vocab_size"),
        (ScratchBertForSequenceClassification, tiny_bert_config, "num_labels"),
        (ScratchBertForTokenClassification, tiny_bert_config, "num_labels"),
        (ScratchBertForQuestionAnswering, tiny_bert_config, "vocab_size"),
        (ScratchBertForMultipleChoice, tiny_bert_config, "vocab_size"),
        (ScratchBertForMaskedLM, tiny_bert_config, "vocab_size"),
        (ScratchBertForPreTraining, tiny_bert_config, "vocab_size"),
        (ScratchBertForNextSentencePrediction, tiny_bert_config, "vocab_size"),
        (ScratchBertModel, tiny_bert_config, "vocab_size"),
        (ScratchGPTModel, tiny_gpt_config, "vocab_size"),
        (ScratchTransformerModel, tiny_transformer_config, "vocab_size"),
        (ScratchTransformerForConditionalGeneration, tiny_transformer_config, "vocab_size"),
    ],
)
def test_a_shape_mismatch_is_a_runtime_error_naming_shapes_and_flag(
    tmp_path, model_class, make_config, setting
):
    config = make_config()
    model_class(config).save_pretrained(tmp_path)
    changed = {setting: getattr(config, setting) + 3}
    if setting == "num_labels":
        changed = {"num_labels": 5}
    if make_config is tiny_transformer_config:  # one vocabulary, both sides
        changed["decoder_vocab_size"] = changed["vocab_size"]
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes=True") as caught:
        model_class.from_pretrained(tmp_path, **changed)
    assert isinstance(caught.value, ValueError)  # our CheckpointError is both
    message = str(caught.value)
    assert message.count("(") >= 2, message  # both shapes
    loaded = model_class.from_pretrained(tmp_path, ignore_mismatched_sizes=True, **changed)
    assert getattr(loaded.config, setting) == changed[setting]


# --------------------------------------------------------------------------------------------------
# Custom 4-D attention masks
# --------------------------------------------------------------------------------------------------


def _as_4d(attention_mask: torch.Tensor, causal: bool, additive: bool) -> torch.Tensor:
    """The (B, 1, T, S) mask a 2-D padding mask stands for, boolean or additive."""
    keep = attention_mask.bool()[:, None, None, :].expand(-1, 1, attention_mask.shape[1], -1)
    if causal:
        keep = keep & torch.ones(keep.shape[-2:], dtype=torch.bool).tril()
    if not additive:
        return keep
    return torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("additive", [False, True], ids=["boolean", "additive"])
@pytest.mark.parametrize(
    ("family", "model_class", "make_config"),
    [
        ("gpt", ScratchGPTLMHeadModel, tiny_gpt_config),
        ("bert", ScratchBertForMaskedLM, tiny_bert_config),
        ("transformer", ScratchTransformerForConditionalGeneration, tiny_transformer_config),
    ],
)
def test_a_4d_mask_gives_the_outputs_of_the_2d_mask_it_stands_for(
    family, model_class, make_config, additive
):
    model = model_class(make_config()).eval()
    inputs = _half_inputs(family)
    # the Transformer's custom mask is the decoder's; its attention_mask stays the source padding
    name = "decoder_attention_mask" if family == "transformer" else "attention_mask"
    padded = inputs["decoder_input_ids" if family == "transformer" else "input_ids"]
    padding = torch.ones_like(padded)
    padding[1, -2:] = 0  # the second sequence is right-padded
    with torch.no_grad():
        expected = model(**inputs, **{name: padding}).logits
        custom = _as_4d(padding, causal=family != "bert", additive=additive)
        logits = model(**inputs, **{name: custom}).logits
    real = padding.bool()
    torch.testing.assert_close(logits[real], expected[real], rtol=1e-5, atol=1e-5)


def test_a_block_diagonal_4d_mask_keeps_packed_sequences_apart():
    """Two sequences packed in one row with a block-diagonal causal mask (and restarting positions)
    give each sequence's own logits."""
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    first, second = torch.randint(1, 101, (1, 5)), torch.randint(1, 101, (1, 4))
    packed = torch.cat([first, second], dim=1)
    block = torch.zeros(9, 9, dtype=torch.bool)
    block[:5, :5] = block[5:, 5:] = True
    mask = (block & torch.ones(9, 9, dtype=torch.bool).tril())[None, None]
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    with torch.no_grad():
        logits = model(packed, attention_mask=mask, position_ids=position_ids).logits
        torch.testing.assert_close(logits[:, :5], model(first).logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits[:, 5:], model(second).logits, rtol=1e-5, atol=1e-5)


def test_the_transformers_source_mask_must_be_2d():
    model = ScratchTransformerForConditionalGeneration(tiny_transformer_config()).eval()
    inputs = _half_inputs("transformer")
    with pytest.raises(ValueError, match="A custom 4-D mask goes to the decoder"):
        model(**inputs, attention_mask=torch.ones(2, 1, 7, 7, dtype=torch.bool))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.ones(2, 1, 9, 8, dtype=torch.bool), r"shape \(batch_size or 1, 1, .*\(2, 1, 9, 9\)"),
        (torch.ones(3, 1, 9, 9, dtype=torch.bool), r"got \(3, 1, 9, 9\)"),
        (torch.full((2, 1, 9, 9), -2.0), "additive: 0 where a query may attend"),
    ],
)
def test_a_bad_4d_mask_is_refused(mask, message):
    model = ScratchGPTLMHeadModel(tiny_gpt_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.randint(1, 101, (2, 9)), attention_mask=mask)


# --------------------------------------------------------------------------------------------------
# Padding-free batches: sequences packed in a row, positions restarting at each
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "model_class", "make_config"),
    [
        ("gpt", ScratchGPTLMHeadModel, tiny_gpt_config),
        ("bert", ScratchBertForMaskedLM, tiny_bert_config),
    ],
)
def test_a_padding_free_batch_gives_the_padded_batchs_outputs_and_loss(
    family, model_class, make_config
):
    from transformers import DataCollatorWithFlattening, DataCollatorWithPadding

    model = model_class(make_config()).eval()
    generator = torch.Generator().manual_seed(2)
    lengths = (7, 3, 9, 5)
    sequences = [torch.randint(5, 99, (n,), generator=generator).tolist() for n in lengths]
    labels = [
        [token if (i + j) % 3 == 0 else -100 for j, token in enumerate(sequence)]
        for i, sequence in enumerate(sequences)
    ]
    packed = DataCollatorWithFlattening()(
        [{"input_ids": s, "labels": label} for s, label in zip(sequences, labels, strict=True)]
    )
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    padded = DataCollatorWithPadding(_PadOnly())([{"input_ids": s} for s in sequences])
    padded_labels = torch.full(padded["input_ids"].shape, -100)
    for row, label in enumerate(labels):
        padded_labels[row, : len(label)] = torch.tensor(label)
    padded_labels[:, 0] = -100  # the collator's separator: each sequence's first label
    with torch.no_grad():
        flat = model(**packed)
        expected = model(**padded, labels=padded_labels)
    real = padded["attention_mask"].bool()
    torch.testing.assert_close(flat.logits[0], expected.logits[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flat.loss, expected.loss, rtol=1e-5, atol=1e-6)


class _PadOnly:
    """The least a tokenizer must be for `DataCollatorWithPadding` to pad ids with 0."""

    padding_side = "right"
    pad_token_id = 0
    model_input_names = ["input_ids", "attention_mask"]

    def pad(self, features, **kwargs):
        longest = max(len(feature["input_ids"]) for feature in features)
        ids = [f["input_ids"] + [0] * (longest - len(f["input_ids"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def test_unpacked_position_ids_keep_the_unmasked_fast_path():
    """Explicit positions of one sequence per row are not a packed batch: no mask is made, and the
    attention stays SDPA's causal kernel."""
    from hf_scratch import packed_sequence_mask

    assert packed_sequence_mask(torch.arange(6).expand(2, -1), causal=True) is None
    mask = packed_sequence_mask(torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]), causal=False)
    expected_first = torch.tensor([[1, 1, 1, 0, 0]] * 3 + [[0, 0, 0, 1, 1]] * 2, dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected_first) and mask[1].all()


# --------------------------------------------------------------------------------------------------
# Selected hidden states
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selection", [1, -1, [0, -1], [2, 7, -9]])
def test_output_hidden_states_selects_layers_as_gpt2_does(selection):
    """transformers 5 reads an int or a list of ints as indices of the hidden states to return
    (negative from the end, out of range: nothing), the others None; same weights, same values."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_scratch.convert import from_reference

    reference = GPT2LMHeadModel(
        GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=101, n_positions=48)
    ).eval()
    ours = from_reference(reference).eval()
    input_ids = torch.randint(0, 101, (2, 6))
    with torch.no_grad():
        expected = reference(input_ids, output_hidden_states=selection).hidden_states
        hidden_states = ours(input_ids, output_hidden_states=selection).hidden_states
    assert [h is None for h in hidden_states] == [h is None for h in expected]
    for state, reference_state in zip(hidden_states, expected, strict=True):
        if state is not None:
            torch.testing.assert_close(state, reference_state, rtol=1e-5, atol=1e-5)


def test_every_family_returns_the_selected_hidden_states_of_a_full_run():
    models = {
        "bert": (ScratchBertForMaskedLM(tiny_bert_config()), "hidden_states"),
        "transformer": (
            ScratchTransformerForConditionalGeneration(tiny_transformer_config()),
            "decoder_hidden_states",
        ),
    }
    for family, (model, field) in models.items():
        inputs = _half_inputs(family)
        with torch.no_grad():
            everything = getattr(model.eval()(**inputs, output_hidden_states=True), field)
            selected = getattr(model(**inputs, output_hidden_states=[-1, 0]), field)
        assert len(selected) == len(everything)
        for index, state in enumerate(selected):
            if index in (0, len(everything) - 1):
                torch.testing.assert_close(state, everything[index])
            else:
                assert state is None, (family, index)
