"""Multi-process training on CPU (gloo): the example scripts launched as 2 processes x batch 4, by
`accelerate launch` with configuration/accelerate/cpu_multi_process.yaml and by torchrun, train
exactly as 1 process x batch 8; the accelerate configs parse; FSDP2 as accelerate shards with
configuration/accelerate/fsdp.yaml trains our models exactly and gathers a full state dict.

Dropout is 0 in the launched runs (through --config_overrides): each process draws its own random
numbers, so with dropout the runs could not match. The runs share one tokenizer: the WordPiece
trainer does not give the same ids twice."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import (
    ROOT,
    SHARED_DATA,
    plain_sgd_arguments,
    run_example,
    tiny_bert_config,
    tiny_gpt_config,
    wordpiece_tokenizer_of,
)
from datasets import Dataset
from safetensors.torch import load_file
from transformers import Trainer

from hf_scratch import ScratchBertForPreTraining, ScratchGPTLMHeadModel
from hf_scratch.data import (
    ExampleSeededMaskCollator,
    ExampleSeededWholeWordMaskCollator,
    MaskingEpochCallback,
)
from hf_scratch.training import PreTrainingTrainer, model_is_sharded

CONFIGS = ROOT / "configuration" / "accelerate"
# `python -m` of the launchers of the interpreter running the tests (CI's virtual environment).
ACCELERATE = ["accelerate.commands.launch", "--main_process_port", "0"]
TORCHRUN = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

GPT_ARGUMENTS = [
    "--config_overrides",
    "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,intermediate_size=128,"
    "norm_first=true,hidden_dropout_prob=0,embedding_dropout_prob=0,attention_probs_dropout_prob=0",
    "--tokenizer_vocab_size", "512",
    "--block_size", "64",
    "--learning_rate", "3e-3",
    "--warmup_steps", "2",
    "--max_steps", "6",
    "--logging_steps", "1",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--num_samples", "0",
]  # fmt: skip

BERT_ARGUMENTS = [
    "--config_overrides",
    "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,intermediate_size=128,"
    "hidden_dropout_prob=0,attention_probs_dropout_prob=0",
    "--tokenizer_vocab_size", "1000",
    "--max_seq_length", "64",
    "--learning_rate", "3e-3",
    "--max_steps", "6",
    "--logging_steps", "1",
    "--eval_strategy", "no",
    "--save_strategy", "no",
]  # fmt: skip


def launch(launcher: list[str], script: Path, *args: str, cwd: Path) -> str:
    """Run `python -m <launcher> script args` offline; its output, or a failure with it."""
    result = subprocess.run(
        [sys.executable, "-m", *launcher, str(script), *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


def logged_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def assert_same_training(run: Path, reference: Path, steps: int) -> None:
    """The same loss at every logged step and the same saved weights. Two processes that each
    trained alone on batches of 4 would already differ at the first step."""
    losses, expected = logged_losses(run), logged_losses(reference)
    assert len(expected) == steps
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(expected), rtol=1e-4, atol=0)
    weights = load_file(run / "model.safetensors")
    expected_weights = load_file(reference / "model.safetensors")
    assert weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def gpt_one_process(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("gpt-1x8")
    run_example(
        "pretrain_gpt.py",
        *GPT_ARGUMENTS,
        "--per_device_train_batch_size", "8",
        "--output_dir", str(output_dir),
        cwd=output_dir,
    )  # fmt: skip
    return output_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [[*ACCELERATE, "--config_file", str(CONFIGS / "cpu_multi_process.yaml")], TORCHRUN],
    ids=["accelerate", "torchrun"],
)
def test_gpt_pretraining_on_two_processes_equals_one(gpt_one_process, tmp_path, launcher):
    """Each token is labelled, and the Trainer divides the LM loss by the labelled tokens of all
    processes (num_items_in_batch, average_tokens_across_devices). torchrun runs the script as it
    is: the example notices it was started as several processes without a GPU and uses gloo."""
    launch(
        launcher,
        ROOT / "examples" / "pretrain_gpt.py",
        *GPT_ARGUMENTS,
        "--tokenizer_name", str(gpt_one_process),
        "--per_device_train_batch_size", "4",
        "--output_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert_same_training(tmp_path, gpt_one_process, steps=6)


@pytest.mark.slow
def test_bert_pretraining_on_two_processes_equals_one(tmp_path):
    """Needs both of the example's choices: masks that depend on the example, not on which
    process collates it in which batch (ExampleSeededMaskCollator), and the MLM mean over the
    masked tokens of both processes (PreTrainingTrainer), since the halves of a batch hold
    different numbers of masked tokens."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_example(
        "pretrain_bert.py",
        *BERT_ARGUMENTS,
        "--per_device_train_batch_size", "8",
        "--output_dir", str(one),
        cwd=tmp_path,
    )  # fmt: skip
    launch(
        [*ACCELERATE, "--config_file", str(CONFIGS / "cpu_multi_process.yaml")],
        ROOT / "examples" / "pretrain_bert.py",
        *BERT_ARGUMENTS,
        "--tokenizer_name", str(one),
        "--per_device_train_batch_size", "4",
        "--output_dir", str(two),
        cwd=tmp_path,
    )  # fmt: skip
    assert_same_training(two, one, steps=6)


