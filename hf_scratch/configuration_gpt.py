"""Configuration of GPT (Radford et al. 2018, "Improving Language Understanding by Generative
Pre-Training")."""

from transformers import PreTrainedConfig

from .validation import validate_sizes


class ScratchGPTConfig(PreTrainedConfig):
    r"""Configuration of [`ScratchGPTModel`] and its heads. The defaults are GPT-1 (the paper's 117M
    model).

    Field names are Hugging Face's standard ones; the GPT-2 config names (`n_embd`, `n_layer`,
    `n_head`, `n_positions`) are aliases for them.

    Args:
        vocab_size: size of the token vocabulary V (GPT-1: 40,478 BPE tokens).
        max_position_embeddings: number of learned positions, the longest context k (GPT-1: 512).
        hidden_size: d_model (GPT-1: 768).
        num_hidden_layers: number of decoder blocks (GPT-1: 12).
        num_attention_heads: heads per block (GPT-1: 12); must divide `hidden_size`.
        intermediate_size: inner size of the feed-forward network (GPT-1: 3072 = 4 d_model).
        hidden_act: feed-forward activation; "gelu_new" is the tanh GELU of the OpenAI checkpoints.
        hidden_dropout_prob: dropout on each sublayer's output (residual dropout, 0.1).
        embedding_dropout_prob: dropout on h_0 = U W_e + W_p (0.1).
        attention_probs_dropout_prob: dropout on the attention weights (0.1).
        layer_norm_eps: LayerNorm epsilon (1e-5).
        initializer_range: std of the N(0, std) initialisation (0.02).
        norm_first: False = GPT-1 layout (post-LN blocks, no final LayerNorm). True = GPT-2 layout:
            pre-LN blocks, a final LayerNorm, and the residual output projections initialised with
            std / sqrt(2 * num_hidden_layers).
        lm_loss_weight: lambda in the fine-tuning objective L3 = L2 + lambda * L1 (the paper: 0.5;
            0 turns the auxiliary language-modelling loss off).
        classifier_dropout: dropout before the classification / multiple-choice head (0.1).
        use_cache: whether the forward returns the KV cache (generation).
        tie_word_embeddings: tie the output projection to the token embedding, P(u) =
            softmax(h_n W_e^T).
    """

    model_type = "hf_scratch_gpt"
    # Left out of the predictions Trainer gathers in evaluation: the cache, the auxiliary parts of
    # the fine-tuning loss, and the (B, T, V) language-model logits of the fine-tuning heads.
    keys_to_ignore_at_inference = ["cache", "classification_loss", "lm_loss", "lm_logits"]
    attribute_map = {
        "n_embd": "hidden_size",
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_positions": "max_position_embeddings",
    }

    vocab_size: int = 40478
    max_position_embeddings: int = 512
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float | int = 0.1
    embedding_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    norm_first: bool = False
    lm_loss_weight: float | int = 0.5
    classifier_dropout: float | int = 0.1
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

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
                "num_hidden_layers",
                "intermediate_size",
            ),
        )


__all__ = ["ScratchGPTConfig"]
