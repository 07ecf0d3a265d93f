"""Decoding side by side: every contestant decodes the same prompts with the same weights, their
calls interleaved in a shuffled order, medians reported in ms per new token.

Contestants (each row says how it differs from transformers' default `generate()`):
- "transformers": the reference model's default `generate()` (eager, dynamic cache);
- "transformers static+compile": its `generate(cache_implementation="static")` with the
  decoding step compiled (the settings ours use on CPU, `pretrained.cpu_compile_config`);
- "ours eager": our model's default `generate()`;
- "ours compiled": our model's `generate(cache_implementation="static")`, which compiles the step;
- "CTranslate2": the reference's saved folder converted by CTranslate2's `TransformersConverter`
  (float32), decoded by its C++ `Generator` / `Translator` (installed with `pip install -e
  ".[bench]"`; the row is left out without it).
Every contestant's tokens must equal transformers' (the tables say "same tokens" or "TOKENS
DIFFER"). Times are also given as multiples of the batch-1 floor: the weight bytes read once
per step at the machine's measured memory bandwidth, the least time any implementation could
take.

Beam search never compiles: transformers' beam loop calls the model uncompiled, for us and for
itself, so those rows' static contestants run an eager static cache.
"""

import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import common
import torch
from common import (
    COMPARISON_HEADER,
    interleaved_medians,
    interleaved_peak_memory_mib,
    print_table,
)

from hf_scratch.pretrained import cpu_compile_config

DECODING_HEADER = [
    "decoding",
    "contestant",
    "ms / token",
    "speed vs transformers",
    "time / CT2",
    "time / floor",
    "first call s",
    "peak MiB",
    "tokens",
    "differs from transformers in",
]

FEATURES = {
    "transformers": "(the reference)",
    "transformers static+compile": "static cache, compiled step",
    "ours eager": "implementation only",
    "ours compiled": "static cache, compiled step",
    "CTranslate2": "C++ runtime, its own kernels",
}


def memory_bandwidth_gbs() -> float:
    """Best read bandwidth of summing a 256 MiB tensor (16 MiB with `--smoke`), GB/s."""
    elements = (16 if common.SMOKE else 256) * 2**20 // 4
    data = torch.ones(elements)
    best = float("inf")
    for _ in range(1 if common.SMOKE else 5):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return elements * 4 / best / 1e9


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's distinct parameters and buffers (tied weights counted once)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


_TOKEN_NAMES = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _names(special: dict[str, int]) -> dict[int, str]:
    """The token of each special id, by the usual names ("</s>" for `special["eos_token"]`); an id
    with several roles takes the last one's name."""
    return {i: _TOKEN_NAMES[key] for key, i in special.items()}


def _tokens(ids: torch.Tensor, names: dict[int, str]) -> list[list[str]]:
    """Ids as the tokens of `word_tokenizer`: "t17" for id 17, special ids by name."""
    return [[names.get(i, f"t{i}") for i in row] for row in ids.tolist()]


