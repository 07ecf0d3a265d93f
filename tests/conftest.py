import atexit
import contextlib
import functools
import importlib.util
import io
import os
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
import venv
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedConfig

# Tests never download: a hub lookup must fail loudly rather than hang or fetch.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# generate() settings that a decoding test runs through: greedy, beam search returning two
# sequences, and top-k sampling (seeded by the test).
DECODING_MODES = [
    dict(do_sample=False),
    dict(do_sample=False, num_beams=3, num_return_sequences=2),
    dict(do_sample=True, top_k=20),
]
DECODING_MODE_NAMES = ["greedy", "beam", "sample"]


def assert_static_cache_generates_the_dynamic_caches_tokens(model, input_ids, **settings) -> None:
    """`generate()` with the static cache, its steps run eagerly, gives the dynamic cache's tokens
    (the same seed for both, for sampling)."""
    generated = {}
    for implementation in ("dynamic", "static"):
        torch.manual_seed(5)
        generated[implementation] = model.generate(
            input_ids,
            max_new_tokens=8,
            cache_implementation=implementation,
            disable_compile=True,
            **settings,
        )
    assert torch.equal(generated["static"], generated["dynamic"])


def block_config(
    hidden_size: int = 32,
    num_attention_heads: int = 4,
    intermediate_size: int = 64,
    hidden_act: str = "relu",
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
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        layer_norm_eps=layer_norm_eps,
        attn_implementation=attn_implementation,
    )


def copy_attention_into_torch(ours, reference: torch.nn.MultiheadAttention) -> None:
    """Our MultiHeadAttention's weights into `torch.nn.MultiheadAttention`, whose in_proj_weight
    stacks [W_Q; W_K; W_V] (our self-attention's `qkv_proj`; cross-attention's q_proj + kv_proj)."""
    projections = [ours.q_proj, ours.kv_proj] if ours.is_cross_attention else [ours.qkv_proj]
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        reference.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        reference.out_proj.weight.copy_(ours.out_proj.weight)
        reference.out_proj.bias.copy_(ours.out_proj.bias)


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


