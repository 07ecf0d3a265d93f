"""The Transformer: Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser and Polosukhin 2017,
"Attention Is All You Need".

Notation: B batch, S source length, T target length, C hidden size (d_model), V vocabulary, L
layers, P positions.

An encoder maps the source tokens x to continuous representations z; a decoder generates the target
y one token at a time, auto-regressively, from z and the tokens generated so far (§3):
    encoder (§3.1): h_0 = E[x] sqrt(d_model) + PE,  h_l = FFN(SelfAttn(h_{l-1})) with Add & Norm;
    decoder (§3.1): g_0 = E[y] sqrt(d_model) + PE,  g_l = FFN(CrossAttn(MaskedSelfAttn(g_{l-1}), z))
    P(y_t | y_<t, x) = softmax(g_L E^T)_t (§3.4: the embeddings and the pre-softmax projection share
    one matrix).
Every sublayer is LayerNorm(x + Dropout(Sublayer(x))); the decoder's self-attention is masked so
that position t sees positions <= t; cross-attention takes its queries from the decoder and its keys
and values from the encoder output z (§3.2.3). PE are the fixed sinusoids of §3.5. The model is
trained with label-smoothed cross-entropy (§5.4, eps_ls = 0.1) and decodes with beam search with a
length penalty (§6.1), both through `generate()`.

Faithful to the paper: post-LN blocks without a final LayerNorm, ReLU feed-forward, sinusoidal
positions, embeddings scaled by sqrt(d_model), source / target / output matrices shared (one
vocabulary), residual and embedding dropout, no attention dropout, label smoothing, Xavier-uniform
linear layers.

Differences from the paper:
- Options for Marian (opus-mt) checkpoints, which are this architecture trained by Marian-NMT:
  `sinusoid_layout="halves"` (sines then cosines instead of interleaved), `hidden_act="swish"`, and
  `add_final_logits_bias` (a fixed bias on the logits).
- `share_embeddings=False` gives separate source and target vocabularies (the output projection is
  then tied to the target embedding).
- `norm_first=True` selects pre-LN blocks with a final LayerNorm per stack; never the default.
- The loss is the mean over target tokens; the paper's batches hold ~25,000 tokens, which is a
  choice of the training script (`per_device_train_batch_size`, gradient accumulation), not of
  the model.
"""

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .attention import causal_cache_mask, make_attention_mask
from .configuration_transformer import ScratchTransformerConfig
from .layers import (
    SinusoidalPositionEmbedding,
    TransformerBlock,
    cache_switch,
    embed_tokens,
    keep_positions,
    output_switches,
    run_blocks,
)
from .losses import cross_entropy
from .pretrained import ScratchGenerationMixin, ScratchPreTrainedModel


