"""Weight converters between hf_scratch and the Hugging Face reference implementations.

    python -m hf_scratch.convert SRC_DIR DST_DIR          # a transformers checkpoint -> hf_scratch
    python -m hf_scratch.convert --to-hf SRC_DIR DST_DIR  # an hf_scratch folder -> transformers
    (also installed as the console script `hf-scratch-convert`)

The architecture is read from the source folder's `config.json` (`model_type` and `architectures`).
The output is written with `save_pretrained` (safetensors); an hf_scratch folder carries its source
files and an `auto_map`, so it loads with `trust_remote_code=True` where hf_scratch is not
installed. Tokenizer files are copied along.

Supported: OpenAI GPT (`OpenAIGPTModel`, `OpenAIGPTLMHeadModel`, `OpenAIGPTDoubleHeadsModel`,
`OpenAIGPTForSequenceClassification`) and GPT-2 (`GPT2Model`, `GPT2LMHeadModel`,
`GPT2DoubleHeadsModel`, `GPT2ForSequenceClassification`), which become hf_scratch GPT in the GPT-1
layout or the GPT-2 layout (`norm_first=True`). OpenAI's `Conv1D` layers store their weights as (in,
out) and are transposed; their fused c_attn [W_Q | W_K | W_V] is exactly our `qkv_proj` once
transposed.

Converting a state dict renames every tensor by the rules below and fails with the list of tensors
it could not place: nothing is dropped or initialised silently.
"""

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, OpenAIGPTConfig, PreTrainedModel

from .configuration_gpt import ScratchGPTConfig
from .modeling_gpt import (
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
)

# --------------------------------------------------------------------------------------------------
# Renaming rules
# --------------------------------------------------------------------------------------------------


# Placeholders in the name templates: {prefix} is a head's "transformer." (empty in a bare base
# model), {i} a layer index, {p} "weight" or "bias".
_PLACEHOLDERS = {
    "prefix": r"(?P<prefix>(?:transformer\.)?)",
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

# Buffers of the reference classes that are not weights (causal-mask tables).
_IGNORED_REFERENCE_KEYS = re.compile(r".*\.attn\.(bias|masked_bias)")


def rename_state_dict(
    state_dict: dict[str, torch.Tensor], rules: list[Rule], to_reference: bool = False
) -> dict[str, torch.Tensor]:
    """Rename (and transpose where the rule says) every tensor, reference -> ours, or ours ->
    reference with `to_reference=True`. Raises ValueError listing the tensors that no rule
    covers."""
    converted, unplaced = {}, []
    for name, tensor in state_dict.items():
        if not to_reference and _IGNORED_REFERENCE_KEYS.fullmatch(name):
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

# reference architecture -> (our class, renaming rules)
_FROM_REFERENCE = {
    "OpenAIGPTModel": (ScratchGPTModel, OPENAI_GPT_RULES),
    "OpenAIGPTLMHeadModel": (ScratchGPTLMHeadModel, OPENAI_GPT_RULES),
    "OpenAIGPTDoubleHeadsModel": (ScratchGPTForMultipleChoice, OPENAI_GPT_RULES),
    "OpenAIGPTForSequenceClassification": (ScratchGPTForSequenceClassification, OPENAI_GPT_RULES),
    "GPT2Model": (ScratchGPTModel, GPT2_RULES),
    "GPT2LMHeadModel": (ScratchGPTLMHeadModel, GPT2_RULES),
    "GPT2DoubleHeadsModel": (ScratchGPTForMultipleChoice, GPT2_RULES),
    "GPT2ForSequenceClassification": (ScratchGPTForSequenceClassification, GPT2_RULES),
}
_DEFAULT_ARCHITECTURE = {"openai-gpt": "OpenAIGPTLMHeadModel", "gpt2": "GPT2LMHeadModel"}
_CONFIG_FROM_REFERENCE = {
    "openai-gpt": gpt_config_from_reference,
    "gpt2": gpt_config_from_reference,
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
    for alias, source in model.all_tied_weights_keys.items():
        if alias not in state_dict and source in state_dict:
            state_dict[alias] = state_dict[source]
        elif source not in state_dict and alias in state_dict:
            state_dict[source] = state_dict[alias]
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


def from_reference(reference_model: PreTrainedModel) -> PreTrainedModel:
    """Our model with the weights of a transformers reference model (OpenAI GPT or GPT-2
    classes)."""
    architecture = type(reference_model).__name__
    if architecture not in _FROM_REFERENCE:
        raise ValueError(f"cannot convert {architecture}; supported: {sorted(_FROM_REFERENCE)}")
    model_class, rules = _FROM_REFERENCE[architecture]
    config = _CONFIG_FROM_REFERENCE[reference_model.config.model_type](reference_model.config)
    model = model_class(config)
    _load_strict(
        model, rename_state_dict(_untie(reference_model, reference_model.state_dict()), rules)
    )
    return model.to(reference_model.dtype).eval()


def to_reference(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers reference model (OpenAI GPT or GPT-2 class) with our model's weights."""
    reference_config = gpt_config_to_reference(model.config)
    prefix = "GPT2" if reference_config.model_type == "gpt2" else "OpenAIGPT"
    for architecture, (model_class, rules) in _FROM_REFERENCE.items():
        if architecture.startswith(prefix) and type(model).__name__ == model_class.__name__:
            reference_model = getattr(transformers, architecture)(reference_config)
            _load_strict(
                reference_model, rename_state_dict(model.state_dict(), rules, to_reference=True)
            )
            return reference_model.to(model.dtype).eval()
    raise ValueError(f"no reference class for {type(model).__name__}")


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
        name = architectures[0] if architectures else "ScratchGPTLMHeadModel"
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
        description="Convert between transformers checkpoints (OpenAI GPT, GPT-2) and hf_scratch.",
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
