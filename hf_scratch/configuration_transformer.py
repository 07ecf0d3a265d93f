"""Configuration of the Transformer (Vaswani et al. 2017, "Attention Is All You Need")."""

from transformers import PreTrainedConfig

from .validation import validate_sizes

SINUSOID_LAYOUTS = ("interleaved", "halves")


class ScratchTransformerConfig(PreTrainedConfig):
    r"""Configuration of [`ScratchTransformerModel`] and
    [`ScratchTransformerForConditionalGeneration`]. The defaults are the paper's base model
    (Table 3): d_model 512, N = 6, h = 8, d_ff 2048, P_drop 0.1, eps_ls 0.1, a shared source-target
    vocabulary of about 37,000 BPE tokens.

    Field names are Hugging Face's (Marian / BART's for the two stacks); `d_model`, `d_ff`,
    `num_hidden_layers` (= `encoder_layers`) are aliases.

    Args:
        vocab_size: the (shared) vocabulary; with `share_embeddings=False` the source vocabulary.
        decoder_vocab_size: the target vocabulary when `share_embeddings=False` (None =
            `vocab_size`).
        share_embeddings: one vocabulary for source and target tokens (§3.4); with
            `tie_word_embeddings`, one matrix for the source and target embeddings and the output
            projection.
        max_position_embeddings: positions in the sinusoid table, the longest source or target.
        hidden_size: d_model (base 512, big 1024).
        encoder_layers: N of the encoder (6). decoder_layers: N of the decoder (6).
        num_attention_heads: h (base 8, big 16); must divide `hidden_size`. d_k = d_v = d_model / h.
        intermediate_size: d_ff, the inner size of the feed-forward network (base 2048, big 4096).
        hidden_act: feed-forward activation: "relu" in the paper, "swish" in Marian checkpoints.
        hidden_dropout_prob: P_drop, on every sublayer output and on the embedding sums (0.1; big
            0.3).
        attention_probs_dropout_prob: dropout on the attention weights (the paper has none: 0.0).
        layer_norm_eps: LayerNorm epsilon (1e-5).
        label_smoothing: eps_ls of the training loss (§5.4: 0.1).
        scale_embedding: multiply token embeddings by sqrt(d_model) (§3.4).
        sinusoid_layout: "interleaved" = the paper's PE(pos, 2i) = sin, PE(pos, 2i+1) = cos;
            "halves" = all sines then all cosines, the layout of Marian (opus-mt) checkpoints.
        add_final_logits_bias: add a fixed (not trained) bias to the output logits, as Marian does.
        norm_first: False = post-LN as published; True = pre-LN blocks with a final LayerNorm on
            each stack (an option for training deep models, never the default).
        init_std: std of the N(0, std) token embeddings; None = d_model^-0.5, so that the embeddings
            scaled by sqrt(d_model) have unit variance. Linear weights are Xavier-uniform.
        tie_word_embeddings: tie the output projection to the target token embedding (and, with
            `share_embeddings`, both embeddings to each other). False unties every matrix, as in
            transformers' Marian: three matrices over one vocabulary.
        decoder_start_token_id: the first decoder input (Marian: the pad token).
    """

    model_type = "hf_scratch_transformer"
    # Left out of the predictions Trainer gathers in evaluation.
    keys_to_ignore_at_inference = ["cache", "encoder_last_hidden_state"]
    attribute_map = {
        "d_model": "hidden_size",
        "d_ff": "intermediate_size",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 37000
    decoder_vocab_size: int | None = None
    share_embeddings: bool = True
    max_position_embeddings: int = 512
    hidden_size: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    hidden_act: str = "relu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-5
    label_smoothing: float | int = 0.1
    scale_embedding: bool = True
    sinusoid_layout: str = "interleaved"
    add_final_logits_bias: bool = False
    norm_first: bool = False
    init_std: float | None = None
    use_cache: bool = True
    tie_word_embeddings: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1

    def __post_init__(self, **kwargs):
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the values on inconsistent settings (run at construction)."""
        validate_sizes(
            self,
            positive=(
                "vocab_size",
                "decoder_vocab_size",
                "max_position_embeddings",
                "encoder_layers",
                "decoder_layers",
                "intermediate_size",
            ),
        )
        if self.hidden_size % 2 != 0:
            raise ValueError(
                f"sinusoidal positions need an even hidden_size, got {self.hidden_size}"
            )
        if self.sinusoid_layout not in SINUSOID_LAYOUTS:
            raise ValueError(
                f"sinusoid_layout must be one of {SINUSOID_LAYOUTS}, got {self.sinusoid_layout!r}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.share_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary, but vocab_size is {self.vocab_size} and "
                f"decoder_vocab_size {self.decoder_vocab_size}"
            )


__all__ = ["ScratchTransformerConfig"]
