"""hf_scratch: the Transformer, GPT and BERT written from scratch in PyTorch as Hugging Face models.

Importing the package registers the models with transformers' Auto classes. This file holds no other
logic: hub sharing copies the model files without it.
"""

import transformers
from transformers import AutoConfig

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
    packed_sequence_mask,
    padding_mask,
)
from .configuration_bert import ScratchBertConfig
from .configuration_gpt import ScratchGPTConfig
from .configuration_transformer import ScratchTransformerConfig
from .gpt_inputs import GPTTaskInputs
from .layers import (
    FeedForward,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    TransformerBlock,
    sinusoidal_position_table,
)
from .modeling_bert import (
    ScratchBertForMaskedLM,
    ScratchBertForMultipleChoice,
    ScratchBertForNextSentencePrediction,
    ScratchBertForPreTraining,
    ScratchBertForQuestionAnswering,
    ScratchBertForSequenceClassification,
    ScratchBertForTokenClassification,
    ScratchBertModel,
    ScratchBertPreTrainedModel,
)
from .modeling_gpt import (
    ScratchGPTForMultipleChoice,
    ScratchGPTForSequenceClassification,
    ScratchGPTLMHeadModel,
    ScratchGPTModel,
    ScratchGPTPreTrainedModel,
)
from .modeling_transformer import (
    ScratchTransformerForConditionalGeneration,
    ScratchTransformerModel,
    ScratchTransformerPreTrainedModel,
)

__version__ = "0.1.0"

for _config_class, _family in [
    (ScratchGPTConfig, ScratchGPTPreTrainedModel),
    (ScratchBertConfig, ScratchBertPreTrainedModel),
    (ScratchTransformerConfig, ScratchTransformerPreTrainedModel),
]:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    for _auto_name, _class_name in _family.auto_classes.items():
        getattr(transformers, _auto_name).register(
            _config_class, globals()[_class_name], exist_ok=True
        )

__all__ = [
    "AdditiveScore",
    "BilinearScore",
    "DotScore",
    "FeedForward",
    "GPTTaskInputs",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "ScaledDotScore",
    "ScratchBertConfig",
    "ScratchBertForMaskedLM",
    "ScratchBertForMultipleChoice",
    "ScratchBertForNextSentencePrediction",
    "ScratchBertForPreTraining",
    "ScratchBertForQuestionAnswering",
    "ScratchBertForSequenceClassification",
    "ScratchBertForTokenClassification",
    "ScratchBertModel",
    "ScratchGPTConfig",
    "ScratchGPTForMultipleChoice",
    "ScratchGPTForSequenceClassification",
    "ScratchGPTLMHeadModel",
    "ScratchGPTModel",
    "ScratchTransformerConfig",
    "ScratchTransformerForConditionalGeneration",
    "ScratchTransformerModel",
    "SinusoidalPositionEmbedding",
    "SoftAttention",
    "TransformerBlock",
    "causal_mask",
    "make_attention_mask",
    "masked_softmax",
    "packed_sequence_mask",
    "padding_mask",
    "sinusoidal_position_table",
]
