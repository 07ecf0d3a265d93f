"""Weight converters between hf_scratch and the Hugging Face reference implementations.

    python -m hf_scratch.convert SRC_DIR DST_DIR          # a transformers checkpoint -> hf_scratch
    python -m hf_scratch.convert --to-hf SRC_DIR DST_DIR  # an hf_scratch folder -> transformers
    (also installed as the console script `hf-scratch-convert`)

The architecture is read from the source folder's `config.json` (`model_type` and `architectures`).
The output is written with `save_pretrained` (safetensors); an hf_scratch folder carries its source
files and an `auto_map`, so it loads with `trust_remote_code=True` where hf_scratch is not
installed. Tokenizer files are copied along.

Supported: BERT (`BertModel`, `BertForPreTraining` and every head class; W_Q, W_K, W_V are stacked
into our `qkv_proj`), OpenAI GPT (`OpenAIGPTModel`, `OpenAIGPTLMHeadModel`,
`OpenAIGPTDoubleHeadsModel`, `OpenAIGPTForSequenceClassification`) and GPT-2 (`GPT2Model`,
`GPT2LMHeadModel`, `GPT2DoubleHeadsModel`, `GPT2ForSequenceClassification`), which become hf_scratch
GPT in the GPT-1 layout or the GPT-2 layout (`norm_first=True`). OpenAI's `Conv1D` layers store
their weights as (in, out) and are transposed; their fused c_attn [W_Q | W_K | W_V] is exactly our
`qkv_proj` once transposed. Marian (`MarianMTModel`, `MarianModel`: the opus-mt checkpoints) becomes
the hf_scratch Transformer with Marian's options (sines-then-cosines positions, its activation, the
final logits bias); its self-attention q/k/v projections are stacked like BERT's, and its
cross-attention k/v into our `kv_proj`. The generation settings
(`generation_config.json`: beams, forced EOS, banned pad token) travel with the weights.

Converting a state dict renames every tensor by the rules below and fails with the list of tensors
it could not place: nothing is dropped or initialised silently.
"""

import argparse
import copy
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import BertConfig, GPT2Config, MarianConfig, OpenAIGPTConfig, PreTrainedModel

from .configuration_bert import ScratchBertConfig
from .configuration_gpt import ScratchGPTConfig
from .configuration_transformer import ScratchTransformerConfig
from .modeling_bert import (
    ScratchBertForMaskedLM,
    ScratchBertForMultipleChoice,
    ScratchBertForNextSentencePrediction,
    ScratchBertForPreTraining,
    ScratchBertForQuestionAnswering,
    ScratchBertForSequenceClassification,
    ScratchBertForTokenClassification,
    ScratchBertModel,
)
from .modeling_gpt import (
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
)
from .modeling_transformer import (
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
)

# --------------------------------------------------------------------------------------------------
# Renaming rules
# --------------------------------------------------------------------------------------------------


# Placeholders in the name templates: {prefix} is a head's "transformer.", "bert." or "model."
# (empty in a bare base model), {stack} "encoder" or "decoder", {i} a layer index, {p} "weight" or
# "bias".
_PLACEHOLDERS = {
    "prefix": r"(?P<prefix>(?:transformer\.|bert\.|model\.)?)",
    "stack": r"(?P<stack>encoder|decoder)",
    "i": r"(?P<i>\d+)",
    "p": r"(?P<p>weight|bias)",
}


@dataclass(frozen=True)
class Rule:
    """One tensor name in the reference and in ours, as templates; `transpose` for Conv1D weights,
    which the reference stores as (in, out)."""

    reference: str
    ours: str
    transpose: bool = False


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        regex = regex.replace(re.escape("{" + name + "}"), group)
    return re.compile(regex)


