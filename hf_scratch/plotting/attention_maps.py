"""The attention probabilities a model computes for one input, per kind of attention, each
(L, H, T_query, T_key): "self-attention (causal)" for a decoder-only model (GPT), "self-attention"
for an encoder (BERT), and "encoder self-attention", "decoder self-attention", "cross-attention"
for an encoder-decoder (the Transformer). Only the output fields are read, so a model loaded with
`trust_remote_code=True` works as well."""

import inspect
from collections.abc import Sequence
from typing import Any

import torch

CAUSAL_SELF_ATTENTION = "self-attention (causal)"
SELF_ATTENTION = "self-attention"
ENCODER_SELF_ATTENTION = "encoder self-attention"
DECODER_SELF_ATTENTION = "decoder self-attention"
CROSS_ATTENTION = "cross-attention"


def _first_sequence(layers: Sequence[torch.Tensor] | None, field: str) -> torch.Tensor:
    """A tuple of L tensors (B, H, T_q, T_k) -> batch element 0 as one float32 CPU tensor
    (L, H, T_q, T_k)."""
    if not layers or any(weights is None for weights in layers):
        raise ValueError(
            f"the model returned no `{field}` with output_attentions=True; its attention "
            "implementation may not form the probabilities"
        )
    return torch.stack([weights[0] for weights in layers]).detach().float().cpu()


def _is_causal(weights: torch.Tensor) -> bool:
    """Whether (L, H, T, T) weights put nothing above the diagonal: a causal mask's exact zeros (a
    softmax over unmasked scores is never exactly 0)."""
    T_query, T_key = weights.shape[-2:]
    if T_query != T_key or T_query < 2:
        return False
    return bool((torch.triu(weights, diagonal=1) == 0).all())


def attention_maps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **inputs: Any,
) -> dict[str, torch.Tensor]:
    """Run `model` once (eval mode, no gradients, `output_attentions=True`) and return the attention
    probabilities of the first sequence of the batch, per kind, each (L, H, T_query, T_key) in
    float32 on the CPU.

    `inputs` are further forward arguments: an encoder-decoder needs `decoder_input_ids` (or
    `labels`). The kinds are read from the output fields: `cross_attentions` (with
    `encoder_attentions` and `decoder_attentions`) mean an encoder-decoder; otherwise `attentions`
    is a self-attention, "causal" when every weight above the diagonal is zero. Models running
    "sdpa" compute these calls with the eager formula (the fused kernel forms no probabilities); the
    model's setting is left as it was, and so is its training mode."""
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]  # (T,) -> (1, T)
        if attention_mask is not None and attention_mask.dim() == 1:
            attention_mask = attention_mask[None, :]
    device = next(model.parameters()).device
    inputs = {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in inputs.items()
    }
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(input_ids=input_ids.to(device), output_attentions=True, **inputs)
    finally:
        model.train(was_training)
    if isinstance(outputs, tuple):
        raise TypeError("attention_maps needs a model that returns a ModelOutput, not a tuple")

    if getattr(outputs, "cross_attentions", None) is not None:
        return {
            ENCODER_SELF_ATTENTION: _first_sequence(
                outputs.encoder_attentions, "encoder_attentions"
            ),
            DECODER_SELF_ATTENTION: _first_sequence(
                outputs.decoder_attentions, "decoder_attentions"
            ),
            CROSS_ATTENTION: _first_sequence(outputs.cross_attentions, "cross_attentions"),
        }
    weights = _first_sequence(getattr(outputs, "attentions", None), "attentions")
    return {CAUSAL_SELF_ATTENTION if _is_causal(weights) else SELF_ATTENTION: weights}


def _token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """One readable label per id: the token as text, whitespace-only tokens quoted."""
    labels = []
    for token_id in ids:
        text = tokenizer.decode([int(token_id)])
        labels.append(text.strip() or repr(text))
    return labels


def _forward_arguments(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _decoder_start_token_id(model: torch.nn.Module) -> int:
    for config in (model.config, getattr(model, "generation_config", None)):
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ValueError("the model's config sets no decoder_start_token_id")


def text_attention_maps(
    model: torch.nn.Module,
    tokenizer: Any,
    text: str,
    target_text: str | None = None,
    max_length: int = 64,
    max_new_tokens: int = 20,
) -> tuple[dict[str, torch.Tensor], list[str], list[str] | None]:
    """`attention_maps` for one text: returns the maps, the labels of the input tokens and, for an
    encoder-decoder, the labels of the decoder's tokens (else None).

    `text` is truncated to `max_length` tokens (at most the model's positions). For an
    encoder-decoder, `text` is the source and the decoder reads [decoder start] + the target
    tokens: those of `target_text`, or, when it is None, a target of up to `max_new_tokens`
    generated greedily."""
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    accepted = _forward_arguments(model)
    inputs = {
        key: value
        for key, value in encoded.items()
        if key in ("input_ids", "attention_mask") or key in accepted
    }
    input_ids = inputs.pop("input_ids")  # (1, S)
    source_labels = _token_labels(tokenizer, input_ids[0].tolist())
    if not getattr(model.config, "is_encoder_decoder", False):
        return attention_maps(model, input_ids, **inputs), source_labels, None

    device = next(model.parameters()).device
    if target_text is None:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                generated = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=inputs.get("attention_mask", torch.ones_like(input_ids)).to(
                        device
                    ),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )  # (1, 1 + new tokens): starts with the decoder start token
        finally:
            model.train(was_training)
        decoder_input_ids = generated.cpu()
    else:
        target = tokenizer(
            text_target=target_text, return_tensors="pt", truncation=True, max_length=max_length
        )["input_ids"]  # (1, T)
        start = torch.full((1, 1), _decoder_start_token_id(model), dtype=target.dtype)
        decoder_input_ids = torch.cat([start, target], dim=1)  # (1, 1 + T)
    maps = attention_maps(model, input_ids, decoder_input_ids=decoder_input_ids, **inputs)
    return maps, source_labels, _token_labels(tokenizer, decoder_input_ids[0].tolist())
