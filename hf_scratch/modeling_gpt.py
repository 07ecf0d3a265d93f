"""GPT: Radford, Narasimhan, Salimans and Sutskever 2018, "Improving Language Understanding by
Generative Pre-Training".

Notation: B batch, K sequences per example (choices / orderings), T sequence length, C hidden size
(d_model), V vocabulary, L layers, P positions.

Unsupervised pre-training (§3.1) maximises L1(U) = sum_i log P(u_i | u_{i-k}, ..., u_{i-1}) with a
multi-layer Transformer decoder:
    h_0 = U W_e + W_p,   h_l = transformer_block(h_{l-1}) for l = 1..n,   P(u) = softmax(h_n W_e^T),
where W_e is the token embedding, W_p the learned position embedding, and every block masks its
self-attention so that position i sees positions <= i.
Supervised fine-tuning (§3.2) reads the final state h_l^m at the last (extract) token:
P(y | x^1..x^m) = softmax(h_l^m W_y), L2 = sum log P(y | x), and optimises L3 = L2 + lambda * L1
with the language-modelling loss on the same inputs as an auxiliary objective (lambda =
`config.lm_loss_weight`). Task inputs (§3.3) are one contiguous token sequence with start, delimiter
and extract tokens (see `gpt_inputs.py`); the similarity task sums the h_l^m of both orderings, the
multiple-choice task softmaxes one score per answer.

Faithful to the paper and the OpenAI checkpoint: post-LN blocks (LayerNorm(x + Sublayer(x))), no
final LayerNorm, learned positions, GELU in its tanh form, output projection tied to W_e, N(0, 0.02)
init.

Differences from the paper:
- `config.norm_first=True` selects the GPT-2 layout instead (Radford et al. 2019): pre-LN blocks, a
  final LayerNorm, residual projections initialised with std / sqrt(2 L). It is an option, never
  the default.
- Losses are means over predicted tokens (the paper writes sums); the fine-tuning losses are the
  means of L2 and L1, combined as L2 + lambda * L1.
- Token type ids, when given, are embedded with W_e and added to h_0, as the OpenAI implementation
  does.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import ModelOutput, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .attention import causal_cache_mask
from .configuration_gpt import ScratchGPTConfig
from .layers import (
    LearnedPositionEmbedding,
    TransformerBlock,
    cache_switch,
    check_index_range,
    default_position_ids,
    embed_tokens,
    keep_positions,
    merge_choices,
    output_switches,
    run_blocks,
)
from .losses import causal_lm_loss, classification_loss
from .pretrained import ScratchGenerationMixin, ScratchPreTrainedModel


@dataclass
class ScratchGPTClassifierOutput(ModelOutput):
    """Output of the fine-tuning heads: `loss` = L3 = `classification_loss` + lambda * `lm_loss`.

    `logits` are the class scores (B, num_labels) or the choice scores (B, K); `lm_logits` the
    language model's (B, [K,] T, V), computed only when the auxiliary loss is.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    classification_loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    lm_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class ScratchGPTPreTrainedModel(ScratchPreTrainedModel):
    config_class = ScratchGPTConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True
    _input_embed_layer = "tokens_embed"
    auto_classes = {
        "AutoModel": "ScratchGPTModel",
        "AutoModelForCausalLM": "ScratchGPTLMHeadModel",
        "AutoModelForSequenceClassification": "ScratchGPTForSequenceClassification",
        "AutoModelForMultipleChoice": "ScratchGPTForMultipleChoice",
    }

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TransformerBlock) and self.config.norm_first:
            # GPT-2: each block adds two residual branches; scale their output projections by
            # 1 / sqrt(2 L) so the residual stream's variance does not grow with depth.
            std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(module.self_attn.out_proj.weight, mean=0.0, std=std)
            init.normal_(module.feed_forward.fc2.weight, mean=0.0, std=std)


