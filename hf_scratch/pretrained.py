"""What every hf_scratch model shares as a Hugging Face `PreTrainedModel`: a saved folder that loads
anywhere through the Auto classes with `trust_remote_code=True`, loading that never leaves a model
half-initialised, and the paper's N(0, std) initialisation.
"""

import os

from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import CompileConfig, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME

from .layers import SinusoidalPositionEmbedding

# The `from_pretrained` arguments that say where a checkpoint lives, passed on to the config lookup.
_LOCATION_ARGUMENTS = ("subfolder", "revision", "cache_dir", "local_files_only", "token")


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint that cannot be loaded as it is: a corrupt file, the wrong model type, tensors
    the model needs and the file lacks, or tensors of another shape. A `ValueError` (bad input)
    and a `RuntimeError`, which is what transformers raises for a shape mismatch and what code
    written for it catches."""


def _module_name(cls: type) -> str:
    """The file a class lives in, as `auto_map` names it: "modeling_gpt" for
    hf_scratch.modeling_gpt."""
    return cls.__module__.rsplit(".", 1)[-1]


def _defining_class(model: nn.Module) -> type:
    """The model's own class, past the subclasses torch generates around it (FSDP2's `fully_shard`
    turns a `ScratchGPTLMHeadModel` into an `FSDPScratchGPTLMHeadModel` defined in torch)."""
    return next(cls for cls in type(model).__mro__ if not cls.__module__.startswith("torch."))


def _local_folder(path, subfolder: str) -> str | None:
    folder = os.path.join(str(path), subfolder) if path is not None else None
    return folder if folder is not None and os.path.isdir(folder) else None


def _weights_file(path, subfolder: str) -> str:
    """The file `from_pretrained` reads the weights from, for messages."""
    folder = _local_folder(path, subfolder) or os.path.join(str(path), subfolder)
    for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return os.path.join(folder, SAFE_WEIGHTS_NAME)


def _unreadable_safetensors(folder: str) -> tuple[str, str] | None:
    """The first .safetensors file in `folder` whose header cannot be read, with the reason."""
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            path = os.path.join(folder, name)
            try:
                with safe_open(path, framework="pt") as checkpoint:
                    checkpoint.keys()
            except (SafetensorError, OSError) as error:
                return path, str(error)
    return None


class ScratchPreTrainedModel(PreTrainedModel):
    """Base class of the three model families.

    Each family's base class sets `auto_classes`, e.g. {"AutoModel": "ScratchGPTModel", ...}; each
    head sets `_auto_class` (what `register_for_auto_class` sets), so `save_pretrained` copies the
    model's source files next to the weights. The saved `config.auto_map` then lists every Auto
    class of the family, not only the saved one, so the folder loads as `AutoModel`,
    `AutoModelForCausalLM`, ... where hf_scratch is not installed.

    `from_pretrained` is strict where transformers only warns (see its docstring).
    """

    auto_classes: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        config_class = type(self.config)
        model_class = _defining_class(self)
        modeling_module = _module_name(model_class)
        self.config.auto_map = {
            "AutoConfig": f"{_module_name(config_class)}.{config_class.__name__}",
            **{auto: f"{modeling_module}.{name}" for auto, name in self.auto_classes.items()},
        }
        # transformers copies the source file of type(self): for a model sharded by FSDP2, a
        # subclass torch generated. Seen as its own class while saving, it copies ours.
        wrapper_class = type(self)
        self.__class__ = model_class
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = wrapper_class

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, made strict: a checkpoint loads completely or not at
        all. It raises `CheckpointError` naming the file for

        - a weights file that cannot be read (truncated, or a corrupted header);
        - a config of another model type (a BERT folder loaded as GPT);
        - tensors whose shape differs from the model's (unless `ignore_mismatched_sizes=True`);
        - tensors missing from the file: always for the base model's own tensors; for a head's,
          when the checkpoint was saved from this same class. A head that the checkpoint's class
          did not have (a classifier on a pre-trained encoder) is initialised, as in
          transformers, with its report.

        Pickle weights (`pytorch_model.bin`) are refused, since unpickling can run code: pass
        `use_safetensors=False` to load one you trust. `strict=False` restores transformers'
        lenient loading (report missing tensors, initialise them).
        """
        strict = kwargs.pop("strict", True)
        subfolder = kwargs.get("subfolder", "")
        use_safetensors = kwargs.pop("use_safetensors", None)
        if use_safetensors is None:
            use_safetensors = True
            cls._refuse_pickle_only(pretrained_model_name_or_path, subfolder)
        cls._check_model_type(pretrained_model_name_or_path, kwargs)
        wants_loading_info = kwargs.pop("output_loading_info", False)
        # Shape mismatches come back in the loading info, to be reported with their names below.
        accept_mismatched = kwargs.pop("ignore_mismatched_sizes", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path,
                *model_args,
                use_safetensors=use_safetensors,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
                **kwargs,
            )
        except SafetensorError as error:
            folder = _local_folder(pretrained_model_name_or_path, subfolder)
            bad = _unreadable_safetensors(folder) if folder else None
            path, reason = bad or (_weights_file(pretrained_model_name_or_path, subfolder), error)
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({reason}); it is truncated or "
                "corrupted: re-save or re-download it"
            ) from error
        weights_file = _weights_file(pretrained_model_name_or_path, subfolder)
        if loading_info["mismatched_keys"] and not accept_mismatched:
            shapes = ", ".join(
                f"{key} {tuple(saved)} (model: {tuple(expected)})"
                for key, saved, expected in sorted(loading_info["mismatched_keys"])
            )
            raise CheckpointError(
                f"{weights_file} has tensors of the wrong shape: {shapes}. Pass "
                "ignore_mismatched_sizes=True to initialise them anew instead"
            )
        if strict:
            model._check_complete(loading_info, weights_file)
        return (model, loading_info) if wants_loading_info else model

    @staticmethod
    def _refuse_pickle_only(path, subfolder: str) -> None:
        folder = _local_folder(path, subfolder)
        if folder is None:
            return
        names = os.listdir(folder)
        if WEIGHTS_NAME in names and not any(name.endswith(".safetensors") for name in names):
            raise CheckpointError(
                f"{os.path.join(folder, WEIGHTS_NAME)} is a pickle file and {folder} has no "
                "safetensors weights. Unpickling can run arbitrary code, so it is refused; if you "
                "trust the file, pass use_safetensors=False (and re-save with save_pretrained, "
                "which writes safetensors)"
            )

    @classmethod
    def _check_model_type(cls, path, kwargs: dict) -> None:
        """A config of another model type would build this architecture from foreign fields."""
        config = kwargs.get("config")
        if isinstance(config, PreTrainedConfig):
            model_type, source = config.model_type, "the config passed"
        else:
            location = {name: kwargs[name] for name in _LOCATION_ARGUMENTS if name in kwargs}
            config_dict, _ = PreTrainedConfig.get_config_dict(config or path, **location)
            model_type, source = config_dict.get("model_type"), f"the config of {config or path}"
        expected = cls.config_class.model_type
        if model_type != expected:
            hint = (
                " (a transformers checkpoint: convert it with `hf-scratch-convert SRC DST`)"
                if model_type and not model_type.startswith("hf_scratch")
                else ""
            )
            raise CheckpointError(
                f"{source} has model_type {model_type!r}, but {cls.__name__} needs "
                f"{expected!r}{hint}"
            )

    def _check_complete(self, loading_info: dict, weights_file: str) -> None:
        missing = sorted(loading_info["missing_keys"])
        saved_from = self.config.architectures or []
        prefix = f"{self.base_model_prefix}."
        if type(self).__name__ not in saved_from:
            # Another class saved this checkpoint: heads it did not have are new, as in
            # transformers; the base model must still be complete.
            has_base_prefix = any(key.startswith(prefix) for key in self.state_dict())
            missing = [key for key in missing if not has_base_prefix or key.startswith(prefix)]
        if missing:
            raise CheckpointError(
                f"{weights_file} lacks {len(missing)} tensor(s) that {type(self).__name__} needs: "
                f"{', '.join(missing)}. Refusing to initialise them at random; pass strict=False "
                "to accept that"
            )

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) for linear and embedding weights, zero biases, unit LayerNorms
        (the base class), and the sinusoid tables rebuilt: they are not saved, and `from_pretrained`
        materialises unsaved buffers as uninitialised memory."""
        super()._init_weights(module)
        if isinstance(module, SinusoidalPositionEmbedding):
            init.copy_(module.weight, module.computed_table())


class ScratchGenerationMixin(GenerationMixin):
    """transformers' `GenerationMixin`, with one difference: with a static cache
    (`generate(..., cache_implementation="static")`, or a `StaticCache` passed in) the decoding step
    is compiled with `torch.compile` on CPU too, where transformers compiles it on accelerators
    only. The prefill runs eagerly; the compiled step is kept on the model and reused by later
    calls (a new batch size or cache length compiles once more, with those sizes dynamic).
    `generate(..., disable_compile=True)` decodes eagerly; `compile_config=CompileConfig(...)`
    chooses the compiler's settings."""

    def _valid_auto_compile_criteria(self, model_kwargs: dict, generation_config) -> bool:
        cache = model_kwargs.get("cache")
        static = cache is not None and cache.is_compileable
        if static and generation_config.compile_config is None and self.device.type == "cpu":
            generation_config.compile_config = cpu_compile_config()
        return super()._valid_auto_compile_criteria(model_kwargs, generation_config)


def cpu_compile_config() -> CompileConfig:
    """The compile settings of a CPU decoding step: one graph per step (`fullgraph`, which the
    models allow); inductor's default mode (transformers' default, "reduce-overhead", is CUDA
    graphs); and inductor's decomposition of memory-bound matrix products (`decompose_mm_pass`,
    with its own CPU limits: one row, weights up to 2048 x 2048) into its fused multiply-and-sum
    loops. At batch 1 every product in a block is such a matrix-vector product; fused, they cost
    a 4-layer GPT-2 step ~1.5-2.5 ms less than the library's calls (measured on an AMD EPYC, of
    ~9 ms)."""
    options = {"post_grad_fusion_options": {"decompose_mm_pass": {}}}
    config = CompileConfig(fullgraph=True, mode=None, options=options)
    config._compile_all_devices = True  # transformers' switch for compiling off accelerators
    return config
