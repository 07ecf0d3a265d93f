"""Converting checkpoint folders, and the `hf-scratch-convert` command: the architecture is read
from the source folder's config.json, the result written with `save_pretrained` (safetensors),
the tokenizer files copied along."""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import transformers
from transformers import PreTrainedModel

from .families import DEFAULT_ARCHITECTURE, FROM_REFERENCE, from_reference, to_reference

_TOKENIZER_FILES = re.compile(
    r"(tokenizer.*\.json|special_tokens_map\.json|added_tokens\.json|vocab.*|merges\.txt|.*\.spm|.*\.model)$"
)


def _copy_tokenizer_files(source: Path, destination: Path) -> list[str]:
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and _TOKENIZER_FILES.fullmatch(path.name):
            shutil.copy2(path, destination / path.name)
            copied.append(path.name)
    return copied


def convert_folder(
    source: str | Path, destination: str | Path, to_hf: bool = False
) -> PreTrainedModel:
    """Convert a checkpoint folder in either direction; returns the converted model."""
    source, destination = Path(source), Path(destination)
    config_path = source / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{source} has no config.json")
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    if to_hf:
        if not config.get("model_type", "").startswith("hf_scratch"):
            raise ValueError(
                f"{source} is not an hf_scratch checkpoint "
                f"(model_type {config.get('model_type')!r})"
            )
        our_classes = {
            model_class.__name__: model_class for model_class, _ in FROM_REFERENCE.values()
        }
        name = architectures[0] if architectures else None
        if name not in our_classes:
            raise ValueError(f"cannot convert {name}; supported: {sorted(our_classes)}")
        model = our_classes[name].from_pretrained(source)
        converted = to_reference(model)
    else:
        model_type = config.get("model_type")
        if model_type not in DEFAULT_ARCHITECTURE:
            raise ValueError(
                f"unsupported model_type {model_type!r}; supported: {sorted(DEFAULT_ARCHITECTURE)}"
            )
        architecture = architectures[0] if architectures else DEFAULT_ARCHITECTURE[model_type]
        reference = getattr(transformers, architecture).from_pretrained(source)
        converted = from_reference(reference)
    destination.mkdir(parents=True, exist_ok=True)
    converted.save_pretrained(destination)
    _copy_tokenizer_files(source, destination)
    return converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-scratch-convert",
        description="Convert GPT, GPT-2, BERT and Marian checkpoints to and from hf_scratch.",
    )
    parser.add_argument("source", help="checkpoint folder with config.json and weights")
    parser.add_argument("destination", help="folder to write the converted checkpoint to")
    parser.add_argument(
        "--to-hf", action="store_true", help="convert an hf_scratch folder to transformers"
    )
    args = parser.parse_args(argv)
    try:
        model = convert_folder(args.source, args.destination, to_hf=args.to_hf)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {type(model).__name__} to {args.destination}")
    return 0