def shift_right(labels: torch.Tensor, pad_token_id: int, start_token_id: int) -> torch.Tensor:
    """The decoder inputs for teacher forcing: the target shifted one position right behind the
    start token, so that position t sees y_<t and predicts y_t; ignored labels (-100) become
    padding."""
    decoder_input_ids = labels.new_full(labels.shape, start_token_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
    return decoder_input_ids.masked_fill_(decoder_input_ids == -100, pad_token_id)  # (B, T)


class ScratchTransformerPreTrainedModel(ScratchPreTrainedModel):
    config_class = ScratchTransformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True
    auto_classes = {
        "AutoModel": "ScratchTransformerModel",
        "AutoModelForSeq2SeqLM": "ScratchTransformerForConditionalGeneration",
    }

    def _init_weights(self, module: nn.Module) -> None:
        """Xavier-uniform linear layers with zero biases; token embeddings N(0, d_model^-0.5) (times
        sqrt(d_model) in the forward: unit variance, the tensor2tensor convention); unit
        LayerNorms; the sinusoid tables rebuilt; a zero final logits bias."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            std = self.config.init_std or self.config.hidden_size**-0.5
            init.normal_(module.weight, mean=0.0, std=std)
        else:
            super()._init_weights(module)
        if getattr(module, "final_logits_bias", None) is not None:
            init.zeros_(module.final_logits_bias)


class _TransformerStack(nn.Module):
    """What the encoder and the decoder share: token embedding, positions, dropout, the blocks and,
    in the pre-LN layout only, a final LayerNorm."""

    def __init__(
        self, config: ScratchTransformerConfig, vocab_size: int, num_layers: int, is_decoder: bool
    ):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(vocab_size, config.hidden_size)  # E
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
        self.embed_positions = SinusoidalPositionEmbedding(
            config.max_position_embeddings,
            config.hidden_size,
            interleaved=config.sinusoid_layout == "interleaved",
        )  # PE
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            TransformerBlock(
                config,
                is_causal=is_decoder,
                has_cross_attention=is_decoder,
                norm_first=config.norm_first,
                layer_idx=i,
            )
            for i in range(num_layers)
        )
        self.final_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            if config.norm_first
            else None
        )

    def _embed(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        past_length: int | torch.Tensor,
    ) -> torch.Tensor:
        """Dropout(E[x] sqrt(d_model) + PE) (§3.4, §3.5, §5.4): (B, L) -> (B, L, C); the positions
        continue after `past_length` cached tokens."""
        inputs_embeds = embed_tokens(self.embed_tokens, input_ids, inputs_embeds)  # E[x]: (B, L, C)
        positions = self.embed_positions.span(past_length, inputs_embeds.shape[1])  # PE: (L, C)
        return self.dropout(inputs_embeds * self.embed_scale + positions)


class ScratchTransformerEncoder(_TransformerStack):
    """N blocks of self-attention over the whole source and a feed-forward network (§3.1):
    (B, S) -> z (B, S, C)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config, config.vocab_size, config.encoder_layers, is_decoder=False)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
    ) -> BaseModelOutput:
        output_attentions, output_hidden_states = output_switches(
            self.config, output_attentions, output_hidden_states
        )
        hidden_states = self._embed(input_ids, inputs_embeds, past_length=0)
        B, S, _ = hidden_states.shape
        mask = make_attention_mask(attention_mask, B, S, S, causal=False)  # padding: (B, 1, 1, S)
        hidden_states, all_hidden_states, all_attentions, _ = run_blocks(
            self.layers,
            hidden_states,
            attention_mask=mask,
            final_norm=self.final_norm,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class ScratchTransformerDecoder(_TransformerStack):
    """N blocks of masked self-attention, cross-attention over the encoder output z and a
    feed-forward network (§3.1): (B, T) and z (B, S, C) -> (B, T, C).

    With a cache (`EncoderDecoderCache`), the self-attention keys and values of earlier steps are
    kept and grow by one position per step, and the cross-attention keys and values of z are
    computed once per sequence.

    z may hold one source for every k target sequences: z (B / k, S, C), decoder rows
    i*k .. i*k + k - 1 reading source i, as if z had been `repeat_interleave`d k times, without the
    k copies of z and of its keys and values. `generate()` decodes beam search's hypotheses this
    way (see `ScratchTransformerForConditionalGeneration._expand_inputs_for_generation`).
    """

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config, config.decoder_vocab_size, config.decoder_layers, is_decoder=True)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        config = self.config
        output_attentions, output_hidden_states = output_switches(
            config, output_attentions, output_hidden_states
        )
        use_cache = cache_switch(config, use_cache, self.layers, self.training)
        if encoder_hidden_states is None:
            raise ValueError("the decoder needs encoder_hidden_states (the encoder output z)")
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        past_length = cache.get_seq_length() if cache is not None else 0

        hidden_states = self._embed(input_ids, inputs_embeds, past_length)
        B, T, _ = hidden_states.shape
        sources, S, _ = encoder_hidden_states.shape
        if B % sources != 0:
            raise ValueError(
                f"the decoder input has batch size {B}, not a multiple of the encoder output's "
                f"{sources} sequences"
            )
        self_mask = causal_cache_mask(attention_mask, B, T, cache, past_length)
        cross_mask = make_attention_mask(encoder_attention_mask, sources, T, S, causal=False)

        hidden_states, all_hidden_states, all_attentions, all_cross_attentions = run_blocks(
            self.layers,
            hidden_states,
            attention_mask=self_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=cross_mask,
            cache=cache if use_cache else None,
            final_norm=self.final_norm,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross_attentions,
        )