def wordpiece_tokenizer_of(words: int, pieces: int):
    """A WordPiece tokenizer built offline: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), then `words`
    words w0, w1, ... and `pieces` continuation pieces ##p0, ##p1, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + [f"w{i}" for i in range(words)] + [f"##p{i}" for i in range(pieces)]
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


ROOT = Path(__file__).resolve().parents[1]
# Real corpora next to the repository (see its README): GLUE, Multi30k, WikiText-2, tinyshakespeare.
SHARED_DATA = ROOT.parent / "shared" / "data"

_CHECK_NO_HF_SCRATCH = (
    "import importlib.util\n"
    "assert importlib.util.find_spec('hf_scratch') is None, 'hf_scratch is importable'\n"
)


@functools.cache
def _python_without_hf_scratch() -> str:
    """A fresh virtual environment that sees this environment's packages (torch, transformers, ...)
    but not hf_scratch: its site-packages names ours in a .pth file, and Python does not run the
    .pth files of a directory added that way, so hf_scratch's editable-install hook never loads."""
    folder = Path(tempfile.mkdtemp(prefix="venv-without-hf-scratch-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    venv.create(folder, with_pip=False)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site_packages) / "parent_environment.pth").write_text("\n".join(site.getsitepackages()))
    return str(python)


def run_without_hf_scratch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run Python code in a fresh virtual environment that has transformers but not hf_scratch (the
    code first checks that `import hf_scratch` is impossible), offline, with an empty cache of
    remote code: as a user who only has transformers would."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "",
        "HF_MODULES_CACHE": str(Path(cwd) / ".hf_modules"),
    }
    result = subprocess.run(
        [_python_without_hf_scratch(), "-c", _CHECK_NO_HF_SCRATCH + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return _checked(result)


def run_example(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run one of examples/*.py as a user would, in a fresh process."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return _checked(result)


# generate() settings that return every output field: scores, logits, attentions, hidden states.
EVERY_GENERATE_OUTPUT = dict(
    return_dict_in_generate=True,
    output_attentions=True,
    output_hidden_states=True,
    output_scores=True,
    output_logits=True,
)


def assert_same_structure(ours, theirs, name: str) -> None:
    """Equal values (to 1e-5) in the same nesting of tuples, None where the reference has None: two
    models' `generate()` or forward outputs, field by field."""
    if theirs is None or ours is None:
        assert ours is None and theirs is None, name
    elif torch.is_tensor(theirs):
        assert ours.shape == theirs.shape, f"{name}: {tuple(ours.shape)} != {tuple(theirs.shape)}"
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5, msg=name)
    else:
        assert len(ours) == len(theirs), name
        for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_structure(mine, reference, f"{name}[{index}]")


def example_script(name: str):
    """examples/<name>.py as a module, to call its `main(argv)` in the test's process: a fresh
    process per run would spend most of its time importing torch and transformers."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A small GPT that pretrain_gpt.py trains in a few seconds: 1 layer, hidden 32, blocks of 32 tokens.
TINY_GPT_RUN = [
    "--config_overrides",
    "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64",
    "--tokenizer_vocab_size", "300",
    "--block_size", "32",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16",
    "--disable_tqdm", "true",
]  # fmt: skip


@dataclass
class ScriptRun:
    output_dir: Path
    metrics: dict
    stdout: str
    warnings: list[str]


@pytest.fixture(scope="session")
def pretrained_gpt(tmp_path_factory) -> ScriptRun:
    """pretrain_gpt.py on the embedded corpus, in this process, with its default stages (train,
    then evaluate): 320 blocks, one epoch of 40 steps at a high learning rate, one sample. The
    GPT tests that need a trained folder (fine-tuning, evaluation alone, what a run writes) share
    it."""
    output_dir = tmp_path_factory.mktemp("gpt-pretraining") / "run"
    stdout = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(stdout):
        warnings.simplefilter("always")
        metrics = example_script("pretrain_gpt").main(
            [
                *TINY_GPT_RUN,
                "--output_dir", str(output_dir),
                "--max_train_samples", "320",
                "--max_eval_samples", "48",
                "--num_train_epochs", "1",
                "--learning_rate", "3e-3",
                "--warmup_steps", "5",
                "--logging_steps", "5",
                "--save_strategy", "no",
                "--num_samples", "1",
                "--max_new_tokens", "8",
            ]
        )  # fmt: skip
    return ScriptRun(output_dir, metrics, stdout.getvalue(), [str(w.message) for w in caught])


def _checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def tiny_bert_config(**overrides):
    from hf_scratch import ScratchBertConfig

    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    return ScratchBertConfig(**values)


def plain_sgd_arguments(output_dir: Path, batch_size: int, accumulation: int, **settings):
    """`TrainingArguments` under which splits of one batch can be compared exactly: constant-rate
    SGD (0.5, no weight decay) on CPU, seed 0, nothing saved or reported; `settings` add the run's
    length and logging."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        **settings,
    )


def assert_accumulation_matches_one_large_batch(make_model, dataset, output_dir: Path) -> None:
    """One SGD step of the Trainer over 8 rows gives the same weights as batch 8 in one step and as
    4 accumulated micro-batches of 2, from the same initial weights; and the weights did move."""
    from transformers import Trainer

    initial = make_model().state_dict()
    updates = {}
    for batch_size, accumulation in [(8, 1), (2, 4)]:
        model = make_model()
        model.load_state_dict(initial)
        arguments = plain_sgd_arguments(
            output_dir / str(accumulation),
            batch_size,
            accumulation,
            max_steps=1,
            logging_strategy="no",
        )
        Trainer(model=model, args=arguments, train_dataset=dataset).train()
        updates[accumulation] = model.state_dict()
    moved = False
    for name, value in updates[1].items():
        torch.testing.assert_close(updates[4][name], value, atol=1e-6, rtol=1e-5, msg=name)
        moved |= not torch.equal(value, initial[name])
    assert moved


def tiny_transformer_config(**overrides):
    from hf_scratch import ScratchTransformerConfig

    values = dict(
        vocab_size=61,
        max_position_embeddings=40,
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        hidden_dropout_prob=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    values.update(overrides)
    return ScratchTransformerConfig(**values)