# --------------------------------------------------------------------------------------------------
# The pieces that make BERT's runs match, in one process
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    return wordpiece_tokenizer_of(words=74, pieces=20)


def _pairs(count: int, seed: int = 0) -> list[dict]:
    """[CLS] A [SEP] B [SEP] rows of different lengths, token ids 5..98."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(count):
        a, b = (int(n) for n in torch.randint(3, 20, (2,), generator=generator))
        ids = [2, *torch.randint(5, 99, (a,), generator=generator).tolist(), 3]
        ids += [*torch.randint(5, 99, (b,), generator=generator).tolist(), 3]
        types = [0] * (a + 2) + [1] * (b + 1)
        rows.append({"input_ids": ids, "token_type_ids": types, "next_sentence_label": index % 2})
    return rows


@pytest.mark.parametrize(
    "collator_class", [ExampleSeededMaskCollator, ExampleSeededWholeWordMaskCollator]
)
def test_example_seeded_masks_depend_on_the_example_only(wordpiece_tokenizer, collator_class):
    rows = _pairs(8)
    collator = collator_class(wordpiece_tokenizer, mlm_probability=0.3, seed=0)
    whole = collator(rows)
    halves = [collator(rows[4:]), collator(rows[:4])]  # other batches, another order, padding
    for index, row in enumerate(rows):
        half, position = (halves[1], index) if index < 4 else (halves[0], index - 4)
        length = len(row["input_ids"])
        for key in ("input_ids", "labels"):
            assert torch.equal(whole[key][index, :length], half[key][position, :length])
        assert (whole["labels"][index, length:] == -100).all()
    assert (whole["labels"] != -100).any()
    collator.epoch = 1
    assert not torch.equal(collator(rows)["labels"], whole["labels"])  # new masks each epoch
    other_seed = collator_class(wordpiece_tokenizer, mlm_probability=0.3, seed=1)
    assert not torch.equal(other_seed(rows)["labels"], whole["labels"])


def test_example_seeded_masking_is_15_percent_then_80_10_10(wordpiece_tokenizer):
    generator = torch.Generator().manual_seed(0)
    original = torch.randint(5, 79, (600, 128), generator=generator)  # no "##" pieces
    original[:, 0], original[:, 60], original[:, -1] = 2, 3, 3
    collator = ExampleSeededMaskCollator(wordpiece_tokenizer, seed=0)
    batch = collator([{"input_ids": row} for row in original])
    selected = batch["labels"] != -100
    special = (original == 2) | (original == 3)
    assert not (selected & special).any()
    assert abs(selected.sum().item() / (~special).sum().item() - 0.15) < 0.01
    share = selected.sum().item()
    masked = ((batch["input_ids"] == 4) & selected).sum().item() / share
    unchanged = ((batch["input_ids"] == original) & selected).sum().item() / share
    assert abs(masked - 0.8) < 0.015 and abs(unchanged - 0.1) < 0.015
    torch.testing.assert_close(batch["labels"][selected], original[selected])


def test_pretraining_trainer_gives_the_steps_of_one_large_batch(wordpiece_tokenizer, tmp_path):
    """1 x batch 8, 2 x batch 4 and 4 x batch 2 (gradient accumulation) give the same weights over
    2 epochs with PreTrainingTrainer; the plain Trainer's mean of micro-batch means does not, the
    micro-batches holding different numbers of masked tokens. Two processes split a batch the way
    accumulation does, and PreTrainingTrainer gathers the counts of both."""
    dataset = Dataset.from_list(_pairs(16, seed=1))
    torch.manual_seed(0)
    initial = ScratchBertForPreTraining(tiny_bert_config(sparse_prediction=True)).state_dict()

    def train(trainer_class, batch_size, accumulation):
        model = ScratchBertForPreTraining(tiny_bert_config(sparse_prediction=True))
        model.load_state_dict(initial)
        collator = ExampleSeededMaskCollator(wordpiece_tokenizer, mlm_probability=0.3, seed=0)
        arguments = plain_sgd_arguments(
            tmp_path / f"{trainer_class.__name__}-{accumulation}",
            batch_size,
            accumulation,
            num_train_epochs=2,
            max_grad_norm=0.0,
            logging_steps=1,
        )
        trainer = trainer_class(
            model=model,
            args=arguments,
            train_dataset=dataset,
            data_collator=collator,
            callbacks=[MaskingEpochCallback(collator)],
        )
        trainer.train()
        assert collator.epoch == 1
        return model.state_dict(), [e["loss"] for e in trainer.state.log_history if "loss" in e]

    expected, expected_losses = train(PreTrainingTrainer, 8, 1)
    assert len(expected_losses) == 4
    for batch_size, accumulation in [(4, 2), (2, 4)]:
        weights, losses = train(PreTrainingTrainer, batch_size, accumulation)
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(expected_losses))
        for name, value in expected.items():
            torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=1e-5, msg=name)
    plain, _ = train(Trainer, 2, 4)
    assert max((plain[name] - value).abs().max() for name, value in expected.items()) > 1e-3


# --------------------------------------------------------------------------------------------------
# The accelerate configs
# --------------------------------------------------------------------------------------------------


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    configs = {path.stem: load_config_from_file(str(path)) for path in CONFIGS.glob("*.yaml")}
    assert set(configs) == {
        "cpu_multi_process",
        "multi_gpu",
        "fsdp",
        "deepspeed_zero2",
        "deepspeed_zero3",
    }
    cpu = configs["cpu_multi_process"]
    # MULTI_GPU makes `accelerate launch` start the processes (torchrun); use_cpu keeps them on CPU.
    assert (cpu.distributed_type, cpu.num_processes, cpu.use_cpu) == (
        DistributedType.MULTI_GPU,
        2,
        True,
    )
    assert configs["multi_gpu"].distributed_type == DistributedType.MULTI_GPU
    assert not configs["multi_gpu"].use_cpu
    fsdp = configs["fsdp"]
    assert fsdp.distributed_type == DistributedType.FSDP
    assert fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    layer = fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    for model in (
        ScratchGPTLMHeadModel(tiny_gpt_config()),
        ScratchBertForPreTraining(tiny_bert_config()),
    ):
        assert layer in {type(module).__name__ for module in model.modules()}
    for stage in (2, 3):
        config = configs[f"deepspeed_zero{stage}"]
        assert config.distributed_type == DistributedType.DEEPSPEED
        assert config.deepspeed_config["zero_stage"] == stage
    # save_model gathers the full weights of ZeRO-3 only with this
    assert configs["deepspeed_zero3"].deepspeed_config["zero3_save_16bit_model"] is True


def test_model_is_sharded_under_fsdp_and_zero3_only():
    """Where the examples skip their one-process forward passes (samples, attention plots)."""

    def trainer(fsdp=False, zero_stage=None):
        plugin = SimpleNamespace(zero_stage=zero_stage)
        return SimpleNamespace(
            is_fsdp_enabled=fsdp,
            is_deepspeed_enabled=zero_stage is not None,
            accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
        )

    assert model_is_sharded(trainer(fsdp=True)) and model_is_sharded(trainer(zero_stage=3))
    assert not model_is_sharded(trainer()) and not model_is_sharded(trainer(zero_stage=2))


# --------------------------------------------------------------------------------------------------
# FSDP
# --------------------------------------------------------------------------------------------------

# accelerate 1.15 turns FSDP on only for GPU-like devices: on CPU the Trainer under fsdp.yaml
# trains plain DDP. This script applies accelerate's own FSDP2 preparation (fsdp2_prepare_model,
# what the Trainer runs on GPUs), configured by `accelerate launch --config_file fsdp.yaml` through
# its FSDP_* variables, to GPT and BERT on CPU (gloo): 3 SGD steps on 2 x 4 rows against the
# unsharded model on the 8 rows, then the full state dict gathered as the Trainer's final save
# does and saved by the sharded model's `save_pretrained`, as `Trainer._save` calls it.
FSDP_SCRIPT = """
import json, sys, types
import torch, torch.distributed as dist
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor
from hf_scratch import ScratchBertForPreTraining, ScratchGPTLMHeadModel

