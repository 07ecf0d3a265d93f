"""Renaming a state dict between the reference's tensor names and ours: rules written as name
templates, projections stacked into one tensor or split again, and a report of what no rule
covers (nothing is dropped silently)."""

import re
from dataclasses import dataclass

import torch

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


# Tensors the reference classes compute themselves rather than learn (causal-mask tables, Marian's
# sinusoid tables): skipped when converting from the reference, and taken from a freshly built
# reference model when converting to it, together with Marian's logits bias when ours has none (a
# zero bias is no bias).
COMPUTED_REFERENCE_KEYS = re.compile(r".*\.attn\.(bias|masked_bias)|.*\.embed_positions\.weight")
REFERENCE_DEFAULT_KEYS = re.compile(f"{COMPUTED_REFERENCE_KEYS.pattern}|final_logits_bias")


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


def rename_tensors(
    state_dict: dict[str, torch.Tensor], rules: list[Rule], to_reference: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The renamed (and, where the rule says, transposed) tensors, and the names no rule covers."""
    converted, unplaced = {}, []
    for name, tensor in state_dict.items():
        if not to_reference and COMPUTED_REFERENCE_KEYS.fullmatch(name):
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
    converted, unplaced = rename_tensors(state_dict, rules, to_reference)
    if unplaced:
        raise ValueError(f"no conversion rule for these tensors: {unplaced}")
    return converted
