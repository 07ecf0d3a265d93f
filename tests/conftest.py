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