sys.path.insert(0, sys.argv[2])
from conftest import tiny_bert_config, tiny_gpt_config

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
output = sys.argv[1]
generator = torch.Generator().manual_seed(0)


def gpt_batch():
    ids = torch.randint(1, 101, (8, 12), generator=generator)
    return {"input_ids": ids, "labels": ids.clone()}


def bert_batch():
    ids = torch.randint(5, 99, (8, 12), generator=generator)
    labels = torch.where(torch.rand(ids.shape, generator=generator) < 0.3, ids, -100)
    labels[:, 1] = ids[:, 1]
    return {"input_ids": ids, "labels": labels,
            "next_sentence_label": torch.randint(0, 2, (8,), generator=generator)}


def global_sum(value):
    value = torch.as_tensor(value, dtype=torch.float32).clone()
    dist.all_reduce(value)
    return value


def local_loss(name, outputs, rows):
    # the loss of this rank's rows, scaled so that FSDP's mean of the ranks' gradients is the
    # gradient of the 8 rows' loss (as the Trainer's counts across processes do)
    if name == "gpt":
        count = (rows["labels"][:, 1:] != -100).sum()
        return outputs.loss * count / global_sum(count) * world
    count = (rows["labels"] != -100).sum()
    return outputs.mlm_loss * count / global_sum(count) * world + outputs.nsp_loss


