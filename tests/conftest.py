import os

import pytest
import torch
from transformers import PreTrainedConfig

# Tests never download: a hub lookup must fail loudly rather than hang or fetch.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def block_config(
    hidden_size: int = 32,
    num_attention_heads: int = 4,
    intermediate_size: int = 64,
    hidden_act: str = "relu",
    norm_first: bool = False,
    attn_implementation: str = "sdpa",
    dropout: float = 0.0,
    layer_norm_eps: float = 1e-5,
) -> PreTrainedConfig:
    """A bare config with the fields the attention core and the residual block read."""
    return PreTrainedConfig(
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        hidden_act=hidden_act,
        norm_first=norm_first,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        layer_norm_eps=layer_norm_eps,
        attn_implementation=attn_implementation,
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_gpt_config(**overrides):
    from hf_scratch import ScratchGPTConfig

    values = dict(
        vocab_size=101,
        max_position_embeddings=48,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        embedding_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0,
    )
    values.update(overrides)
    return ScratchGPTConfig(**values)


@pytest.fixture(scope="session")
def word_tokenizer():
    """A small word-level tokenizer built offline, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ("the cat sat on mat dog ran a big small is not good bad movie film very and").split()  # noqa: SIM905
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
