"""hf_scratch: the Transformer, GPT and BERT written from scratch in PyTorch as Hugging Face models.

This file only re-exports public names (and, once the models land, registers them with the Auto
classes); it holds no logic, because hub sharing copies the model files without it.
"""

from .attention import (
    AdditiveScore,
    BilinearScore,
    DotScore,
    MultiHeadAttention,
    ScaledDotScore,
    SoftAttention,
    causal_mask,
    make_attention_mask,
    masked_softmax,
    padding_mask,
)
from .layers import (
    FeedForward,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    TransformerBlock,
    sinusoidal_position_table,
)

__version__ = "0.1.0"

__all__ = [
    "AdditiveScore",
    "BilinearScore",
    "DotScore",
    "FeedForward",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "ScaledDotScore",
    "SinusoidalPositionEmbedding",
    "SoftAttention",
    "TransformerBlock",
    "causal_mask",
    "make_attention_mask",
    "masked_softmax",
    "padding_mask",
    "sinusoidal_position_table",
]