results = {}
for name, make, make_batch in [
    ("gpt", lambda: ScratchGPTLMHeadModel(tiny_gpt_config()), gpt_batch),
    ("bert", lambda: ScratchBertForPreTraining(tiny_bert_config(sparse_prediction=True)),
     bert_batch),
]:
    torch.manual_seed(0)
    reference, model = make(), make()
    model.load_state_dict(reference.state_dict())
    plugin = FullyShardedDataParallelPlugin()  # from accelerate launch's FSDP_* variables
    accelerator = types.SimpleNamespace(
        state=types.SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None,
        parallelism_config=None, mixed_precision="no", device=torch.device("cpu"),
        is_main_process=rank == 0,
    )
    model = fsdp2_prepare_model(accelerator, model)
    assert all(isinstance(p, DTensor) for p in model.parameters())
    local = sum(p.to_local().numel() for p in model.parameters())
    assert local < sum(p.numel() for p in reference.parameters())
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (reference, model)]
    losses = []
    for _ in range(3):
        batch = make_batch()
        expected = reference(**batch).loss
        expected.backward()
        rows = {key: value[rank * 4 : rank * 4 + 4] for key, value in batch.items()}
        loss = local_loss(name, model(**rows), rows)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        losses.append([expected.item(), (global_sum(loss.detach()) / world).item()])
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))
    if rank == 0:
        model.save_pretrained(f"{output}/{name}", state_dict=full)
        weights = {key: value.clone() for key, value in reference.state_dict().items()}
        save_file(weights, f"{output}/{name}-reference.safetensors")
        results[name] = {"losses": losses, "units": sorted(
            {type(m).__name__ for m in model.modules() if type(m).__name__.startswith("FSDP")})}
