"""Shared measuring tools for the benchmarks: interleaved timing with medians, the machine's matmul
peak, training steps and their peak memory, and a plain-text table. The machines are shared and
noisy, so every comparison runs its candidates in turn, many times, and reports medians."""

import argparse
import ctypes
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

# Set by `--smoke`: every measurement runs once, without warm-up, at tiny sizes (`smoke_or`), on one
# thread, and every section in this one process. It checks that a benchmark works and that the
# models still agree (the tests run each one so), not how fast anything is.
SMOKE = False


def smoke_or(full, tiny):
    """`tiny` with `--smoke`, else `full`: how a benchmark picks its sizes. Call it after `parse()`
    has read the arguments (inside a function, not in a module-level constant)."""
    return tiny if SMOKE else full


def benchmark_arguments(description: str, default_repeats: int = 7) -> argparse.ArgumentParser:
    """The options every benchmark takes: `--repeats`, `--smoke` and `--section`. Add the script's
    own, then call `parse(parser)`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--repeats", type=int, default=default_repeats, help="interleaved rounds per measurement"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, every measurement once, one process and thread: the numbers mean nothing",
    )
    parser.add_argument(
        "--section", help="measure only this section, in this process (see `run_sections`)"
    )
    parser.add_argument("--peak", type=float, help=argparse.SUPPRESS)  # passed to sections
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    global SMOKE
    arguments = parser.parse_args()
    SMOKE = arguments.smoke
    if SMOKE:
        # Tiny operations gain nothing from more threads, and on a busy machine every one of them
        # waits for all threads to be scheduled: 4-5x slower over a smoke run on 2 loaded cores.
        torch.set_num_threads(1)
    return arguments


_ROWS = "rows: "


def run_sections(
    sections: dict[str, Callable[[], list[list]]],
    arguments: argparse.Namespace,
    peak: float | None = None,
) -> dict[str, list[list]]:
    """The table rows of every section, each section measured in a fresh Python process (this
    script again, with `--section NAME`); with `--smoke`, all of them in this process, since the
    numbers do not count there and a fresh process costs seconds of imports.

    Both models of a comparison share their process, so that they meet the same conditions; the
    sections do not share one, because what a section leaves behind (a grown heap, raised
    allocator thresholds) slows the next: after the base-size forward passes, both models' small
    decoding steps ran ~1.5x slower in the same process, shrinking every ratio. With `--section`,
    only that section runs, here; its rows are also printed for a parent process to read.
    """
    if arguments.section is not None:
        if arguments.section not in sections:
            raise SystemExit(f"unknown section {arguments.section!r}; choose from {list(sections)}")
        rows = sections[arguments.section]()
        print(_ROWS + json.dumps(rows), flush=True)
        return {arguments.section: rows}
    if SMOKE:
        return {name: section() for name, section in sections.items()}
    results = {}
    for name in sections:
        command = [sys.executable, sys.argv[0], *sys.argv[1:], "--section", name]
        if peak is not None:
            command += ["--peak", str(peak)]
        output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
        lines = [line for line in output.splitlines() if line.startswith(_ROWS)]
        results[name] = json.loads(lines[-1][len(_ROWS) :])
    return results


def interleaved_medians(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 15,
    warmup: int = 3,
    min_seconds: float = 2.0,
) -> dict[str, float]:
    """Median seconds per call of each candidate, run round-robin, each round in a new shuffled
    order, so that load spikes and what one call leaves behind (caches, allocator state) hit all
    of them alike.

    Runs at least `repeats` rounds, and more for fast candidates, until a round's samples add up to
    about `min_seconds` per candidate: medians of a few milliseconds need many samples on a shared
    machine.
    """
    if SMOKE:
        repeats, warmup, min_seconds = 1, 0, 0.0
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    rounds = 0
    while rounds < repeats or min(sum(samples) for samples in times.values()) < min_seconds:
        order = list(candidates.items())
        random.shuffle(order)
        for name, run in order:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        rounds += 1
    return {name: statistics.median(samples) for name, samples in times.items()}


def matmul_peak_size() -> int:
    """The side of the square matmul that measures the peak: 2048, or 256 with `--smoke`."""
    return smoke_or(2048, 256)


def matmul_peak_gflops(
    dtype: torch.dtype = torch.float32, size: int | None = None, repeats: int = 10
) -> float:
    """Best sustained GFLOP/s of a square matmul (`matmul_peak_size()` by default): the yardstick
    for model FLOPs utilization (MFU)."""
    if size is None:
        size = matmul_peak_size()
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# Columns of the model benchmarks' tables: ours against the reference implementation.
COMPARISON_HEADER = [
    "benchmark",
    "reference",
    "ours",
    "ratio",
    "MFU ref / ours",
    "MiB ref / ours",
    "mem ratio",
    "differs from the reference in",
]


def machine_peak_gflops(arguments: argparse.Namespace | None = None) -> float:
    """The fp32 matmul peak of this machine, printed with the torch version and thread count that
    every table depends on; a section's process takes its parent's (`--peak`)."""
    if arguments is not None and arguments.peak is not None:
        return arguments.peak
    peak = matmul_peak_gflops(torch.float32)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, fp32 matmul peak {peak:.0f} GFLOP/s\n")
    return peak


def print_table(header: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, so that it pastes into notes and READMEs as is."""
    cells = [header] + [
        [f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines), flush=True)


