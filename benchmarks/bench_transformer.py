"""The Transformer: hf_scratch against transformers' MarianMTModel (sdpa), same config and weights.

    python benchmarks/bench_transformer.py [--repeats N] [--smoke] [--section NAME]

Each pair is one `MarianMTModel` and its conversion by `hf_scratch.convert.from_reference`, so both
hold identical weights and compute the same loss (Marian's, without label smoothing); their
repetitions are interleaved and medians reported (fp32, CPU). Ratios are ours/reference in
throughput (> 1: ours is faster) and in memory (< 1: ours uses less).
- Training step (forward, backward, AdamW step) on the small config: 3 + 3 layers, d_model 256,
  4 heads, d_ff 1024, vocabulary 8,000, source and target 64 tokens, batch 16. Model FLOPs
  utilization (MFU) is against the fp32 matmul peak measured here. Memory is the peak resident
  memory a step adds over the resident memory before it (activations, gradients, temporaries),
  read from /proc (Linux).
- Inference forward at base size (6 + 6 layers, d_model 512, 8 heads, d_ff 2048, the opus-mt
  vocabulary of 58,101), batch 16, 64 tokens each side.
- `generate()`: greedy and beam search (4 beams), 48 new tokens after a 64-token source, batch 1 and
  16, small and base configs, no end-of-sequence token (so that every run generates 48 tokens).

`--smoke` checks that it runs and that both models generate the same tokens: every section once, in
one process, at the tiny sizes of `TINY`; the numbers mean nothing.
"""

from dataclasses import dataclass
from functools import partial

import torch
from common import (
    benchmark_arguments,
    inference_row,
    machine_peak_gflops,
    parse,
    run_sections,
    smoke_or,
    training_rows,
)
from decoding import (
    ctranslate2_decoder,
    decoding_rows,
    memory_bandwidth_gbs,
    print_tables,
    weight_bytes,
)
from transformers import MarianConfig, MarianMTModel

from hf_scratch.convert import from_reference


def layout(vocab_size: int, d_model: int, layers: int, heads: int, ffn_dim: int) -> dict:
    """MarianConfig sizes, the encoder's and the decoder's alike."""
    return dict(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
    )


@dataclass(frozen=True)
class Sizes:
    small: dict  # config of training and of the "small" generate() rows
    base: dict  # config of the forward pass and of the "base" generate() rows
    batch: int  # training and forward
    length: int  # source and target tokens
    new_tokens: int  # generate()
    generate_batches: tuple[int, ...]
    decode_vocabulary: int  # the small config's vocabulary in generate()


FULL = Sizes(
    small=layout(vocab_size=8000, d_model=256, layers=3, heads=4, ffn_dim=1024),
    base=layout(vocab_size=58101, d_model=512, layers=6, heads=8, ffn_dim=2048),
    batch=16,
    length=64,
    new_tokens=48,
    generate_batches=(1, 16),
    decode_vocabulary=32000,
)
TINY = Sizes(  # --smoke
    small=layout(vocab_size=1000, d_model=32, layers=2, heads=2, ffn_dim=64),
    base=layout(vocab_size=1000, d_model=64, layers=2, heads=4, ffn_dim=128),
    batch=2,
    length=16,
    new_tokens=8,
    generate_batches=(1, 2),
    decode_vocabulary=1000,
)


def chosen_sizes() -> Sizes:
    """The sizes of this run: `FULL`, or `TINY` with `--smoke`."""
    return smoke_or(FULL, TINY)


def reference_pair(sizes: dict):
    torch.manual_seed(0)
    config = MarianConfig(
        **sizes,
        max_position_embeddings=512,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=sizes["vocab_size"] - 1,
        decoder_start_token_id=sizes["vocab_size"] - 1,
        eos_token_id=0,
        forced_eos_token_id=None,
    )
    reference = MarianMTModel._from_config(config, attn_implementation="sdpa")
    reference.eval()  # built from a config, it starts in training mode (dropout on)
    return from_reference(reference), reference