class ScratchTransformerModel(ScratchTransformerPreTrainedModel):
    """Encoder and decoder (Figure 1, without the output projection): returns the decoder's last
    hidden states (B, T, C) and the encoder output z (B, S, C)."""

    _auto_class = "AutoModel"

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.encoder = ScratchTransformerEncoder(config)
        self.decoder = ScratchTransformerDecoder(config)
        if config.share_embeddings:  # one vocabulary: the decoder reads the encoder's matrix
            self._tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value
        if self.config.share_embeddings:
            self.decoder.embed_tokens = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
    ) -> Seq2SeqModelOutput:
        r"""z = encoder(x), unless given, then the decoder over the target and z.

        attention_mask (B_src, S): 1 for source tokens, 0 for padding; it masks the keys of the
        encoder's self-attention and of the decoder's cross-attention.
        decoder_attention_mask (B, past + T): 1 for target tokens (the causal mask is added), or a
        4-D custom mask.
        encoder_outputs: a precomputed encoder output (`generate()` encodes the source once), with
        B_src = B or one source per k decoder rows (see `ScratchTransformerDecoder`)."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(
                f"attention_mask is the source's padding mask (batch_size, source_length), got "
                f"shape {tuple(attention_mask.shape)}: the cross-attention reads it too. A custom "
                "4-D mask goes to the decoder's self-attention as decoder_attention_mask"
            )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


def cross_attention_rows_per_hypothesis(cache: EncoderDecoderCache) -> None:
    """Repeat each source's cross-attention keys and values once per hypothesis decoded from it
    (rows i*k .. i*k + k - 1 for source i, `repeat_interleave`'s order), in place."""
    for self_layer, cross_layer in zip(
        cache.self_attention_cache.layers, cache.cross_attention_cache.layers, strict=True
    ):
        if not (self_layer.is_initialized and cross_layer.is_initialized):
            continue
        k = self_layer.keys.shape[0] // cross_layer.keys.shape[0]
        if k > 1:
            cross_layer.keys = cross_layer.keys.repeat_interleave(k, dim=0)
            cross_layer.values = cross_layer.values.repeat_interleave(k, dim=0)


class ScratchTransformerForConditionalGeneration(
    ScratchTransformerPreTrainedModel, ScratchGenerationMixin
):
    """The translation model P(y_t | y_<t, x) = softmax(g_L E^T [+ final logits bias]) (§3.4),
    trained with label-smoothed cross-entropy (§5.4) and decoded by `generate()`: greedy, beam
    search with a length penalty (`num_beams`, `length_penalty`), sampling."""

    _auto_class = "AutoModelForSeq2SeqLM"
    # A mean over labelled target tokens: with the Trainer's `num_items_in_batch` it divides the
    # summed loss by the token count of the whole accumulated batch, exact under accumulation.
    accepts_loss_kwargs = True

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.model = ScratchTransformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.decoder_vocab_size, bias=False)  # E^T
        self._tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
        if config.share_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
        # Marian's fixed bias on the logits: saved with the weights, not trained.
        self.final_logits_bias = (
            nn.Buffer(torch.zeros(1, config.decoder_vocab_size))
            if config.add_final_logits_bias
            else None
        )
        self.post_init()

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """Resize the source embedding (and, with one vocabulary, the target embedding, the output
        projection, `decoder_vocab_size` and Marian's logits bias with it; new tokens get a zero
        bias)."""
        embeddings = super().resize_token_embeddings(
            new_num_tokens, pad_to_multiple_of, mean_resizing
        )
        if self.config.share_embeddings:
            size = self.config.vocab_size
            self.config.decoder_vocab_size = size
            decoder = self.model.decoder
            if decoder.embed_tokens.num_embeddings != size:  # untied: a matrix of its own
                decoder.embed_tokens = self._get_resized_embeddings(
                    decoder.embed_tokens, size, mean_resizing=mean_resizing
                )
            if self.final_logits_bias is not None:
                bias = self.final_logits_bias.new_zeros(1, size)
                kept = min(size, self.final_logits_bias.shape[-1])
                bias[:, :kept] = self.final_logits_bias[:, :kept]
                self.final_logits_bias = nn.Buffer(bias)
        return embeddings

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """`generate()` decodes `expand_size` sequences per source (beams, returned sequences) and
        repeats every input that many times. The encoder output and the source mask stay one per
        source, which the decoder reads for all of that source's sequences (see
        `ScratchTransformerDecoder`): no copies, and at every step each source's cross-attention
        keys and values are read once, not once per hypothesis."""
        encoder_outputs = model_kwargs.get("encoder_outputs")
        if expand_size == 1 or encoder_outputs is None:
            return super()._expand_inputs_for_generation(
                expand_size, is_encoder_decoder, input_ids, **model_kwargs
            )
        del model_kwargs["encoder_outputs"]
        source_mask = model_kwargs.pop("attention_mask", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, False, input_ids, **model_kwargs
        )
        model_kwargs.update(encoder_outputs=encoder_outputs, attention_mask=source_mask)
        return input_ids, model_kwargs

    def generate(self, *args, **kwargs):
        """transformers' `generate()`. Decoding reads one encoder output per source (see
        `_expand_inputs_for_generation`); the cache it returns (`return_dict_in_generate=True`)
        gets transformers' layout back, one row of cross-attention keys and values per decoded
        sequence, so that code indexing it by hypothesis finds what it finds in Marian's."""
        output = super().generate(*args, **kwargs)
        cache = output.get("cache") if isinstance(output, dict) else None
        if isinstance(cache, EncoderDecoderCache):
            cross_attention_rows_per_hypothesis(cache)
        return output

    def _reorder_cache(self, cache: EncoderDecoderCache, beam_idx: torch.Tensor):
        """Beam search continues beam i from beam `beam_idx[i]` (`generate()` calls this at every
        step): the decoder self-attention keys and values follow. The cross-attention ones hold one
        row per source (see `_expand_inputs_for_generation`), which all of its beams read, so they
        stay as they are."""
        cache.self_attention_cache.reorder_cache(beam_idx)
        return cache

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing decoder inputs, for `DataCollatorForSeq2Seq(tokenizer, model=model)`."""
        return shift_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""labels (B, T): the target tokens, -100 where nothing is predicted (padding). Without
        `decoder_input_ids`, the decoder reads the labels shifted right behind the start token. The
        loss is the label-smoothed cross-entropy (eps = `config.label_smoothing`), the mean over
        labelled tokens.
        logits_to_keep: project only the last n positions to the vocabulary (`generate()` passes 1).
        """
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = keep_positions(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # E^T: (B, T, V)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        loss = None
        if labels is not None:
            loss = cross_entropy(
                logits,
                labels,
                label_smoothing=self.config.label_smoothing,
                num_items_in_batch=kwargs.get("num_items_in_batch"),
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


__all__ = [
    "ScratchTransformerForConditionalGeneration",
    "ScratchTransformerModel",
    "ScratchTransformerPreTrainedModel",
]
