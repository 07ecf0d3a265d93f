"""BERT: hf_scratch against transformers' BertForPreTraining (sdpa), same weights.

    python benchmarks/bench_bert.py [--repeats N] [--smoke] [--section NAME]

Ours is converted from the reference with `hf_scratch.convert.from_reference`; repetitions are
interleaved and medians reported (fp32, CPU). Ratios are ours/reference in throughput (> 1: ours is
faster) and in memory (< 1: ours uses less; the peak resident memory a step adds, see bench_gpt.py).
MFU counts the FLOPs each model does: with sparse prediction ours projects only the masked rows.
- Pre-training step (MLM + NSP, backward, AdamW) with 15% of the tokens masked, on the small config
  (4 layers, hidden 256, 4 heads, sequence 128, batch 8) and at BERT-base size (batch 8), with
  sparse MLM prediction on and off.
- Inference forward (the encoder and both heads, no labels) at both sizes.
- A batch with 50% padding (half of each row padded), against the same real tokens padding-free
  (one row, positions restarting at each sequence, as `DataCollatorWithFlattening` packs them) and
  packed into a rectangle without padding (the ideal), to show what padding costs and what
  padding-free batches save.

`--smoke` checks that it runs: every section once, in one process, at the tiny sizes of `TINY`
(the "BERT-base" rows then measure a tiny stand-in); the numbers mean nothing.
"""

from dataclasses import dataclass
from functools import partial

import torch
from common import (
    COMPARISON_HEADER,
    benchmark_arguments,
    inference_row,
    interleaved_medians,
    interleaved_peak_memory_mib,
    machine_peak_gflops,
    mfu,
    parse,
    print_table,
    run_sections,
    smoke_or,
    throughput_row,
    training_step,
)
from transformers import BertConfig, BertForPreTraining

from hf_scratch.convert import from_reference


@dataclass(frozen=True)
class Sizes:
    small: dict  # config of the "small" rows and of the padding comparison
    base: dict  # config of the "BERT-base" rows
    batch: int
    length: int


FULL = Sizes(
    small=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    base=dict(),  # BertConfig's defaults are BERT-base
    batch=8,
    length=128,
)
TINY_COMMON = dict(num_hidden_layers=2, vocab_size=1000)  # BERT's vocabulary is 30,522
TINY = Sizes(  # --smoke
    small=dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, **TINY_COMMON),
    base=dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, **TINY_COMMON),
    batch=4,
    length=16,
)


def chosen_sizes() -> Sizes:
    """The sizes of this run: `FULL`, or `TINY` with `--smoke`."""
    return smoke_or(FULL, TINY)


def pair(sizes: dict, sparse: bool):
    torch.manual_seed(0)
    reference = BertForPreTraining._from_config(BertConfig(**sizes), attn_implementation="sdpa")
    ours = from_reference(reference)
    ours.config.sparse_prediction = sparse
    return ours.train(), reference.train()


def pretraining_batch(vocab_size: int, padded: bool = False):
    size = chosen_sizes()
    batch, length = size.batch, size.length
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if padded:
        attention_mask[:, length // 2 :] = 0
    masked = (torch.rand(input_ids.shape, generator=generator) < 0.15) & attention_mask.bool()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": (torch.arange(length) >= length // 4).long().expand(batch, length),
        "labels": torch.where(masked, input_ids, -100),
        "next_sentence_label": torch.randint(0, 2, (batch,), generator=generator),
    }


def forward_flops(config, batch: int, length: int, predicted_rows: int) -> float:
    """Matmul FLOPs of a forward pass: projections, attention, the MLM transform and vocabulary
    projection over `predicted_rows` positions (all of them when dense)."""
    C, F, L, V = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.vocab_size,
    )
    tokens = batch * length
    encoder = 2 * tokens * L * (4 * C * C + 2 * C * F) + 2 * 2 * batch * L * length * length * C
    return encoder + 2 * predicted_rows * (C * C + C * V)