def forward_flops(config, batch: int, source: int, target: int) -> float:
    """Matmul FLOPs of one forward pass: 2 per multiply-add; projections, QK^T and AV, the output
    projection."""
    C, F, V = config.d_model, config.encoder_ffn_dim, config.vocab_size
    encoder = batch * source * config.encoder_layers * (4 * C * C + 2 * C * F)
    encoder += batch * config.encoder_layers * 2 * source * source * C
    decoder_projections = batch * target * (4 * C * C + 2 * C * C + 2 * C * F)  # self, cross Q/O
    decoder = config.decoder_layers * (
        decoder_projections
        + batch * source * 2 * C * C  # cross-attention K and V of the encoder output
        + batch * 2 * (target * target + target * source) * C
    )
    return 2 * (encoder + decoder + batch * target * C * V)


def random_batch(vocab_size: int, batch: int) -> dict[str, torch.Tensor]:
    """`batch` random sources and targets, both of the run's `length`."""
    length = chosen_sizes().length
    torch.manual_seed(1)
    return {
        "input_ids": torch.randint(1, vocab_size - 1, (batch, length)),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "labels": torch.randint(1, vocab_size - 1, (batch, length)),
    }


def bench_training(peak: float, repeats: int) -> list[list]:
    size = chosen_sizes()
    ours, reference = reference_pair(size.small)
    ours.train()
    reference.train()
    batch = random_batch(reference.config.vocab_size, size.batch)
    flops = 3 * forward_flops(reference.config, size.batch, size.length, size.length)
    tokens = batch["input_ids"].numel() + batch["labels"].numel()
    differences = "lean loss, Marian's (no label smoothing) in both"
    label = "train step, small"
    return training_rows(label, ours, reference, batch, tokens, flops, peak, repeats, differences)


def bench_inference(peak: float, repeats: int) -> list[list]:
    size = chosen_sizes()
    ours, reference = reference_pair(size.base)
    batch = random_batch(reference.config.vocab_size, size.batch)
    calls = {"ours": lambda: ours(**batch), "reference": lambda: reference(**batch)}
    flops = forward_flops(reference.config, size.batch, size.length, size.length)
    tokens = batch["input_ids"].numel() + batch["labels"].numel()
    label, differences = "forward, base", "lean loss"
    return [inference_row(label, calls, tokens, flops, peak, differences, repeats)]


def bench_generation(repeats: int, name: str) -> list[list]:
    """The generate() rows of the small (with the vocabulary of 32,000) or the base config
    (`name`): greedy and beam search at batch 1 and 16 (base: batch 1)."""
    size = chosen_sizes()
    sizes = {**size.small, "vocab_size": size.decode_vocabulary} if name == "small" else size.base
    ours, reference = reference_pair(sizes)
    new_tokens = size.new_tokens
    # No end-of-sequence token: every run generates exactly `new_tokens` tokens.
    for model in (ours, reference):
        model.generation_config.eos_token_id = None
        model.generation_config.forced_eos_token_id = None
    config = reference.config
    special = dict(eos_token=config.eos_token_id, unk_token=1, pad_token=config.pad_token_id)
    ct2 = ctranslate2_decoder(reference, special)
    floor_ms = weight_bytes(reference) / memory_bandwidth_gbs() / 1e6
    batches = size.generate_batches if name == "small" else size.generate_batches[:1]
    rows = []
    for num_beams in (1, 4):
        for batch_size in batches:
            source = random_batch(config.vocab_size, batch_size)
            source.pop("labels")
            settings = dict(
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=num_beams
            )
            search = "greedy" if num_beams == 1 else f"beam {num_beams}"
            label = f"{name} {search} b{batch_size}"
            rows += decoding_rows(label, ours, reference, ct2, source, settings, repeats, floor_ms)
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    args = parse(parser)
    repeats = args.repeats
    peak = machine_peak_gflops(args)
    sections = {
        "train": partial(bench_training, peak, repeats),
        "forward": partial(bench_inference, peak, repeats),
        "generate small": partial(bench_generation, repeats, "small"),
        "generate base": partial(bench_generation, repeats, "base"),
    }
    rows = run_sections(sections, args, peak)
    if args.section is None:
        print_tables(rows)


if __name__ == "__main__":
    main()
