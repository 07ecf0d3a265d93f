"""Batch-1 greedy decoding against its eager floor: how fast could any eager PyTorch implementation
of the same model decode on this machine?

    python benchmarks/bench_decode_floor.py [--repeats N] [--smoke] [--section NAME]

The floor is one decoding step written as bare functional calls on the same weights: `F.linear`,
`F.layer_norm`, SDPA, `torch.cat` onto the key/value cache, argmax. No modules, hooks, input checks,
output objects or `generate()`. It generates the same tokens as our model (checked), so it is the
same arithmetic with the least Python an eager implementation can have. Per model, in ms per new
token (fp32, CPU, batch 1, greedy, no end-of-sequence token):
- weights: the model's weight bytes read once at the measured memory bandwidth, the bound no
  implementation passes at batch 1;
- projection: the output projection onto the vocabulary alone, (1, 1, C) x W^T, once per token;
- floor: the functional loop;
- ours loop / compiled loop: our model called step by step with a cache, argmax in between, eager
  (dynamic cache) or compiled as `generate()` compiles it (static cache, `cpu_compile_config`);
- ours / compiled / ref generate: `generate()`, eager, with `cache_implementation="static"`
  (compiled), and the reference's (what bench_gpt.py and bench_transformer.py time). A generate
  column minus its loop is `generate()`'s own per-step bookkeeping;
- ceiling: ref generate / (floor + the per-token cost `generate()` adds to our loop, i.e.
  ours generate - ours loop: prompt or encoder pass, cache and logits bookkeeping). It is the
  ratio an implementation with no per-operation overhead at all would reach through
  transformers' `generate()`.
Models: GPT-2 layout, bench_gpt.py's small config (64 tokens after a 32-token prompt); Marian /
the Transformer, bench_transformer.py's small and base configs (48 tokens after a 64-token source).

`--smoke` checks that it runs and that all of them generate the same tokens: every section once, in
one process, at those scripts' tiny sizes (their `TINY`); the numbers mean nothing.
"""

from functools import partial

import bench_gpt
import bench_transformer
import torch
import torch.nn.functional as F
from common import benchmark_arguments, interleaved_medians, parse, print_table, run_sections
from decoding import memory_bandwidth_gbs, weight_bytes
from transformers.cache_utils import DynamicCache, EncoderDecoderCache, StaticCache

from hf_scratch.pretrained import cpu_compile_config

HEADER = ["model (batch 1, greedy)", "weights", "projection", "floor", "ours loop", "compiled loop"]
HEADER += ["ours generate", "compiled generate", "ref generate", "ratio", "ceiling"]


def _attend(layer, hidden, cache, index):
    """Causal self-attention over the cache and T new positions: (1, T, C) -> (1, T, C)."""
    length = hidden.shape[1]
    qkv = F.linear(hidden, layer.qkv_proj.weight, layer.qkv_proj.bias)
    qkv = qkv.view(1, length, 3, layer.num_heads, layer.head_dim)
    query, key, value = (part.transpose(1, 2) for part in qkv.unbind(2))
    keys, values = cache[index]
    keys, values = torch.cat([keys, key], dim=2), torch.cat([values, value], dim=2)
    cache[index] = (keys, values)
    # T > 1 only for a prompt on an empty cache, where T = S and SDPA's causal mask is the right one
    context = F.scaled_dot_product_attention(query, keys, values, is_causal=length > 1)
    context = context.transpose(1, 2).reshape(hidden.shape)
    return F.linear(context, layer.out_proj.weight, layer.out_proj.bias)


def _norm(module, hidden):
    return F.layer_norm(hidden, module.normalized_shape, module.weight, module.bias, module.eps)


def _feed_forward(module, hidden, activation):
    inner = activation(F.linear(hidden, module.fc1.weight, module.fc1.bias))
    return F.linear(inner, module.fc2.weight, module.fc2.bias)


def gpt2_floor_step(model, tokens, start, cache):
    """Pre-LN GPT-2 on tokens (1, T) at positions start..start+T-1: h_0 = W_e[u] + W_p; h +=
    attn(LN(h)); h += FFN(LN(h)); logits of the last position of LN(h): (1, 1, V)."""
    body = model.transformer
    positions = body.positions_embed.weight[start : start + tokens.shape[1]]
    hidden = body.tokens_embed.weight[tokens] + positions
    gelu = partial(F.gelu, approximate="tanh")
    for index, block in enumerate(body.layers):
        attention_input = _norm(block.self_attn_norm, hidden)
        hidden = hidden + _attend(block.self_attn, attention_input, cache, index)
        ffn_input = _norm(block.feed_forward_norm, hidden)
        hidden = hidden + _feed_forward(block.feed_forward, ffn_input, gelu)
    return F.linear(_norm(body.final_norm, hidden[:, -1:]), model.lm_head.weight)