def bench_pretraining(label: str, sizes: dict, sparse: bool, peak: float, repeats: int):
    ours, reference = pair(sizes, sparse)
    batch = pretraining_batch(reference.config.vocab_size)
    steps = {"ours": training_step(ours, batch), "reference": training_step(reference, batch)}
    times = interleaved_medians(
        steps, repeats=repeats, warmup=1, min_seconds=0 if label != "small" else 2
    )
    memory = interleaved_peak_memory_mib(steps)
    tokens = batch["input_ids"].numel()
    # the reference projects every position; ours only the masked ones when sparse
    predicted = int((batch["labels"] != -100).sum()) if sparse else tokens
    shape = batch["input_ids"].shape
    flops = {
        "reference": 3 * forward_flops(reference.config, *shape, tokens),
        "ours": 3 * forward_flops(reference.config, *shape, predicted),
    }
    name = f"pretrain step, {label}, sparse {'on' if sparse else 'off'}"
    differences = "sparse MLM prediction (masked rows only); lean loss" if sparse else "lean loss"
    utilization = mfu(flops, times, peak)
    return [throughput_row(name, tokens, times, utilization, memory, differences)]


def bench_inference(label: str, sizes: dict, repeats: int) -> list[list]:
    ours, reference = pair(sizes, sparse=False)
    ours.eval()
    reference.eval()
    batch = pretraining_batch(reference.config.vocab_size)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    calls = {"ours": lambda: ours(**inputs), "reference": lambda: reference(**inputs)}
    tokens = inputs["input_ids"].numel()
    label = f"inference, {label}"
    return [inference_row(label, calls, tokens, None, None, "implementation only", repeats)]


def padding_free(padded: dict) -> dict:
    """The real tokens of a padded batch as one row, each sequence after the other with its
    positions restarting at 0 and no attention mask: what transformers' `DataCollatorWithFlattening`
    gives, and what the model turns into a block-diagonal mask (`packed_sequence_mask`)."""
    keep = padded["attention_mask"].bool()
    flat = {key: padded[key][keep][None] for key in ("input_ids", "token_type_ids", "labels")}
    lengths = keep.sum(-1).tolist()
    flat["position_ids"] = torch.cat([torch.arange(n) for n in lengths])[
        None
    ]  # (1, sum of lengths)
    return flat


def bench_padding(repeats: int) -> list[list]:
    """The same real tokens as a half-padded batch (8 x 128), padding-free (1 x 512, positions
    restarting) and packed (8 x 64): how much the padding costs ours (the reference pays alike),
    and how much of it padding-free batches save. MLM loss only: a padding-free row pools one
    [CLS], so next-sentence prediction has no per-sequence output there."""
    size = chosen_sizes()
    ours, _ = pair(size.small, sparse=True)
    padded = pretraining_batch(ours.config.vocab_size, padded=True)
    del padded["next_sentence_label"]
    half = size.length // 2
    batches = {
        "padded": padded,
        "padding-free": padding_free(padded),
        "packed": {key: value[:, :half] for key, value in padded.items()},
    }
    times = interleaved_medians(
        {name: training_step(ours, batch) for name, batch in batches.items()},
        repeats=repeats,
        warmup=1,
    )
    real_tokens = int(padded["attention_mask"].sum())
    return [
        [f"{name} {tuple(batch['input_ids'].shape)}", real_tokens / times[name],
         times[name] * 1e3, times[name] / times["packed"]]
        for name, batch in batches.items()
    ]  # fmt: skip


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    args = parse(parser)
    repeats = args.repeats
    peak = machine_peak_gflops(args)
    size = chosen_sizes()
    configs = {"small": size.small, "BERT-base": size.base}
    sections = {
        f"pretrain {label} sparse {sparse}": partial(
            bench_pretraining, label, configs[label], sparse == "on", peak, repeats
        )
        for label in configs
        for sparse in ("on", "off")
    }
    sections |= {
        f"inference {label}": partial(bench_inference, label, configs[label], repeats)
        for label in configs
    }
    sections["padding"] = partial(bench_padding, repeats)
    rows = run_sections(sections, args, peak)
    if args.section is not None:
        return
    padding = rows.pop("padding")
    print("tokens/s; ratio = ours/reference")
    print_table(COMPARISON_HEADER, [row for section in rows.values() for row in section])
    print(
        "\nours, small config, one MLM pre-training step on the same real tokens: half-padded, "
        "padding-free, packed"
    )
    print_table(["batch", "real tokens/s", "ms per step", "time / packed"], padding)


if __name__ == "__main__":
    main()
