"""The reference families and the registry of which transformers class converts to which of ours
(`FROM_REFERENCE`), with the conversions of a loaded model both ways (`from_reference`,
`to_reference`) and of a plain BERT folder (`load_bert_checkpoint`), all through the same rules.
Loading is strict: every tensor placed, none missing, none of another shape."""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import BertConfig, PreTrainedModel

from ..modeling_bert import (
    ScratchBertForMaskedLM,
    ScratchBertForMultipleChoice,
    ScratchBertForNextSentencePrediction,
    ScratchBertForPreTraining,
    ScratchBertForQuestionAnswering,
    ScratchBertForSequenceClassification,
    ScratchBertForTokenClassification,
    ScratchBertModel,
)
from ..modeling_gpt import (
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
)
from ..modeling_transformer import (
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
)
from .configs import (
    bert_config_from_reference,
    bert_config_to_reference,
    gpt_config_from_reference,
    gpt_config_to_reference,
    marian_config_from_reference,
    marian_config_to_reference,
)
from .renaming import (
    REFERENCE_DEFAULT_KEYS,
    Rule,
    fuse_projections,
    rename_state_dict,
    rename_tensors,
    split_projections,
)
from .rules import BERT_QKV, BERT_RULES, GPT2_RULES, MARIAN_QKV, MARIAN_RULES, OPENAI_GPT_RULES


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
FROM_REFERENCE = {
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
DEFAULT_ARCHITECTURE = {
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


def load_strict(model: PreTrainedModel, state_dict: dict[str, torch.Tensor]) -> None:
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


def _our_state_dict(family: Family, state_dict: dict[str, torch.Tensor]):
    """A reference state dict in our names: projections stacked, then renamed. Returns the tensors
    and the names no rule covers."""
    for parts, fused in family.fused:
        state_dict = fuse_projections(state_dict, parts, fused)
    return rename_tensors(state_dict, family.rules, to_reference=False)


def from_reference(reference_model: PreTrainedModel) -> PreTrainedModel:
    """Our model with the weights of a transformers reference model: OpenAI GPT, GPT-2, BERT or
    Marian, any of the classes of `FROM_REFERENCE`. Generation settings come along."""
    architecture = type(reference_model).__name__
    if architecture not in FROM_REFERENCE:
        raise ValueError(f"cannot convert {architecture}; supported: {sorted(FROM_REFERENCE)}")
    model_class, family = FROM_REFERENCE[architecture]
    model = model_class(family.config_from_reference(reference_model.config))
    state_dict, unplaced = _our_state_dict(
        family, _untie(reference_model, reference_model.state_dict())
    )
    if unplaced:
        raise ValueError(f"no conversion rule for these tensors: {unplaced}")
    load_strict(model, state_dict)
    _copy_generation_config(reference_model, model)
    return model.to(reference_model.dtype).eval()


def to_reference(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers reference model with our model's weights: for GPT, the OpenAI GPT class in
    the GPT-1 layout and the GPT-2 class in the GPT-2 layout."""
    for architecture, (model_class, family) in FROM_REFERENCE.items():
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
            if REFERENCE_DEFAULT_KEYS.fullmatch(name):
                state_dict.setdefault(name, tensor)
        load_strict(reference_model, state_dict)
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
    `BertForPreTraining` weights) read into `ScratchBertModel` by the BERT family's rules, the
    path `from_reference` takes, without building transformers' BERT classes.

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
    model_class, family = FROM_REFERENCE["BertModel"]
    config = family.config_from_reference(BertConfig.from_pretrained(folder))
    state_dict = {}
    for name, tensor in load_file(weights).items():
        name = _LEGACY_LAYER_NORM.sub(
            lambda m: f"{m[1]}.{'weight' if m[2] == 'gamma' else 'bias'}", name
        )
        state_dict[name.removeprefix("bert.")] = tensor
    encoder_parts = ("embeddings.", "encoder.", "pooler.")
    heads = [name for name in state_dict if not name.startswith(encoder_parts)]
    encoder = {name: tensor for name, tensor in state_dict.items() if name not in heads}
    converted, unplaced = _our_state_dict(family, encoder)
    model = model_class(config)
    try:
        load_strict(model, converted)
    except ValueError as error:
        raise ValueError(f"{weights}: {error}") from None
    return model.eval(), LoadReport(unexpected=sorted(heads + unplaced))
