"""BERT: Devlin, Chang, Lee and Toutanova 2019, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding".

Notation: B batch, K choices, T sequence length, C hidden size (H in the paper), V vocabulary, N
labelled (masked) positions.

The model is the Transformer encoder (§3): L post-LN blocks of bidirectional self-attention, no
causal mask, so every position sees the whole sequence. The input representation (§3, Figure 2) is
the sum of token, learned position and segment (token type) embeddings, normalised and dropped out.
Pre-training (§3.1) has two tasks: the masked LM predicts the original token at 15% of positions (of
which 80% were replaced by [MASK], 10% by a random token, 10% kept; see `data.py`) through a
transform (dense, GELU, LayerNorm) and a decoder tied to the token embeddings with its own bias;
next sentence prediction classifies the pooled [CLS] state, tanh(W h_[CLS]), as IsNext (label 0) or
NotNext (label 1). The pre-training loss is their sum. Fine-tuning heads (§4) put one linear layer
on the pooled state (sequence classification, multiple choice) or on every token's state (token
classification, start/end of an answer span).

Faithful to the paper and the published checkpoints: post-LN, exact GELU, LayerNorm eps 1e-12,
N(0, 0.02) init, 512 positions, 2 segments.

Differences from the paper:
- `config.sparse_prediction` (off by default) projects only the labelled positions to the vocabulary
  when MLM labels are given; the loss is the same, the returned logits cover those positions only.
- Losses are means over the labelled positions, as in Hugging Face's classes.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput, can_return_tuple

from .attention import make_attention_mask
from .configuration_bert import ScratchBertConfig
from .layers import (
    LearnedPositionEmbedding,
    TransformerBlock,
    check_index_range,
    default_position_ids,
    embed_tokens,
    get_activation,
    merge_choices,
    output_switches,
    run_blocks,
)
from .losses import classification_loss, cross_entropy
from .pretrained import ScratchPreTrainedModel


@dataclass
class ScratchBertForPreTrainingOutput(ModelOutput):
    """`loss` = `mlm_loss` + `nsp_loss`. With sparse prediction, `prediction_logits` are (N, V) for
    the N labelled positions, in row-major order of the labels; otherwise (B, T, V)."""

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class ScratchBertPreTrainedModel(ScratchPreTrainedModel):
    config_class = ScratchBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ScratchBertEmbeddings", "TransformerBlock"]
    _supports_sdpa = True
    auto_classes = {
        "AutoModel": "ScratchBertModel",
        "AutoModelForPreTraining": "ScratchBertForPreTraining",
        "AutoModelForMaskedLM": "ScratchBertForMaskedLM",
        "AutoModelForNextSentencePrediction": "ScratchBertForNextSentencePrediction",
        "AutoModelForSequenceClassification": "ScratchBertForSequenceClassification",
        "AutoModelForTokenClassification": "ScratchBertForTokenClassification",
        "AutoModelForQuestionAnswering": "ScratchBertForQuestionAnswering",
        "AutoModelForMultipleChoice": "ScratchBertForMultipleChoice",
    }

    def _encode(
        self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
    ) -> BaseModelOutputWithPooling:
        """The heads' call of their encoder, `self.bert`."""
        return self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=kwargs.get("output_attentions"),
            output_hidden_states=kwargs.get("output_hidden_states"),
            return_dict=True,
        )

    def _classifier_dropout(self) -> nn.Dropout:
        probability = self.config.classifier_dropout
        if probability is None:
            probability = self.config.hidden_dropout_prob
        return nn.Dropout(probability)