def marian_floor_step(model, token, position, cache, cross):
    """Post-LN Transformer decoder step with cross-attention over precomputed keys and values."""
    decoder = model.model.decoder
    hidden = decoder.embed_tokens.weight[token] * decoder.embed_scale
    hidden = hidden + decoder.embed_positions.weight[position]
    for index, block in enumerate(decoder.layers):
        attention = block.cross_attn
        attention_output = _attend(block.self_attn, hidden, cache, index)
        hidden = _norm(block.self_attn_norm, hidden + attention_output)
        query = F.linear(hidden, attention.q_proj.weight, attention.q_proj.bias)
        query = query.view(1, 1, attention.num_heads, -1).transpose(1, 2)
        context = F.scaled_dot_product_attention(query, *cross[index])
        context = F.linear(
            context.transpose(1, 2).reshape(hidden.shape),
            attention.out_proj.weight,
            attention.out_proj.bias,
        )
        hidden = _norm(block.cross_attn_norm, hidden + context)
        ffn = _feed_forward(block.feed_forward, hidden, F.silu)
        hidden = _norm(block.feed_forward_norm, hidden + ffn)
    logits = F.linear(hidden, model.lm_head.weight)
    return logits + model.final_logits_bias  # (1, 1, V)


def _empty_cache(layers, heads, head_dim):
    return [(torch.empty(1, heads, 0, head_dim),) * 2 for _ in range(layers)]


def _greedy(step, first_token, new_tokens: int) -> list[int]:
    token, tokens = first_token, []
    for position in range(new_tokens):
        token = step(token, position).argmax(-1)  # (1, 1)
        tokens.append(int(token))
    return tokens


def gpt2_loops(new_tokens: int):
    size = bench_gpt.chosen_sizes()
    ours, reference = bench_gpt.reference_pair("gpt2", size.small)
    for model in (ours, reference):
        model.generation_config.eos_token_id = None
    torch.manual_seed(1)
    prompt = torch.randint(0, reference.config.vocab_size, (1, size.prompt))
    config = ours.config
    head_dim = config.hidden_size // config.num_attention_heads

    @torch.no_grad()
    def floor():
        cache = _empty_cache(config.num_hidden_layers, config.num_attention_heads, head_dim)
        start = prompt.shape[1] - 1
        gpt2_floor_step(ours, prompt[:, :start], 0, cache)  # the prompt but its last token
        return _greedy(
            lambda token, i: gpt2_floor_step(ours, token, start + i, cache),
            prompt[:, -1:],
            new_tokens,
        )

    def loop(model, cache):
        with torch.no_grad():
            ours(prompt[:, :-1], cache=cache)  # eagerly, as generate() runs the prompt
            step = lambda token, i: model(token, cache=cache).logits  # noqa: E731
            return _greedy(step, prompt[:, -1:], new_tokens)

    compiled = torch.compile(ours, **cpu_compile_config().to_dict())
    loops = {
        "floor": floor,
        "loop": lambda: loop(ours, DynamicCache(config=config)),
        "compiled loop": lambda: loop(
            compiled, _static_cache(config, prompt.shape[1] + new_tokens)
        ),
    }
    settings = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return ours, reference, {"input_ids": prompt}, settings, loops


