"""Checks every model config runs at construction, so that a bad combination fails with a ValueError
naming the values instead of deep inside a forward pass."""


def validate_sizes(config, positive: tuple[str, ...]) -> None:
    """The heads divide the hidden size, and every size named in `positive` is at least 1."""
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            f"hidden_size ({config.hidden_size}) must be divisible by num_attention_heads "
            f"({config.num_attention_heads})"
        )
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