# -- memory (Linux): the peak resident set since the last reset, /proc/self/status VmHWM
# ------------

_LIBC = ctypes.CDLL("libc.so.6")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def step_peak_memory_mib(step) -> float:
    """Peak resident memory that one call of `step` adds over the resident memory before it."""
    gc.collect()
    _LIBC.malloc_trim(0)  # return freed memory to the system, so the baseline is what is live
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS:")
    step()
    return (_status_kib("VmHWM:") - before) / 1024


def interleaved_peak_memory_mib(steps: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median over 3 interleaved rounds (1 with `--smoke`), each in a shuffled order, of the peak
    memory each step adds."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(1 if SMOKE else 3):
        order = list(steps.items())
        random.shuffle(order)
        for name, step in order:
            samples[name].append(step_peak_memory_mib(step))
    return {name: statistics.median(values) for name, values in samples.items()}


def mfu(flops: float | dict[str, float], times: dict[str, float], peak: float) -> str:
    """Model FLOPs utilization of the reference and of ours, against the matmul peak. `flops` is
    one count for both, or one per model when they compute differently (sparse prediction)."""
    per_model = flops if isinstance(flops, dict) else dict.fromkeys(times, flops)
    return " / ".join(
        f"{per_model[name] / times[name] / 1e9 / peak:.0%}" for name in ("reference", "ours")
    )


def throughput_row(
    label: str,
    tokens: int,
    times: dict[str, float],
    utilization: str,
    memory: dict[str, float],
    differences: str,
) -> list:
    """One `COMPARISON_HEADER` row: tokens/s of the reference and of ours, their ratio, the MFU
    text, the peak memory of both with ours/reference, and what the two sides differ in besides
    the implementation (a KV cache, SDPA, sparse prediction, compiling)."""
    memory_text = f"{memory['reference']:.0f} / {memory['ours']:.0f}"
    return [
        label,
        tokens / times["reference"],
        tokens / times["ours"],
        times["reference"] / times["ours"],
        utilization,
        memory_text,
        memory["ours"] / memory["reference"],
        differences,
    ]


def inference_row(
    label: str,
    calls: dict[str, Callable[[], object]],
    tokens: int,
    flops: float | None,
    peak: float | None,
    differences: str,
    repeats: int,
) -> list:
    """The `COMPARISON_HEADER` row of two inference calls ("ours", "reference"), timed and their
    peak memory measured without autograd; MFU from `flops` per call when given."""

    def no_grad(call):
        def run():
            with torch.no_grad():
                return call()

        return run

    calls = {name: no_grad(call) for name, call in calls.items()}
    times = interleaved_medians(calls, repeats=repeats, warmup=1)
    memory = interleaved_peak_memory_mib(calls)
    utilization = "" if flops is None else mfu(flops, times, peak)
    return throughput_row(label, tokens, times, utilization, memory, differences)


def training_step(model, batch: dict[str, torch.Tensor]):
    """One training step as a callable: forward with `batch`, backward, AdamW step. The fused AdamW
    is what `Trainer` uses by default (`optim="adamw_torch_fused"`), on CPU too."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def training_rows(
    label: str,
    ours,
    reference,
    batch: dict[str, torch.Tensor],
    tokens: int,
    flops: float | dict[str, float],
    peak: float,
    repeats: int,
    differences: str,
) -> list[list]:
    """The training-step rows of a model pair: both eager, then both under `torch.compile`
    (inductor's defaults; left out with `--smoke`, where compiling would take most of the run,
    and which tests/test_compile.py covers). `differences`: what the two sides differ in."""
    rows = []
    for compiled in (False, True):
        if compiled and SMOKE:
            break
        models = {"ours": ours, "reference": reference}
        if compiled:
            models = {name: torch.compile(model) for name, model in models.items()}
        steps = {name: training_step(model, batch) for name, model in models.items()}
        times = interleaved_medians(steps, repeats=repeats, warmup=2)
        memory = interleaved_peak_memory_mib(steps)
        name = f"{label}, both compiled" if compiled else label
        utilization = mfu(flops, times, peak)
        rows.append(throughput_row(name, tokens, times, utilization, memory, differences))
    return rows
