"""The tensor-name rules of each reference family: OpenAI GPT and GPT-2 (whose `Conv1D` weights
are stored (in, out) and transposed), BERT and Marian, and the projections each stacks into one
tensor of ours (W_Q, W_K, W_V into `qkv_proj`; Marian's cross-attention W_K, W_V into `kv_proj`)."""

from .renaming import Rule


def _gpt_rules(embeddings: dict[str, str], final_norm: str | None) -> list[Rule]:
    rules = [
        Rule(
            "{prefix}h.{i}.attn.c_attn.weight", "{prefix}layers.{i}.self_attn.qkv_proj.weight", True
        ),
        Rule("{prefix}h.{i}.attn.c_attn.bias", "{prefix}layers.{i}.self_attn.qkv_proj.bias"),
        Rule(
            "{prefix}h.{i}.attn.c_proj.weight", "{prefix}layers.{i}.self_attn.out_proj.weight", True
        ),
        Rule("{prefix}h.{i}.attn.c_proj.bias", "{prefix}layers.{i}.self_attn.out_proj.bias"),
        Rule("{prefix}h.{i}.ln_1.{p}", "{prefix}layers.{i}.self_attn_norm.{p}"),
        Rule("{prefix}h.{i}.mlp.c_fc.weight", "{prefix}layers.{i}.feed_forward.fc1.weight", True),
        Rule("{prefix}h.{i}.mlp.c_fc.bias", "{prefix}layers.{i}.feed_forward.fc1.bias"),
        Rule("{prefix}h.{i}.mlp.c_proj.weight", "{prefix}layers.{i}.feed_forward.fc2.weight", True),
        Rule("{prefix}h.{i}.mlp.c_proj.bias", "{prefix}layers.{i}.feed_forward.fc2.bias"),
        Rule("{prefix}h.{i}.ln_2.{p}", "{prefix}layers.{i}.feed_forward_norm.{p}"),
        Rule("lm_head.weight", "lm_head.weight"),
        Rule("score.weight", "score.weight"),
        Rule("multiple_choice_head.summary.{p}", "multiple_choice_head.{p}"),
    ]
    rules += [
        Rule(f"{{prefix}}{reference}.weight", f"{{prefix}}{ours}.weight")
        for reference, ours in embeddings.items()
    ]
    if final_norm is not None:
        rules.append(Rule(f"{{prefix}}{final_norm}.{{p}}", "{prefix}final_norm.{p}"))
    return rules


OPENAI_GPT_RULES = _gpt_rules(
    {"tokens_embed": "tokens_embed", "positions_embed": "positions_embed"}, final_norm=None
)
GPT2_RULES = _gpt_rules({"wte": "tokens_embed", "wpe": "positions_embed"}, final_norm="ln_f")

BERT_RULES = [
    Rule("{prefix}embeddings.word_embeddings.weight", "{prefix}embeddings.word_embeddings.weight"),
    Rule(
        "{prefix}embeddings.position_embeddings.weight",
        "{prefix}embeddings.position_embeddings.weight",
    ),
    Rule(
        "{prefix}embeddings.token_type_embeddings.weight",
        "{prefix}embeddings.token_type_embeddings.weight",
    ),
    Rule("{prefix}embeddings.LayerNorm.{p}", "{prefix}embeddings.norm.{p}"),
    Rule(
        "{prefix}encoder.layer.{i}.attention.self.qkv.{p}",
        "{prefix}layers.{i}.self_attn.qkv_proj.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.attention.output.dense.{p}",
        "{prefix}layers.{i}.self_attn.out_proj.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.attention.output.LayerNorm.{p}",
        "{prefix}layers.{i}.self_attn_norm.{p}",
    ),
    Rule(
        "{prefix}encoder.layer.{i}.intermediate.dense.{p}",
        "{prefix}layers.{i}.feed_forward.fc1.{p}",
    ),
    Rule("{prefix}encoder.layer.{i}.output.dense.{p}", "{prefix}layers.{i}.feed_forward.fc2.{p}"),
    Rule(
        "{prefix}encoder.layer.{i}.output.LayerNorm.{p}", "{prefix}layers.{i}.feed_forward_norm.{p}"
    ),
    Rule("{prefix}pooler.dense.{p}", "{prefix}pooler.{p}"),
    Rule("cls.predictions.transform.dense.{p}", "mlm_head.transform.{p}"),
    Rule("cls.predictions.transform.LayerNorm.{p}", "mlm_head.norm.{p}"),
    Rule("cls.predictions.bias", "mlm_head.decoder.bias"),
    Rule("cls.seq_relationship.{p}", "nsp_head.{p}"),
    Rule("classifier.{p}", "classifier.{p}"),
    Rule("qa_outputs.{p}", "qa_outputs.{p}"),
]
# BERT keeps W_Q, W_K, W_V as three tensors; ours stacks them into one qkv_proj.
BERT_QKV = (
    ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention.self.qkv",
)


def _marian_layer_rule(reference: str, ours: str) -> Rule:
    return Rule(
        f"{{prefix}}{{stack}}.layers.{{i}}.{reference}", f"{{prefix}}{{stack}}.layers.{{i}}.{ours}"
    )


MARIAN_RULES = [
    # Separate vocabularies: each stack has its own matrix. One vocabulary: Marian's `shared` is
    # our encoder's matrix, which the decoder and the output projection are tied to.
    Rule("{prefix}{stack}.embed_tokens.weight", "{prefix}{stack}.embed_tokens.weight"),
    Rule("{prefix}shared.weight", "{prefix}encoder.embed_tokens.weight"),
    _marian_layer_rule("self_attn.qkv.{p}", "self_attn.qkv_proj.{p}"),
    _marian_layer_rule("self_attn.out_proj.{p}", "self_attn.out_proj.{p}"),
    _marian_layer_rule("self_attn_layer_norm.{p}", "self_attn_norm.{p}"),
    _marian_layer_rule("encoder_attn.q_proj.{p}", "cross_attn.q_proj.{p}"),
    _marian_layer_rule("encoder_attn.kv.{p}", "cross_attn.kv_proj.{p}"),
    _marian_layer_rule("encoder_attn.out_proj.{p}", "cross_attn.out_proj.{p}"),
    _marian_layer_rule("encoder_attn_layer_norm.{p}", "cross_attn_norm.{p}"),
    _marian_layer_rule("fc1.{p}", "feed_forward.fc1.{p}"),
    _marian_layer_rule("fc2.{p}", "feed_forward.fc2.{p}"),
    _marian_layer_rule("final_layer_norm.{p}", "feed_forward_norm.{p}"),
    Rule("lm_head.weight", "lm_head.weight"),
    Rule("final_logits_bias", "final_logits_bias"),
]
MARIAN_QKV = (
    (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn.qkv"),
    (("encoder_attn.k_proj", "encoder_attn.v_proj"), "encoder_attn.kv"),
)