def _gpt_rules(embeddings: dict[str, str], final_norm: str | None) -> list[Rule]:
    rules = [
        Rule(
            "{prefix}h.{i}.attn.c_attn.weight", "{prefix}layers.{i}.self_attn.qkv_proj.weight", True
        ),
        Rule("{prefix}h.{i}.attn.c_attn.bias", "{prefix}layers.{i}.self_attn.qkv_proj.bias"),
        Rule(
            "{prefix}h.{i}.attn.c_proj.weight", "{prefix}layers.{i}.self_attn.out_proj.weight", True
        ),
        Rule("{prefix}h.{i}.attn.c_proj.bias", "{prefix}layers.{i}.self_attn.out_proj.bias"),
        Rule("{prefix}h.{i}.ln_1.{p}", "{prefix}layers.{i}.self_attn_norm.{p}"),
        Rule("{prefix}h.{i}.mlp.c_fc.weight", "{prefix}layers.{i}.feed_forward.fc1.weight", True),
        Rule("{prefix}h.{i}.mlp.c_fc.bias", "{prefix}layers.{i}.feed_forward.fc1.bias"),
        Rule("{prefix}h.{i}.mlp.c_proj.weight", "{prefix}layers.{i}.feed_forward.fc2.weight", True),
        Rule("{prefix}h.{i}.mlp.c_proj.bias", "{prefix}layers.{i}.feed_forward.fc2.bias"),
        Rule("{prefix}h.{i}.ln_2.{p}", "{prefix}layers.{i}.feed_forward_norm.{p}"),
        Rule("lm_head.weight", "lm_head.weight"),
        Rule("score.weight", "score.weight"),
        Rule("multiple_choice_head.summary.{p}", "multiple_choice_head.{p}"),
    ]
    rules += [
        Rule(f"{{prefix}}{reference}.weight", f"{{prefix}}{ours}.weight")
        for reference, ours in embeddings.items()
    ]
    if final_norm is not None:
        rules.append(Rule(f"{{prefix}}{final_norm}.{{p}}", "{prefix}final_norm.{p}"))
    return rules


OPENAI_GPT_RULES = _gpt_rules(
    {"tokens_embed": "tokens_embed", "positions_embed": "positions_embed"}, final_norm=None
)
GPT2_RULES = _gpt_rules({"wte": "tokens_embed", "wpe": "positions_embed"}, final_norm="ln_f")

BERT_RULES = [
    Rule("{prefix}embeddings.word_embeddings.weight", "{prefix}embeddings.word_embeddings.weight"),
    Rule(
        "{prefix}embeddings.position_embeddings.weight",
        "{prefix}embeddings.position_embeddings.weight",
    ),
    Rule(
        "{prefix}embeddings.token_type_embeddings.weight",
        "{prefix}embeddings.token_type_embeddings.weight",
    ),
    Rule("{prefix}embeddings.LayerNorm.{p}", "{prefix}embeddings.norm.{p}"),
    Rule(
        "{prefix}encoder.layer.{i}.attention.self.qkv.{p}",
        "{prefix}layers.{i}.self_attn.qkv_proj.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.attention.output.dense.{p}",
        "{prefix}layers.{i}.self_attn.out_proj.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.attention.output.LayerNorm.{p}",
        "{prefix}layers.{i}.self_attn_norm.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.intermediate.dense.{p}",
        "{prefix}layers.{i}.feed_forward.fc1.{p}",
    ),
    Rule("{prefix}encoder.layer.{i}.output.dense.{p}", "{prefix}layers.{i}.feed_forward.fc2.{p}"),
    Rule(
        "{prefix}encoder.layer.{i}.output.LayerNorm.{p}", "{prefix}layers.{i}.feed_forward_norm.{p}"
    ),
    Rule("{prefix}pooler.dense.{p}", "{prefix}pooler.{p}"),
    Rule("cls.predictions.transform.dense.{p}", "mlm_head.transform.{p}"),
    Rule("cls.predictions.transform.LayerNorm.{p}", "mlm_head.norm.{p}"),
    Rule("cls.predictions.bias", "mlm_head.decoder.bias"),
    Rule("cls.seq_relationship.{p}", "nsp_head.{p}"),
    Rule("classifier.{p}", "classifier.{p}"),
    Rule("qa_outputs.{p}", "qa_outputs.{p}"),
]
# BERT keeps W_Q, W_K, W_V as three tensors; ours stacks them into one qkv_proj.
BERT_QKV = (
    ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention.self.qkv",
)