def marian_loops(name: str, new_tokens: int):
    """The loops of bench_transformer.py's small or base config (`name`)."""
    sizes = getattr(bench_transformer.chosen_sizes(), name)
    ours, reference = bench_transformer.reference_pair(sizes)
    for model in (ours, reference):
        model.generation_config.eos_token_id = None
        model.generation_config.forced_eos_token_id = None
    source = bench_transformer.random_batch(sizes["vocab_size"], 1)
    source.pop("labels")
    config = ours.config
    head_dim = config.hidden_size // config.num_attention_heads
    start = torch.tensor([[config.decoder_start_token_id]])
    with torch.no_grad():
        encoder_output = ours.get_encoder()(**source).last_hidden_state  # (1, S, C)

    @torch.no_grad()
    def floor():
        cache = _empty_cache(config.decoder_layers, config.num_attention_heads, head_dim)
        cross = []
        for block in ours.model.decoder.layers:
            projection = block.cross_attn.kv_proj
            key_value = F.linear(encoder_output, projection.weight, projection.bias)
            key_value = key_value.view(1, -1, 2, config.num_attention_heads, head_dim)
            cross.append(tuple(part.transpose(1, 2) for part in key_value.unbind(2)))
        return _greedy(
            lambda token, i: marian_floor_step(ours, token, i, cache, cross), start, new_tokens
        )

    def loop(model, self_cache, cross_cache):
        cache = EncoderDecoderCache(self_cache, cross_cache)
        inputs = dict(encoder_outputs=(encoder_output,), attention_mask=source["attention_mask"])
        with torch.no_grad():
            # The first step eagerly, as generate() runs it, then `model`'s steps.
            first = ours(decoder_input_ids=start, cache=cache, **inputs).logits.argmax(-1)
            step = lambda token, i: model(decoder_input_ids=token, cache=cache, **inputs).logits  # noqa: E731
            return [int(first), *_greedy(step, first, new_tokens - 1)]

    compiled = torch.compile(ours, **cpu_compile_config().to_dict())
    source_length = source["input_ids"].shape[1]
    loops = {
        "floor": floor,
        "loop": lambda: loop(ours, DynamicCache(config=config), DynamicCache(config=config)),
        "compiled loop": lambda: loop(
            compiled,
            _static_cache(config, new_tokens + 1),
            _static_cache(config, source_length),
        ),
    }
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=1)
    return ours, reference, source, settings, loops


def _static_cache(config, length: int) -> StaticCache:
    return StaticCache(config=config, max_cache_len=length)


def projection_per_token(model, new_tokens: int):
    """The output projection of one decoding step alone, `new_tokens` times: (1, 1, C) x W^T."""
    weight = model.get_output_embeddings().weight
    hidden = torch.randn(1, 1, weight.shape[1])

    def run():
        with torch.no_grad():
            for _ in range(new_tokens):
                F.linear(hidden, weight)

    return run


def bench(label: str, make_loops, new_tokens: int, repeats: int) -> list[list]:
    ours, reference, inputs, settings, loops = make_loops(new_tokens)
    static = dict(cache_implementation="static")
    generated = [
        model.generate(**inputs, **settings, **extra)[0, -new_tokens:].tolist()
        for model, extra in ((ours, {}), (reference, {}), (ours, static))
    ]
    decoded = [loop() for loop in loops.values()]
    if any(tokens != generated[0] for tokens in decoded + generated):
        raise AssertionError(f"{label}: the loops and generate() disagree")
    times = interleaved_medians(
        {
            **loops,
            "projection": projection_per_token(ours, new_tokens),
            "ours": lambda: ours.generate(**inputs, **settings),
            "compiled": lambda: ours.generate(**inputs, **settings, **static),
            "reference": lambda: reference.generate(**inputs, **settings),
        },
        repeats=repeats,
        warmup=1,
        min_seconds=0,
    )
    ms = {name: seconds / new_tokens * 1e3 for name, seconds in times.items()}
    ceiling = ms["reference"] / (ms["floor"] + ms["ours"] - ms["loop"])
    weights_ms = weight_bytes(ours) / memory_bandwidth_gbs() / 1e6
    columns = ["projection", "floor", "loop", "compiled loop", "ours", "compiled", "reference"]
    row = [label, weights_ms, *(ms[name] for name in columns)]
    return [[*row, ms["reference"] / ms["ours"], ceiling]]


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n")[0])
    args = parse(parser)
    if args.section is None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    gpt_tokens = bench_gpt.chosen_sizes().new_tokens
    marian_tokens = bench_transformer.chosen_sizes().new_tokens
    sections = {
        "gpt2 small": partial(bench, "GPT-2 layout, small", gpt2_loops, gpt_tokens, args.repeats),
        **{
            f"marian {name}": partial(
                bench, f"Marian, {name}", partial(marian_loops, name), marian_tokens, args.repeats
            )
            for name in ("small", "base")
        },
    }
    rows = run_sections(sections, args)
    if args.section is None:
        print("ms per new token; ratio = reference generate / ours generate")
        print_table(HEADER, [row for section in rows.values() for row in section])


if __name__ == "__main__":
    main()
