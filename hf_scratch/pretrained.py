"""What every hf_scratch model shares as a Hugging Face `PreTrainedModel`: a saved folder that loads
anywhere through the Auto classes with `trust_remote_code=True`, and the paper's N(0, std)
initialisation.
"""

from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .layers import SinusoidalPositionEmbedding


def _module_name(cls: type) -> str:
    """The file a class lives in, as `auto_map` names it: "modeling_gpt" for
    hf_scratch.modeling_gpt."""
    return cls.__module__.rsplit(".", 1)[-1]


class ScratchPreTrainedModel(PreTrainedModel):
    """Base class of the three model families.

    Each family's base class sets `auto_classes`, e.g. {"AutoModel": "ScratchGPTModel", ...}; each
    head sets `_auto_class` (what `register_for_auto_class` sets), so `save_pretrained` copies the
    model's source files next to the weights. The saved `config.auto_map` then lists every Auto
    class of the family, not only the saved one, so the folder loads as `AutoModel`,
    `AutoModelForCausalLM`, ... where hf_scratch is not installed.
    """

    auto_classes: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        config_class = type(self.config)
        modeling_module = _module_name(type(self))
        self.config.auto_map = {
            "AutoConfig": f"{_module_name(config_class)}.{config_class.__name__}",
            **{auto: f"{modeling_module}.{name}" for auto, name in self.auto_classes.items()},
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) for linear and embedding weights, zero biases, unit LayerNorms
        (the base class), and the sinusoid tables rebuilt: they are not saved, and `from_pretrained`
        materialises unsaved buffers as uninitialised memory."""
        super()._init_weights(module)
        if isinstance(module, SinusoidalPositionEmbedding):
            init.copy_(module.weight, module.reset_table())
