"""Config translation between the references' configs (OpenAIGPTConfig, GPT2Config, BertConfig,
MarianConfig) and ours, both ways; a config the other side cannot express raises a ValueError
naming the fields."""

from transformers import BertConfig, GPT2Config, MarianConfig, OpenAIGPTConfig

from ..configuration_bert import ScratchBertConfig
from ..configuration_gpt import ScratchGPTConfig
from ..configuration_transformer import ScratchTransformerConfig

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