def word_tokenizer(vocab_size: int, special: dict[str, int]):
    """A word-level tokenizer whose tokens are the model's ids (see `_tokens`), with the special
    tokens `special` names ({"eos_token": 0, ...}): all that CTranslate2's converter reads from a
    tokenizer, for random weights."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    names = _names(special)
    vocabulary = {names.get(i, f"t{i}"): i for i in range(vocab_size)}
    unknown = names.get(special.get("unk_token"), "t0")
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=unknown))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, **{key: names[i] for key, i in special.items()}
    )


def ctranslate2_decoder(reference, special: dict[str, int]):
    """CTranslate2's conversion of `reference` (float32) and a function decoding with it like
    `generate()`: (inputs, settings) -> the new tokens (B, new), best hypothesis first. `special`
    names the special token ids the converter asks for ({"eos_token": 0, ...}). None when
    CTranslate2 is not installed."""
    try:
        import ctranslate2
    except ImportError:
        return None
    folder = tempfile.mkdtemp(prefix="ct2-")
    saved, converted = os.path.join(folder, "hf"), os.path.join(folder, "ct2")
    reference.save_pretrained(saved)
    word_tokenizer(reference.config.vocab_size, special).save_pretrained(saved)
    ctranslate2.converters.TransformersConverter(saved).convert(converted, force=True)
    threads = dict(device="cpu", inter_threads=1, intra_threads=torch.get_num_threads())
    names = _names(special)
    if reference.config.is_encoder_decoder:
        translator = ctranslate2.Translator(converted, **threads)

        def decode(inputs: dict, settings: dict) -> torch.Tensor:
            new = settings["max_new_tokens"]
            results = translator.translate_batch(
                _tokens(inputs["input_ids"], names),
                beam_size=settings.get("num_beams", 1),
                max_decoding_length=new,
                min_decoding_length=new,
            )
            ids = {name: i for i, name in names.items()}
            best = [result.hypotheses[0] for result in results]  # tokens, not ids
            return torch.tensor([[ids.get(t) or int(t[1:]) for t in row] for row in best])

    else:
        generator = ctranslate2.Generator(converted, **threads)

        def decode(inputs: dict, settings: dict) -> torch.Tensor:
            results = generator.generate_batch(
                _tokens(inputs["input_ids"], names),
                max_length=settings["max_new_tokens"],
                sampling_topk=1,
                beam_size=settings.get("num_beams", 1),
                include_prompt_in_result=False,
                end_token=[],
            )
            return torch.tensor([result.sequences_ids[0] for result in results])

    return decode


@dataclass
class Contestant:
    name: str
    decode: Callable[[], torch.Tensor]  # the new tokens


def _new_tokens(generated: torch.Tensor, inputs: dict, encoder_decoder: bool) -> torch.Tensor:
    """The generated tokens after the prompt (decoder-only) or after the start token."""
    return generated[:, 1:] if encoder_decoder else generated[:, inputs["input_ids"].shape[1] :]


def contestants(
    ours, reference, ct2_decode, inputs: dict, settings: dict, reference_static: bool
) -> list[Contestant]:
    encoder_decoder = reference.config.is_encoder_decoder

    def hf(model, **extra):
        def decode():
            generated = model.generate(**inputs, **settings, **extra)
            return _new_tokens(generated, inputs, encoder_decoder)

        return decode

    static = dict(cache_implementation="static")
    everyone = [
        Contestant("transformers", hf(reference)),
        Contestant("ours eager", hf(ours)),
        Contestant("ours compiled", hf(ours, **static)),
    ]
    if reference_static and not common.SMOKE:  # smoke runs check our code, and compiling is slow
        compiled = hf(reference, **static, compile_config=cpu_compile_config())
        everyone.append(Contestant("transformers static+compile", compiled))
    if ct2_decode is not None:
        everyone.append(Contestant("CTranslate2", lambda: ct2_decode(inputs, settings)))
    return everyone


def decoding_rows(
    label: str,
    ours,
    reference,
    ct2_decode,
    inputs: dict,
    settings: dict,
    repeats: int,
    floor_ms: float,
    features: dict[str, str] | None = None,
) -> list[list]:
    """The rows of one decoding setting (`DECODING_HEADER`), one per contestant. `features`
    replaces rows' descriptions of `FEATURES` (a reference without a KV cache, say); a reference
    without a static cache (`features["transformers static+compile"] = None`) has no such row."""
    features = {**FEATURES, **(features or {})}
    if settings.get("num_beams", 1) > 1:  # transformers' beam loop calls the model uncompiled
        features = {
            name: text and text.replace("compiled step", "eager step (beam search)")
            for name, text in features.items()
        }
    new_tokens = settings["max_new_tokens"]
    reference_static = features["transformers static+compile"] is not None
    entrants = contestants(ours, reference, ct2_decode, inputs, settings, reference_static)
    random.shuffle(entrants)  # the first calls (compiling, warming caches) in a shuffled order too
    tokens, first_call = {}, {}
    for entrant in entrants:
        start = time.perf_counter()
        tokens[entrant.name] = entrant.decode()
        first_call[entrant.name] = time.perf_counter() - start
    calls = {entrant.name: entrant.decode for entrant in entrants}
    times = interleaved_medians(calls, repeats=repeats, warmup=1, min_seconds=0)
    memory = interleaved_peak_memory_mib(calls)
    ms = {name: seconds / new_tokens * 1e3 for name, seconds in times.items()}
    rows = []
    for name in features:
        if name not in ms:
            continue
        same = torch.equal(tokens[name], tokens["transformers"])
        ct2 = f"{ms[name] / ms['CTranslate2']:.2f}" if "CTranslate2" in ms else ""
        rows.append(
            [
                label,
                name,
                ms[name],
                ms["transformers"] / ms[name],
                ct2,
                f"{ms[name] / floor_ms:.1f}" if floor_ms else "",
                first_call[name],
                f"{memory[name]:.0f}",
                "same tokens" if same else "TOKENS DIFFER",
                features[name],
            ]
        )
    return rows


def print_tables(rows: dict[str, list[list]]) -> None:
    """A model benchmark's two tables: its sections' comparison rows (`COMPARISON_HEADER`), then
    the decoding rows of its "generate" sections."""
    print("tokens/s (training, forward); ours / reference")
    print_table(
        COMPARISON_HEADER, [r for name, s in rows.items() if "generate" not in name for r in s]
    )
    print("\ngenerate(): ms per new token; time / floor: multiples of reading the weights once")
    print_table(DECODING_HEADER, [r for name, s in rows.items() if "generate" in name for r in s])