def _marian_layer_rule(reference: str, ours: str) -> Rule:
    return Rule(
        f"{{prefix}}{{stack}}.layers.{{i}}.{reference}", f"{{prefix}}{{stack}}.layers.{{i}}.{ours}"
    )


MARIAN_RULES = [
    # Separate vocabularies: each stack has its own matrix. One vocabulary: Marian's `shared` is
    # our encoder's matrix, which the decoder and the output projection are tied to.
    Rule("{prefix}{stack}.embed_tokens.weight", "{prefix}{stack}.embed_tokens.weight"),
    Rule("{prefix}shared.weight", "{prefix}encoder.embed_tokens.weight"),
    _marian_layer_rule("self_attn.qkv.{p}", "self_attn.qkv_proj.{p}"),
    _marian_layer_rule("self_attn.out_proj.{p}", "self_attn.out_proj.{p}"),
    _marian_layer_rule("self_attn_layer_norm.{p}", "self_attn_norm.{p}"),
    _marian_layer_rule("encoder_attn.q_proj.{p}", "cross_attn.q_proj.{p}"),
    _marian_layer_rule("encoder_attn.kv.{p}", "cross_attn.kv_proj.{p}"),
    _marian_layer_rule("encoder_attn.out_proj.{p}", "cross_attn.out_proj.{p}"),
    _marian_layer_rule("encoder_attn_layer_norm.{p}", "cross_attn_norm.{p}"),
    _marian_layer_rule("fc1.{p}", "feed_forward.fc1.{p}"),
    _marian_layer_rule("fc2.{p}", "feed_forward.fc2.{p}"),
    _marian_layer_rule("final_layer_norm.{p}", "feed_forward_norm.{p}"),
    Rule("lm_head.weight", "lm_head.weight"),
    Rule("final_logits_bias", "final_logits_bias"),
]
MARIAN_QKV = (
    (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn.qkv"),
    (("encoder_attn.k_proj", "encoder_attn.v_proj"), "encoder_attn.kv"),
)

# Tensors the reference classes compute themselves rather than learn (causal-mask tables, Marian's
# sinusoid tables): skipped when converting from the reference, and taken from a freshly built
# reference model when converting to it, together with Marian's logits bias when ours has none (a
# zero bias is no bias).
_COMPUTED_REFERENCE_KEYS = re.compile(r".*\.attn\.(bias|masked_bias)|.*\.embed_positions\.weight")
_REFERENCE_DEFAULT_KEYS = re.compile(f"{_COMPUTED_REFERENCE_KEYS.pattern}|final_logits_bias")


def fuse_projections(
    state_dict: dict[str, torch.Tensor], parts: tuple[str, ...], fused: str
) -> dict[str, torch.Tensor]:
    """Stack separate projections (e.g. W_Q, W_K, W_V) into one tensor under the name `fused`."""
    result = {}
    for name, tensor in state_dict.items():
        for index, part in enumerate(parts):
            if f".{part}." in name:
                if index == 0:
                    pieces = [state_dict[name.replace(f".{part}.", f".{p}.")] for p in parts]
                    result[name.replace(f".{part}.", f".{fused}.")] = torch.cat(pieces, dim=0)
                break
        else:
            result[name] = tensor
    return result


def split_projections(
    state_dict: dict[str, torch.Tensor], parts: tuple[str, ...], fused: str
) -> dict[str, torch.Tensor]:
    """The inverse of `fuse_projections`: equal row blocks of the fused tensor under `parts`."""
    result = {}
    for name, tensor in state_dict.items():
        if f".{fused}." in name:
            for part, piece in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
                result[name.replace(f".{fused}.", f".{part}.")] = piece.contiguous()
        else:
            result[name] = tensor
    return result


def _rename(
    state_dict: dict[str, torch.Tensor], rules: list[Rule], to_reference: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The renamed (and, where the rule says, transposed) tensors, and the names no rule covers."""
    converted, unplaced = {}, []
    for name, tensor in state_dict.items():
        if not to_reference and _COMPUTED_REFERENCE_KEYS.fullmatch(name):
            continue
        for rule in rules:
            source, target = (
                (rule.ours, rule.reference) if to_reference else (rule.reference, rule.ours)
            )
            match = _pattern(source).fullmatch(name)
            if match:
                converted[target.format(**match.groupdict())] = (
                    tensor.t().contiguous() if rule.transpose else tensor
                )
                break
        else:
            unplaced.append(name)
    return converted, unplaced


def rename_state_dict(
    state_dict: dict[str, torch.Tensor], rules: list[Rule], to_reference: bool = False
) -> dict[str, torch.Tensor]:
    """Rename every tensor, reference -> ours, or ours -> reference with `to_reference=True`.
    Raises ValueError listing the tensors that no rule covers."""
    converted, unplaced = _rename(state_dict, rules, to_reference)
    if unplaced:
        raise ValueError(f"no conversion rule for these tensors: {unplaced}")
    return converted


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------

# transformers' OpenAI GPT maps its `afn="gelu"` to the tanh approximation (gelu_new).
_OPENAI_ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "swish"}
_SHARED_CONFIG_FIELDS = (
    "id2label",
    "label2id",
    "problem_type",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


def gpt_config_from_reference(reference) -> ScratchGPTConfig:
    """ScratchGPTConfig with the sizes, dropouts and layout of an OpenAIGPTConfig or a
    GPT2Config."""
    is_gpt2 = reference.model_type == "gpt2"
    if is_gpt2:
        activation = reference.activation_function
        intermediate = reference.n_inner or 4 * reference.n_embd
    else:
        activation = _OPENAI_ACTIVATIONS[reference.afn]
        intermediate = 4 * reference.n_embd
    return ScratchGPTConfig(
        vocab_size=reference.vocab_size,
        max_position_embeddings=reference.n_positions,
        hidden_size=reference.n_embd,
        num_hidden_layers=reference.n_layer,
        num_attention_heads=reference.n_head,
        intermediate_size=intermediate,
        hidden_act=activation,
        hidden_dropout_prob=reference.resid_pdrop,
        embedding_dropout_prob=reference.embd_pdrop,
        attention_probs_dropout_prob=reference.attn_pdrop,
        layer_norm_eps=reference.layer_norm_epsilon,
        initializer_range=reference.initializer_range,
        norm_first=is_gpt2,
        classifier_dropout=reference.summary_first_dropout,
        tie_word_embeddings=reference.tie_word_embeddings,
        **{name: getattr(reference, name) for name in _SHARED_CONFIG_FIELDS},
    )


def gpt_config_to_reference(config: ScratchGPTConfig) -> OpenAIGPTConfig | GPT2Config:
    """The reference config: GPT2Config for the GPT-2 layout, OpenAIGPTConfig for the GPT-1
    layout."""
    common = dict(
        vocab_size=config.vocab_size,
        n_positions=config.max_position_embeddings,
        n_embd=config.hidden_size,
        n_layer=config.num_hidden_layers,
        n_head=config.num_attention_heads,
        resid_pdrop=config.hidden_dropout_prob,
        embd_pdrop=config.embedding_dropout_prob,
        attn_pdrop=config.attention_probs_dropout_prob,
        layer_norm_epsilon=config.layer_norm_eps,
        initializer_range=config.initializer_range,
        summary_first_dropout=config.classifier_dropout,
        tie_word_embeddings=config.tie_word_embeddings,
        **{name: getattr(config, name) for name in _SHARED_CONFIG_FIELDS},
    )
    if config.norm_first:
        return GPT2Config(
            n_inner=config.intermediate_size, activation_function=config.hidden_act, **common
        )
    afn = {ours: theirs for theirs, ours in _OPENAI_ACTIVATIONS.items()}.get(config.hidden_act)
    if afn is None or config.intermediate_size != 4 * config.hidden_size:
        raise ValueError(
            "OpenAI GPT has a 4 * hidden_size feed-forward with gelu_new/relu/silu; this model "
            f"has intermediate_size={config.intermediate_size}, hidden_act={config.hidden_act!r}"
        )
    return OpenAIGPTConfig(afn=afn, **common)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

_BERT_SHARED_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "classifier_dropout",
    "tie_word_embeddings", *_SHARED_CONFIG_FIELDS,
)  # fmt: skip


def bert_config_from_reference(reference) -> ScratchBertConfig:
    """The field names are the same in both: copy them."""
    return ScratchBertConfig(**{name: getattr(reference, name) for name in _BERT_SHARED_FIELDS})


def bert_config_to_reference(config: ScratchBertConfig) -> BertConfig:
    return BertConfig(**{name: getattr(config, name) for name in _BERT_SHARED_FIELDS})


def marian_config_from_reference(reference: MarianConfig) -> ScratchTransformerConfig:
    """The Transformer with Marian's options. Marian's `activation_dropout` (0 in the opus-mt
    checkpoints) has no counterpart and only matters in training; its loss has no label smoothing,
    so neither has the converted model's (set `label_smoothing` to fine-tune as the paper does)."""
    for encoder_field, decoder_field in (
        ("encoder_attention_heads", "decoder_attention_heads"),
        ("encoder_ffn_dim", "decoder_ffn_dim"),
    ):
        if getattr(reference, encoder_field) != getattr(reference, decoder_field):
            raise ValueError(
                f"the encoder and decoder must agree: {encoder_field}="
                f"{getattr(reference, encoder_field)}, {decoder_field}="
                f"{getattr(reference, decoder_field)}"
            )
    return ScratchTransformerConfig(
        vocab_size=reference.vocab_size,
        decoder_vocab_size=reference.decoder_vocab_size,
        share_embeddings=reference.share_encoder_decoder_embeddings,
        max_position_embeddings=reference.max_position_embeddings,
        hidden_size=reference.d_model,
        encoder_layers=reference.encoder_layers,
        decoder_layers=reference.decoder_layers,
        num_attention_heads=reference.encoder_attention_heads,
        intermediate_size=reference.encoder_ffn_dim,
        hidden_act=reference.activation_function,
        hidden_dropout_prob=reference.dropout,
        attention_probs_dropout_prob=reference.attention_dropout,
        label_smoothing=0.0,
        scale_embedding=reference.scale_embedding,
        sinusoid_layout="halves",
        add_final_logits_bias=True,
        init_std=reference.init_std,
        tie_word_embeddings=reference.tie_word_embeddings,
        decoder_start_token_id=reference.decoder_start_token_id,
        **{name: getattr(reference, name) for name in _SHARED_CONFIG_FIELDS},
    )


def marian_config_to_reference(config: ScratchTransformerConfig) -> MarianConfig:
    if config.sinusoid_layout != "halves" or config.norm_first or config.layer_norm_eps != 1e-5:
        raise ValueError(
            "Marian has sines-then-cosines positions, post-LN blocks and LayerNorm eps 1e-5; this "
            f"model has sinusoid_layout={config.sinusoid_layout!r}, norm_first={config.norm_first}"
            f", layer_norm_eps={config.layer_norm_eps}"
        )
    return MarianConfig(
        vocab_size=config.vocab_size,
        decoder_vocab_size=config.decoder_vocab_size,
        share_encoder_decoder_embeddings=config.share_embeddings,
        max_position_embeddings=config.max_position_embeddings,
        d_model=config.hidden_size,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.num_attention_heads,
        decoder_attention_heads=config.num_attention_heads,
        encoder_ffn_dim=config.intermediate_size,
        decoder_ffn_dim=config.intermediate_size,
        activation_function=config.hidden_act,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        scale_embedding=config.scale_embedding,
        init_std=config.init_std or config.hidden_size**-0.5,
        tie_word_embeddings=config.tie_word_embeddings,
        decoder_start_token_id=config.decoder_start_token_id,
        **{name: getattr(config, name) for name in _SHARED_CONFIG_FIELDS},
    )


@dataclass(frozen=True)
class Family:
    """How one reference family converts: tensor names, configs, and the groups of projections
    (e.g. W_Q, W_K, W_V) that ours stacks into one tensor."""

    rules: list[Rule]
    config_from_reference: Callable
    config_to_reference: Callable
    fused: tuple[tuple[tuple[str, ...], str], ...] = ()


OPENAI_GPT = Family(OPENAI_GPT_RULES, gpt_config_from_reference, gpt_config_to_reference)
GPT2 = Family(GPT2_RULES, gpt_config_from_reference, gpt_config_to_reference)
BERT = Family(BERT_RULES, bert_config_from_reference, bert_config_to_reference, (BERT_QKV,))
MARIAN = Family(MARIAN_RULES, marian_config_from_reference, marian_config_to_reference, MARIAN_QKV)

# reference architecture -> (our class, family)
_FROM_REFERENCE = {
    "OpenAIGPTModel": (ScratchGPTModel, OPENAI_GPT),
    "OpenAIGPTLMHeadModel": (ScratchGPTLMHeadModel, OPENAI_GPT),
    "OpenAIGPTDoubleHeadsModel": (ScratchGPTForMultipleChoice, OPENAI_GPT),
    "OpenAIGPTForSequenceClassification": (ScratchGPTForSequenceClassification, OPENAI_GPT),
    "GPT2Model": (ScratchGPTModel, GPT2),
    "GPT2LMHeadModel": (ScratchGPTLMHeadModel, GPT2),
    "GPT2DoubleHeadsModel": (ScratchGPTForMultipleChoice, GPT2),
    "GPT2ForSequenceClassification": (ScratchGPTForSequenceClassification, GPT2),
    "BertModel": (ScratchBertModel, BERT),
    "BertForPreTraining": (ScratchBertForPreTraining, BERT),
    "BertForMaskedLM": (ScratchBertForMaskedLM, BERT),
    "BertForNextSentencePrediction": (ScratchBertForNextSentencePrediction, BERT),
    "BertForSequenceClassification": (ScratchBertForSequenceClassification, BERT),
    "BertForTokenClassification": (ScratchBertForTokenClassification, BERT),
    "BertForQuestionAnswering": (ScratchBertForQuestionAnswering, BERT),
    "BertForMultipleChoice": (ScratchBertForMultipleChoice, BERT),
    "MarianModel": (ScratchTransformerModel, MARIAN),
    "MarianMTModel": (ScratchTransformerForConditionalGeneration, MARIAN),
}
_DEFAULT_ARCHITECTURE = {
    "openai-gpt": "OpenAIGPTLMHeadModel",
    "gpt2": "GPT2LMHeadModel",
    "bert": "BertForPreTraining",
    "marian": "MarianMTModel",
}


def _untie(model: PreTrainedModel, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the aliases of tied weights (e.g. lm_head.weight = the token
    embedding), as `save_pretrained` writes it: the other side may not have the alias at all."""
    aliases = set(model.all_tied_weights_keys)
    return {name: tensor for name, tensor in state_dict.items() if name not in aliases}


def _load_strict(model: PreTrainedModel, state_dict: dict[str, torch.Tensor]) -> None:
    """load_state_dict that reports every missing, unexpected or mis-shaped tensor as a ValueError.
    Tied aliases are filled from the tensor they alias."""
    state_dict = dict(state_dict)
    tied = model.all_tied_weights_keys.items()
    for alias, source in tied:  # first the tensors aliased, from any alias present ...
        if source not in state_dict and alias in state_dict:
            state_dict[source] = state_dict[alias]
    for alias, source in tied:  # ... then every alias from its tensor
        state_dict.setdefault(alias, state_dict.get(source))
    state_dict = {name: tensor for name, tensor in state_dict.items() if tensor is not None}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{name}: {tuple(state_dict[name].shape)} vs {tuple(expected[name].shape)}"
        for name in sorted(set(expected) & set(state_dict))
        if state_dict[name].shape != expected[name].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint does not fit {type(model).__name__}: missing {missing}, "
            f"unexpected {unexpected}, shape mismatch {mismatched}"
        )
    model.load_state_dict(state_dict, strict=True)


def _copy_generation_config(source: PreTrainedModel, destination: PreTrainedModel) -> None:
    """Decoding settings (beams, forced EOS, banned tokens, lengths) go with the weights."""
    if source.can_generate() and destination.can_generate():
        destination.generation_config = copy.deepcopy(source.generation_config)


def from_reference(reference_model: PreTrainedModel) -> PreTrainedModel:
    """Our model with the weights of a transformers reference model (OpenAI GPT, GPT-2, BERT)."""
    architecture = type(reference_model).__name__
    if architecture not in _FROM_REFERENCE:
        raise ValueError(f"cannot convert {architecture}; supported: {sorted(_FROM_REFERENCE)}")
    model_class, family = _FROM_REFERENCE[architecture]
    model = model_class(family.config_from_reference(reference_model.config))
    state_dict = _untie(reference_model, reference_model.state_dict())
    for parts, fused in family.fused:
        state_dict = fuse_projections(state_dict, parts, fused)
    _load_strict(model, rename_state_dict(state_dict, family.rules))
    _copy_generation_config(reference_model, model)
    return model.to(reference_model.dtype).eval()


def to_reference(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers reference model with our model's weights: for GPT, the OpenAI GPT class in
    the GPT-1 layout and the GPT-2 class in the GPT-2 layout."""
    for architecture, (model_class, family) in _FROM_REFERENCE.items():
        if type(model).__name__ != model_class.__name__:
            continue
        reference_config = family.config_to_reference(model.config)
        reference_class = getattr(transformers, architecture)
        if reference_class.config_class.model_type != reference_config.model_type:
            continue
        reference_model = reference_class(reference_config)
        state_dict = rename_state_dict(_untie(model, model.state_dict()), family.rules, True)
        for parts, fused in family.fused:
            state_dict = split_projections(state_dict, parts, fused)
        for name, tensor in reference_model.state_dict().items():
            if _REFERENCE_DEFAULT_KEYS.fullmatch(name):
                state_dict.setdefault(name, tensor)
        _load_strict(reference_model, state_dict)
        _copy_generation_config(model, reference_model)
        return reference_model.to(model.dtype).eval()
    raise ValueError(f"no reference class for {type(model).__name__}")


@dataclass
class LoadReport:
    """What a checkpoint held that the model did not use."""

    unexpected: list[str]


_LEGACY_LAYER_NORM = re.compile(r"(.*LayerNorm)\.(gamma|beta)")


def load_bert_checkpoint(folder: str | Path) -> tuple[ScratchBertModel, LoadReport]:
    """A published BERT checkpoint folder (config.json + model.safetensors, e.g. `BertModel` or
    `BertForPreTraining` weights) read straight into `ScratchBertModel`, without transformers' BERT
    classes.

    Old TensorFlow-era names (`LayerNorm.gamma` / `LayerNorm.beta`) are accepted. Tensors of heads
    the base model does not have (`cls.*`) are returned in the report as unexpected. A tensor the
    model needs and the file lacks, or one of the wrong shape, raises a ValueError naming the file
    and the tensors: nothing is left randomly initialised. Pickle weights (`pytorch_model.bin`) are
    refused; convert them with transformers first.
    """
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        found = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        raise ValueError(
            f"{weights} not found (the folder holds {found}); only safetensors are read"
        )
    config = bert_config_from_reference(BertConfig.from_pretrained(folder))
    state_dict = {}
    for name, tensor in load_file(weights).items():
        name = _LEGACY_LAYER_NORM.sub(
            lambda m: f"{m[1]}.{'weight' if m[2] == 'gamma' else 'bias'}", name
        )
        state_dict[name.removeprefix("bert.")] = tensor
    encoder_parts = ("embeddings.", "encoder.", "pooler.")
    heads = [name for name in state_dict if not name.startswith(encoder_parts)]
    encoder = {name: tensor for name, tensor in state_dict.items() if name not in heads}
    converted, unplaced = _rename(fuse_projections(encoder, *BERT_QKV), BERT.rules, False)
    model = ScratchBertModel(config)
    try:
        _load_strict(model, converted)
    except ValueError as error:
        raise ValueError(f"{weights}: {error}") from None
    return model.eval(), LoadReport(unexpected=sorted(heads + unplaced))


# --------------------------------------------------------------------------------------------------
# Folders and the command line
# --------------------------------------------------------------------------------------------------

_TOKENIZER_FILES = re.compile(
    r"(tokenizer.*\.json|special_tokens_map\.json|added_tokens\.json|vocab.*|merges\.txt|.*\.spm|.*\.model)$"
)


def _copy_tokenizer_files(source: Path, destination: Path) -> list[str]:
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and _TOKENIZER_FILES.fullmatch(path.name):
            shutil.copy2(path, destination / path.name)
            copied.append(path.name)
    return copied


def convert_folder(
    source: str | Path, destination: str | Path, to_hf: bool = False
) -> PreTrainedModel:
    """Convert a checkpoint folder in either direction; returns the converted model."""
    source, destination = Path(source), Path(destination)
    config_path = source / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{source} has no config.json")
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    if to_hf:
        if not config.get("model_type", "").startswith("hf_scratch"):
            raise ValueError(
                f"{source} is not an hf_scratch checkpoint "
                f"(model_type {config.get('model_type')!r})"
            )
        our_classes = {
            model_class.__name__: model_class for model_class, _ in _FROM_REFERENCE.values()
        }
        name = architectures[0] if architectures else None
        if name not in our_classes:
            raise ValueError(f"cannot convert {name}; supported: {sorted(our_classes)}")
        model = our_classes[name].from_pretrained(source)
        converted = to_reference(model)
    else:
        model_type = config.get("model_type")
        if model_type not in _DEFAULT_ARCHITECTURE:
            raise ValueError(
                f"unsupported model_type {model_type!r}; supported: {sorted(_DEFAULT_ARCHITECTURE)}"
            )
        architecture = architectures[0] if architectures else _DEFAULT_ARCHITECTURE[model_type]
        reference = getattr(transformers, architecture).from_pretrained(source)
        converted = from_reference(reference)
    destination.mkdir(parents=True, exist_ok=True)
    converted.save_pretrained(destination)
    _copy_tokenizer_files(source, destination)
    return converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-scratch-convert",
        description="Convert GPT, GPT-2, BERT and Marian checkpoints to and from hf_scratch.",
    )
    parser.add_argument("source", help="checkpoint folder with config.json and weights")
    parser.add_argument("destination", help="folder to write the converted checkpoint to")
    parser.add_argument(
        "--to-hf", action="store_true", help="convert an hf_scratch folder to transformers"
    )
    args = parser.parse_args(argv)
    try:
        model = convert_folder(args.source, args.destination, to_hf=args.to_hf)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {type(model).__name__} to {args.destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
