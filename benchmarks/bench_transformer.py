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
"""

from functools import partial

import torch
from common import (
    COMPARISON_HEADER,
    benchmark_arguments,
    generation_row,
    interleaved_medians,
    interleaved_peak_memory_mib,
    machine_peak_gflops,
    mfu,
    parse,
    print_table,
    run_sections,
    throughput_row,
    training_step,
)
from transformers import MarianConfig, MarianMTModel

from hf_scratch.convert import from_reference

SMALL = dict(
    vocab_size=8000,
    d_model=256,
    encoder_layers=3,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=1024,
    decoder_ffn_dim=1024,
)
BASE = dict(
    vocab_size=58101,
    d_model=512,
    encoder_layers=6,
    decoder_layers=6,
    encoder_attention_heads=8,
    decoder_attention_heads=8,
    encoder_ffn_dim=2048,
    decoder_ffn_dim=2048,
)
SOURCE_LENGTH = TARGET_LENGTH = 64
NEW_TOKENS = 48


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
    torch.manual_seed(1)
    return {
        "input_ids": torch.randint(1, vocab_size - 1, (batch, SOURCE_LENGTH)),
        "attention_mask": torch.ones(batch, SOURCE_LENGTH, dtype=torch.long),
        "labels": torch.randint(1, vocab_size - 1, (batch, TARGET_LENGTH)),
    }


def bench_training(peak: float, repeats: int) -> list[list]:
    ours, reference = reference_pair(SMALL)
    ours.train()
    reference.train()
    batch = random_batch(SMALL["vocab_size"], 16)
    steps = {"ours": training_step(ours, batch), "reference": training_step(reference, batch)}
    times = interleaved_medians(steps, repeats=repeats, warmup=2)
    memory = interleaved_peak_memory_mib(steps)
    flops = 3 * forward_flops(reference.config, 16, SOURCE_LENGTH, TARGET_LENGTH)
    tokens = 16 * (SOURCE_LENGTH + TARGET_LENGTH)
    return [throughput_row("train step, small", tokens, times, mfu(flops, times, peak), memory)]


def bench_inference(peak: float, repeats: int) -> list[list]:
    ours, reference = reference_pair(BASE)
    batch = random_batch(BASE["vocab_size"], 16)
    with torch.no_grad():
        times = interleaved_medians(
            {
                "ours": lambda: ours(**batch),
                "reference": lambda: reference(**batch),
            },
            repeats=repeats,
            warmup=1,
        )
    flops = forward_flops(reference.config, 16, SOURCE_LENGTH, TARGET_LENGTH)
    tokens = 16 * (SOURCE_LENGTH + TARGET_LENGTH)
    return [throughput_row("forward, base", tokens, times, mfu(flops, times, peak))]


def bench_generation(repeats: int, sizes: dict, name: str) -> list[list]:
    ours, reference = reference_pair(sizes)
    # No end-of-sequence token: every run generates exactly NEW_TOKENS tokens.
    for model in (ours, reference):
        model.generation_config.eos_token_id = None
        model.generation_config.forced_eos_token_id = None
    rows = []
    for num_beams in (1, 4):
        for batch_size in (1, 16):
            source = random_batch(sizes["vocab_size"], batch_size)
            source.pop("labels")
            settings = dict(
                max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, num_beams=num_beams
            )
            search = "greedy" if num_beams == 1 else f"beam {num_beams}"
            rows.append(
                generation_row(
                    f"generate {search} b{batch_size}, {name}",
                    ours,
                    reference,
                    source,
                    settings,
                    NEW_TOKENS,
                    repeats,
                )
            )
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    args = parse(parser)
    repeats = args.repeats
    peak = machine_peak_gflops(args)
    sections = {
        "train": partial(bench_training, peak, repeats),
        "forward": partial(bench_inference, peak, repeats),
        "generate small": partial(bench_generation, repeats, SMALL, "small"),
        "generate base": partial(bench_generation, repeats, BASE, "base"),
    }
    rows = run_sections(sections, args, peak)
    if args.section is None:
        print("tokens/s (training, forward); ms per new token (generate)")
        print_table(COMPARISON_HEADER, [row for section in rows.values() for row in section])


if __name__ == "__main__":
    main()
