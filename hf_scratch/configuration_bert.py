"""Configuration of BERT (Devlin, Chang, Lee and Toutanova 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding")."""

from transformers import PreTrainedConfig

from .validation import validate_sizes


class ScratchBertConfig(PreTrainedConfig):
    r"""Configuration of [`ScratchBertModel`] and its heads. The defaults are BERT-base.

    The paper's names: L = `num_hidden_layers`, H = `hidden_size`, A = `num_attention_heads`; the
    feed-forward size is 4H.

    Args:
        vocab_size: WordPiece vocabulary size (30,522 for the uncased English models).
        hidden_size: H (base 768, large 1024).
        num_hidden_layers: L (base 12, large 24).
        num_attention_heads: A (base 12, large 16); must divide `hidden_size`.
        intermediate_size: feed-forward inner size, 4H.
        hidden_act: "gelu", the exact erf form.
        hidden_dropout_prob: dropout on embeddings and every sublayer output (0.1).
        attention_probs_dropout_prob: dropout on attention weights (0.1).
        max_position_embeddings: learned positions (512).
        type_vocab_size: segment (token type) embeddings, A and B (2).
        initializer_range: std of the N(0, std) initialisation (0.02).
        layer_norm_eps: LayerNorm epsilon (1e-12).
        classifier_dropout: dropout before the fine-tuning classifiers; None = hidden_dropout_prob.
        sparse_prediction: when MLM labels are given, project to the vocabulary only the positions
            that carry a label (about 15% of tokens), and return logits for those positions only
            ((N, V) instead of (B, T, V)). The vocabulary projection is the largest matmul of
            pre-training. Off by default, so that outputs have Hugging Face's shapes.
        tie_word_embeddings: tie the MLM decoder to the token embeddings.
    """

    model_type = "hf_scratch_bert"
    keys_to_ignore_at_inference = ["mlm_loss", "nsp_loss"]
    attribute_map = {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads"}

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    classifier_dropout: float | int | None = None
    sparse_prediction: bool = False
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the values on inconsistent sizes (run at construction)."""
        validate_sizes(
            self,
            positive=(
                "vocab_size",
                "max_position_embeddings",
                "type_vocab_size",
                "num_hidden_layers",
                "intermediate_size",
            ),
        )


__all__ = ["ScratchBertConfig"]