if rank == 0:
    with open(f"{output}/results.json", "w") as f:
        json.dump(results, f)
dist.barrier()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fsdp")
    script = folder / "fsdp_check.py"
    script.write_text(FSDP_SCRIPT)
    launch(
        [*ACCELERATE, "--config_file", str(CONFIGS / "fsdp.yaml"), "--num_processes", "2",
         "--mixed_precision", "no"],
        script,
        str(folder),
        str(ROOT / "tests"),  # for conftest's tiny configs
        cwd=folder,
    )  # fmt: skip
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, model_class", [("gpt", ScratchGPTLMHeadModel), ("bert", ScratchBertForPreTraining)]
)
def test_fsdp2_sharding_of_fsdp_yaml_trains_exactly_and_saves_the_full_model(
    fsdp_run, name, model_class
):
    results = json.loads((fsdp_run / "results.json").read_text())[name]
    # each TransformerBlock its own unit; the embeddings and the tied output layer together
    assert "FSDPTransformerBlock" in results["units"]
    expected, sharded = zip(*results["losses"], strict=True)
    torch.testing.assert_close(torch.tensor(sharded), torch.tensor(expected), rtol=1e-5, atol=0)
    reference = load_file(fsdp_run / f"{name}-reference.safetensors")
    loaded = model_class.from_pretrained(fsdp_run / name).state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(loaded[key], value, atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.slow
def test_fsdp2_saved_folder_is_shareable(fsdp_run):
    config = json.loads((fsdp_run / "gpt" / "config.json").read_text())
    assert all(value.split(".")[0].startswith(("modeling_", "configuration_"))
               for value in config["auto_map"].values()), config["auto_map"]  # fmt: skip
    assert (fsdp_run / "gpt" / "modeling_gpt.py").is_file()


@pytest.mark.slow
def test_translation_and_fine_tuning_examples_run_on_two_processes(tmp_path):
    """The other examples also run unchanged under `accelerate launch`: translation (generation
    during evaluation and on the test split, gathered across the processes) and BERT fine-tuning."""
    from hf_scratch.tokenization import train_wordpiece

    launcher = [*ACCELERATE, "--config_file", str(CONFIGS / "cpu_multi_process.yaml")]
    translation = tmp_path / "translation"
    launch(
        launcher,
        ROOT / "examples" / "train_translation.py",
        "--output_dir", str(translation),
        "--config_overrides",
        "hidden_size=32,encoder_layers=1,decoder_layers=1,num_attention_heads=2,intermediate_size=64",
        "--max_train_samples", "64",
        "--max_eval_samples", "16",
        "--max_predict_samples", "16",
        "--tokenizer_vocab_size", "300",
        "--max_steps", "4",
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "8",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--num_beams", "2",
        cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads((translation / "all_results.json").read_text())
    assert {"eval_bleu", "test_bleu"} <= set(metrics)

    pretrained = tmp_path / "bert"
    sentences = (SHARED_DATA / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:400]
    tokenizer = train_wordpiece(sentences, 300, show_progress=False)
    ScratchBertForPreTraining(tiny_bert_config(vocab_size=len(tokenizer))).save_pretrained(
        pretrained
    )
    tokenizer.save_pretrained(pretrained)
    fine_tuned = tmp_path / "sst2"
    launch(
        launcher,
        ROOT / "examples" / "finetune_bert.py",
        "--model_name_or_path", str(pretrained),
        "--task", "SST-2",
        "--max_train_samples", "64",
        "--max_eval_samples", "32",
        "--max_seq_length", "32",
        "--per_device_train_batch_size", "8",
        "--max_steps", "4",
        "--output_dir", str(fine_tuned),
        cwd=tmp_path,
    )  # fmt: skip
    assert "eval_accuracy" in json.loads((fine_tuned / "eval_results.json").read_text())
