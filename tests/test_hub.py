"""Sharing on the hub: an example run with `--push_to_hub` uploads a folder that carries the model,
its source files, the tokenizer and hf_scratch's model card. The hub itself is replaced by a
recorder (tests are offline); loading such folders without hf_scratch is tested per family
(`run_without_hf_scratch`)."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import transformers.trainer
from conftest import ROOT, SHARED_DATA
from huggingface_hub import ModelCard


class RecordingHub:
    """Stands in for `huggingface_hub.HfApi`: creates no repository, and records what every
    upload_folder call would have uploaded (file names, and the model card's text)."""

    def __init__(self):
        self.created, self.uploads = [], []

    def create_repo(self, repo_id, **kwargs):
        self.created.append(repo_id)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        folder = Path(folder_path)
        files = sorted(
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file() and not path.relative_to(folder).parts[0].startswith("checkpoint-")
        )
        card = folder / "README.md"
        self.uploads.append(
            {
                "repo_id": repo_id,
                "files": files,
                "card": card.read_text() if card.exists() else None,
                "commit_message": kwargs.get("commit_message"),
            }
        )
        return SimpleNamespace(commit_url=f"https://hub.example/{repo_id}")


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_pretraining_with_push_to_hub_uploads_model_code_tokenizer_and_card(tmp_path, monkeypatch):
    hub = RecordingHub()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    output_dir = tmp_path / "tiny-gpt"
    corpus = tmp_path / "corpus.txt"  # the README's `--train_file corpus.txt`
    shakespeare = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text().splitlines()
    corpus.write_text("\n".join(shakespeare[:2000]))
    _load_example("pretrain_gpt").main(
        [
            "--train_file", str(corpus),
            "--config_overrides",
            "num_hidden_layers=2,hidden_size=32,num_attention_heads=2,intermediate_size=64",
            "--tokenizer_vocab_size", "300",
            "--block_size", "32",
            "--max_steps", "6",
            "--logging_steps", "2",
            "--eval_strategy", "no",
            "--save_strategy", "no",
            "--num_samples", "0",
            "--output_dir", str(output_dir),
            "--push_to_hub",
            "--hub_model_id", "someone/tiny-gpt",
        ]
    )  # fmt: skip

    assert hub.created == ["someone/tiny-gpt"]
    final = hub.uploads[-1]
    assert final["repo_id"] == "someone/tiny-gpt"
    for name in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "modeling_gpt.py",
        "configuration_gpt.py",
        "attention.py",
        "layers.py",
        "tokenizer.json",
        "README.md",
        "plots/training_curves.png",
        "plots/attention_self_attention_causal.png",
    ]:
        assert name in final["files"], name
    config = json.loads((output_dir / "config.json").read_text())
    assert {"AutoConfig", "AutoModel", "AutoModelForCausalLM"} <= set(config["auto_map"])

    card = ModelCard(final["card"])
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert "hf_scratch" in card.data.tags
    text = card.text
    loading = 'AutoModelForCausalLM.from_pretrained("someone/tiny-gpt", trust_remote_code=True)'
    assert loading in text
    assert "Radford et al. 2018" in text
    assert "| `num_hidden_layers` | 2 |" in text and "| `hidden_size` | 32 |" in text
    assert "the text file corpus.txt" in text  # the training data
    assert "| optimizer steps done | 6 |" in text
    assert "eval_loss" in text and "perplexity" in text  # the results
    assert "](plots/training_curves.png)" in text