class ScratchGPTModel(ScratchGPTPreTrainedModel):
    """The decoder stack: h_0 = U W_e + W_p, h_l = block(h_{l-1}); returns h_n (B, T, C)."""

    _auto_class = "AutoModel"

    def __init__(self, config: ScratchGPTConfig):
        super().__init__(config)
        self.tokens_embed = nn.Embedding(config.vocab_size, config.hidden_size)  # W_e
        self.positions_embed = LearnedPositionEmbedding(
            config.max_position_embeddings, config.hidden_size
        )  # W_p
        self.dropout = nn.Dropout(config.embedding_dropout_prob)
        self.layers = nn.ModuleList(
            TransformerBlock(config, is_causal=True, norm_first=config.norm_first, layer_idx=i)
            for i in range(config.num_hidden_layers)
        )
        # GPT-2 layout only: pre-LN leaves the last block's output unnormalised.
        self.final_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            if config.norm_first
            else None
        )
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        config = self.config
        output_attentions, output_hidden_states = output_switches(
            config, output_attentions, output_hidden_states
        )
        use_cache = cache_switch(config, use_cache, self.layers, self.training)
        inputs_embeds = embed_tokens(
            self.tokens_embed, input_ids, inputs_embeds
        )  # U W_e: (B, T, C)
        B, T, _ = inputs_embeds.shape
        if use_cache and cache is None:
            cache = DynamicCache(config=config)
        past_length = cache.get_seq_length() if cache is not None else 0
        # The caller's position ids (before the defaults below) may pack several sequences in a row.
        mask = causal_cache_mask(attention_mask, B, T, cache, past_length, position_ids)

        if position_ids is None:
            position_ids = default_position_ids(
                past_length, T, config.max_position_embeddings, inputs_embeds.device
            )
        hidden_states = inputs_embeds + self.positions_embed(position_ids)  # h_0 = U W_e + W_p
        if token_type_ids is not None:
            check_index_range(token_type_ids, config.vocab_size, "token_type_ids")
            hidden_states = hidden_states + self.tokens_embed(token_type_ids)
        hidden_states = self.dropout(hidden_states)

        hidden_states, all_hidden_states, all_attentions, _ = run_blocks(
            self.layers,
            hidden_states,
            attention_mask=mask,
            cache=cache if use_cache else None,
            final_norm=self.final_norm,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )

        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class ScratchGPTLMHeadModel(ScratchGPTPreTrainedModel, ScratchGenerationMixin):
    """The language model P(u) = softmax(h_n W_e^T) (§3.1), trained on L1 and used by
    `generate()`."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"lm_head.weight": "transformer.tokens_embed.weight"}

    def __init__(self, config: ScratchGPTConfig):
        super().__init__(config)
        # transformers reads the loss type from class names ending in "ForCausalLM"; the Trainer
        # needs it to count the labels our loss predicts (all but the first of each row) in
        # `num_items_in_batch`, which our loss divides by.
        self.loss_type = "ForCausalLM"
        self.transformer = ScratchGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # W_e^T (tied)
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""labels (B, T): usually the input ids; positions set to -100 are not predicted. The loss
        is the mean of -log P(u_i | u_<i), the logits at position i predicting the label at i + 1.
        shift_labels (B, T), in `kwargs` (as in transformers: a named argument with "label" in its
        name would become one of the Trainer's `label_names`): labels already shifted, position i
        holding the token position i predicts (transformers' convention for packed sequences and
        context parallelism); used instead of `labels`.
        logits_to_keep: project only the last n positions to the vocabulary (`generate()` passes
        1)."""
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = keep_positions(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # (B, T, V)
        loss = None
        shift_labels = kwargs.get("shift_labels")
        if labels is not None or shift_labels is not None:
            loss = causal_lm_loss(
                logits,
                labels,
                shift_labels=shift_labels,
                num_items_in_batch=kwargs.get("num_items_in_batch"),
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def extract_token_positions(
    attention_mask: torch.Tensor | None, batch_shape: tuple[int, ...], length: int, device
) -> torch.Tensor:
    """Index of the last real token of each sequence, the extract token of the paper's inputs: (B,).

    With right padding that is the last position the attention mask keeps; without a mask, T - 1.
    """
    if attention_mask is None:
        return torch.full(batch_shape, length - 1, device=device)
    positions = torch.arange(length, device=device)
    return (positions * attention_mask.to(torch.long)).argmax(dim=-1)


class _ScratchGPTFineTuningModel(ScratchGPTPreTrainedModel):
    """Shared by the two fine-tuning heads: the decoder, the tied LM head for the auxiliary
    objective, and the features h_l^m at the extract token of every sequence."""

    _tied_weights_keys = {"lm_head.weight": "transformer.tokens_embed.weight"}
    # L3 is a sum of two means: Trainer must scale it under gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: ScratchGPTConfig):
        super().__init__(config)
        self.transformer = ScratchGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # W_e^T (tied)
        self.dropout = nn.Dropout(config.classifier_dropout)

    def _extract_features(
        self,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        inputs_embeds,
        extract_positions,
        output_attentions,
        output_hidden_states,
    ):
        """Run the decoder over (B, [K,] T) inputs; return the outputs and h_l^m: (B, [K,] C)."""
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        batch_shape, T = reference.shape[:-1], reference.shape[-1]

        dims = len(batch_shape)
        outputs = self.transformer(
            merge_choices(input_ids, dims),
            attention_mask=merge_choices(attention_mask, dims),
            token_type_ids=merge_choices(token_type_ids, dims),
            position_ids=merge_choices(position_ids, dims),
            inputs_embeds=merge_choices(inputs_embeds, dims),
            use_cache=False,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        if extract_positions is None:
            extract_positions = extract_token_positions(
                attention_mask, batch_shape, T, reference.device
            )
        hidden_states = outputs.last_hidden_state.view(*batch_shape, T, -1)  # (B, [K,] T, C)
        index = extract_positions.reshape(*batch_shape, 1, 1).expand(
            *batch_shape, 1, hidden_states.shape[-1]
        )
        features = hidden_states.gather(-2, index).squeeze(-2)  # h_l^m: (B, [K,] C)
        return outputs, hidden_states, features

    def _auxiliary_lm_loss(self, input_ids, attention_mask, hidden_states):
        """L1 on the fine-tuning inputs (padding not predicted), or None when lambda = 0."""
        if self.config.lm_loss_weight == 0 or input_ids is None:
            return None, None
        lm_logits = self.lm_head(hidden_states)  # (B, [K,] T, V)
        lm_labels = (
            input_ids
            if attention_mask is None
            else input_ids.masked_fill(attention_mask == 0, -100)
        )
        return causal_lm_loss(lm_logits, lm_labels), lm_logits

    def _output(
        self, logits, classification, input_ids, attention_mask, hidden_states, outputs
    ) -> ScratchGPTClassifierOutput:
        """With a classification loss L2 (labels given), add the auxiliary L1 on the same inputs:
        L3 = L2 + lambda * L1; then the head's output."""
        loss = lm_loss = lm_logits = None
        if classification is not None:
            lm_loss, lm_logits = self._auxiliary_lm_loss(input_ids, attention_mask, hidden_states)
            loss = classification
            if lm_loss is not None:
                loss = classification + self.config.lm_loss_weight * lm_loss
        return ScratchGPTClassifierOutput(
            loss=loss,
            logits=logits,
            classification_loss=classification,
            lm_loss=lm_loss,
            lm_logits=lm_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchGPTForSequenceClassification(_ScratchGPTFineTuningModel):
    """P(y | x) = softmax(h_l^m W_y) over the final state at the extract token (§3.2), trained on
    L3 = L2 + lambda * L1.

    Input ids of shape (B, T) classify one sequence each; (B, K, T) process K sequences per example
    independently and sum their h_l^m before W_y: the paper's similarity task (K = 2, both
    orderings). `labels` follow Hugging Face's `problem_type`: class ids (single-label), floats
    (regression, num_labels = 1) or multi-hot rows (multi-label).
    """

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: ScratchGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)  # W_y
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        extract_positions: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> ScratchGPTClassifierOutput:
        r"""extract_positions (B, [K]): where to read h_l^m; by default the last real token."""
        outputs, hidden_states, features = self._extract_features(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            extract_positions,
            output_attentions,
            output_hidden_states,
        )
        if features.dim() == 3:
            features = features.sum(dim=1)  # similarity: add the orderings' h_l^m element-wise
        logits = self.score(self.dropout(features))  # (B, num_labels)

        classification = None
        if labels is not None:
            classification = classification_loss(logits, labels, self.config)
        return self._output(
            logits, classification, input_ids, attention_mask, hidden_states, outputs
        )


class ScratchGPTForMultipleChoice(_ScratchGPTFineTuningModel):
    """Multiple choice (§3.3): each of the K answers is appended to the context, each sequence
    scored by a linear layer on its h_l^m, and the K scores softmaxed. In the style of OpenAI's
    double-heads model (`mc_token_ids` gives the extract positions), trained on L3 = L2 + lambda *
    L1.

    input_ids (B, K, T); labels (B,): the index of the right answer (Hugging Face's multiple-choice
    convention, so `DataCollatorForMultipleChoice` and `Trainer` work as for any such model).
    """

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: ScratchGPTConfig):
        super().__init__(config)
        self.multiple_choice_head = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        mc_token_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> ScratchGPTClassifierOutput:
        r"""mc_token_ids (B, K): the extract token of each choice; by default its last real
        token."""
        outputs, hidden_states, features = self._extract_features(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            mc_token_ids,
            output_attentions,
            output_hidden_states,
        )
        if features.dim() != 3:
            raise ValueError(
                f"multiple choice takes inputs of shape (batch, choices, length), got "
                f"{tuple(features.shape[:-1])} + (length,)"
            )
        logits = self.multiple_choice_head(self.dropout(features)).squeeze(-1)  # (B, K)

        classification = None
        if labels is not None:
            classification = nn.functional.cross_entropy(logits, labels)
        return self._output(
            logits, classification, input_ids, attention_mask, hidden_states, outputs
        )


__all__ = [
    "ScratchGPTForMultipleChoice",
    "ScratchGPTForSequenceClassification",
    "ScratchGPTLMHeadModel",
    "ScratchGPTModel",
    "ScratchGPTPreTrainedModel",
]