class ScratchBertEmbeddings(nn.Module):
    """E = LayerNorm(token + position + segment embeddings), then dropout (§3, Figure 2): (B, T) ->
    (B, T, C)."""

    def __init__(self, config: ScratchBertConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = LearnedPositionEmbedding(
            config.max_position_embeddings, config.hidden_size
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        inputs_embeds = embed_tokens(self.word_embeddings, input_ids, inputs_embeds)  # (B, T, C)
        if position_ids is None:
            position_ids = default_position_ids(
                0, inputs_embeds.shape[1], self.config.max_position_embeddings, inputs_embeds.device
            )
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if token_type_ids is not None:
            check_index_range(token_type_ids, self.config.type_vocab_size, "token_type_ids")
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        else:  # all segment A
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        return self.dropout(self.norm(embeddings))


class ScratchBertModel(ScratchBertPreTrainedModel):
    """The bidirectional encoder and the pooler tanh(W h_[CLS] + b); returns the sequence (B, T, C)
    and the pooled output (B, C)."""

    _auto_class = "AutoModel"
    _input_embed_layer = "word_embeddings"

    def __init__(self, config: ScratchBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ScratchBertEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerBlock(config, is_causal=False, layer_idx=i)
            for i in range(config.num_hidden_layers)
        )
        self.pooler = (
            nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        output_attentions, output_hidden_states = output_switches(
            self.config, output_attentions, output_hidden_states
        )
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        B, T, _ = hidden_states.shape
        # position_ids that restart inside a row pack several sequences there (padding-free).
        mask = make_attention_mask(attention_mask, B, T, T, causal=False, position_ids=position_ids)

        hidden_states, all_hidden_states, all_attentions, _ = run_blocks(
            self.layers,
            hidden_states,
            attention_mask=mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )

        pooled = None
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(hidden_states[:, 0]))  # tanh(W h_[CLS] + b): (B, C)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class ScratchBertMLMHead(nn.Module):
    """P(token) = softmax(LayerNorm(GELU(h W_t + b_t)) W_e^T + b): transform, then the decoder tied
    to the token embeddings W_e, with its own output bias."""

    def __init__(self, config: ScratchBertConfig):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = get_activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)  # weight tied to W_e

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        transformed = self.norm(self.activation(self.transform(hidden_states)))
        return self.decoder(transformed)  # (..., V)


def masked_lm_logits_and_loss(
    mlm_head: ScratchBertMLMHead,
    sequence_output: torch.Tensor,
    labels: torch.Tensor | None,
    sparse: bool,
    num_items_in_batch=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The MLM logits and, with labels, the mean cross-entropy over the labelled positions.

    Sparse prediction gathers the N labelled positions first, (B, T, C) -> (N, C), so the vocabulary
    projection costs N / (B T) of the dense one (about 15%)."""
    if labels is None:
        return mlm_head(sequence_output), None
    if sparse:
        labelled = labels != -100  # (B, T)
        logits = mlm_head(sequence_output[labelled])  # (N, V)
        targets = labels[labelled]  # (N,)
    else:
        logits = mlm_head(sequence_output)  # (B, T, V)
        targets = labels
    return logits, cross_entropy(logits, targets, num_items_in_batch=num_items_in_batch)


class ScratchBertForPreTraining(ScratchBertPreTrainedModel):
    """Masked LM + next sentence prediction (§3.1); loss = MLM loss + NSP loss."""

    _auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}
    # The loss is a sum of two means: Trainer scales it under gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config)
        self.mlm_head = ScratchBertMLMHead(config)
        self.nsp_head = nn.Linear(config.hidden_size, 2)  # IsNext (0) / NotNext (1)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.mlm_head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        next_sentence_label: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> ScratchBertForPreTrainingOutput:
        r"""labels (B, T): original token ids at the masked positions, -100 elsewhere.
        next_sentence_label (B,): 0 if segment B follows segment A (IsNext), 1 if it is random."""
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        prediction_logits, mlm_loss = masked_lm_logits_and_loss(
            self.mlm_head, outputs.last_hidden_state, labels, self.config.sparse_prediction
        )
        seq_relationship_logits = self.nsp_head(outputs.pooler_output)  # (B, 2)
        nsp_loss = None
        if next_sentence_label is not None:
            nsp_loss = nn.functional.cross_entropy(
                seq_relationship_logits, next_sentence_label.view(-1)
            )
        parts = [part for part in (mlm_loss, nsp_loss) if part is not None]
        return ScratchBertForPreTrainingOutput(
            loss=sum(parts) if parts else None,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForMaskedLM(ScratchBertPreTrainedModel):
    """The masked language model alone (no pooler, no NSP)."""

    _auto_class = "AutoModelForMaskedLM"
    _tied_weights_keys = {"mlm_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config, add_pooling_layer=False)
        self.mlm_head = ScratchBertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.mlm_head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""labels (B, T): original token ids at the masked positions, -100 elsewhere. Under
        gradient accumulation the Trainer's `num_items_in_batch` makes the loss that of one large
        batch."""
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        logits, loss = masked_lm_logits_and_loss(
            self.mlm_head,
            outputs.last_hidden_state,
            labels,
            self.config.sparse_prediction,
            num_items_in_batch=kwargs.get("num_items_in_batch"),
        )
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForNextSentencePrediction(ScratchBertPreTrainedModel):
    """Next sentence prediction alone: IsNext (0) / NotNext (1) from the pooled [CLS] state."""

    _auto_class = "AutoModelForNextSentencePrediction"

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config)
        self.nsp_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> NextSentencePredictorOutput:
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        logits = self.nsp_head(outputs.pooler_output)  # (B, 2)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.view(-1))
        return NextSentencePredictorOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForSequenceClassification(ScratchBertPreTrainedModel):
    """A linear classifier on the pooled [CLS] state (§4.1); regression, single- and multi-label
    losses as Hugging Face's `problem_type` chooses them."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config)
        self.dropout = self._classifier_dropout()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
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
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None if labels is None else classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForTokenClassification(ScratchBertPreTrainedModel):
    """A linear classifier on every token's final state (§4.3, named entities); labels -100 are
    ignored."""

    _auto_class = "AutoModelForTokenClassification"

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config, add_pooling_layer=False)
        self.dropout = self._classifier_dropout()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.view(-1, self.config.num_labels), labels.view(-1)
            )
        return TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForQuestionAnswering(ScratchBertPreTrainedModel):
    """Answer-span extraction (§4.2, SQuAD): a start vector S and an end vector E score every token;
    the loss is the mean of the start and end cross-entropies. Positions outside the sequence are
    ignored."""

    _auto_class = "AutoModelForQuestionAnswering"

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)  # [S; E]
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput:
        outputs = self._encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(
            -1
        )  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start_logits.shape[1]  # positions past the end (truncated answers) are ignored
            start_loss = nn.functional.cross_entropy(
                start_logits, start_positions.view(-1).clamp(0, T), ignore_index=T
            )
            end_loss = nn.functional.cross_entropy(
                end_logits, end_positions.view(-1).clamp(0, T), ignore_index=T
            )
            loss = (start_loss + end_loss) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ScratchBertForMultipleChoice(ScratchBertPreTrainedModel):
    """Multiple choice (§4.4, SWAG): each of the K (context, choice) pairs is encoded, its pooled
    state scored by one vector, and the K scores softmaxed. input_ids (B, K, T); labels (B,)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: ScratchBertConfig):
        super().__init__(config)
        self.bert = ScratchBertModel(config)
        self.dropout = self._classifier_dropout()
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs,
    ) -> MultipleChoiceModelOutput:
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if reference.dim() != 3:
            raise ValueError(
                "multiple choice takes inputs of shape (batch, choices, length), got "
                f"{tuple(reference.shape)}"
            )
        B, K, _ = reference.shape

        outputs = self._encode(
            merge_choices(input_ids, 2), merge_choices(attention_mask, 2),
            merge_choices(token_type_ids, 2), merge_choices(position_ids, 2),
            merge_choices(inputs_embeds, 2),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(B, K)  # (B, K)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "ScratchBertForMaskedLM",
    "ScratchBertForMultipleChoice",
    "ScratchBertForNextSentencePrediction",
    "ScratchBertForPreTraining",
    "ScratchBertForQuestionAnswering",
    "ScratchBertForSequenceClassification",
    "ScratchBertForTokenClassification",
    "ScratchBertModel",
    "ScratchBertPreTrainedModel",
]
