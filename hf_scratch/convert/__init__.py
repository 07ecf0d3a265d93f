"""Weight converters between hf_scratch and the Hugging Face reference implementations.

    python -m hf_scratch.convert SRC_DIR DST_DIR          # a transformers checkpoint -> hf_scratch
    python -m hf_scratch.convert --to-hf SRC_DIR DST_DIR  # an hf_scratch folder -> transformers
    (also installed as the console script `hf-scratch-convert`)

The architecture is read from the source folder's `config.json` (`model_type` and `architectures`).
The output is written with `save_pretrained` (safetensors); an hf_scratch folder carries its source
files and an `auto_map`, so it loads with `trust_remote_code=True` where hf_scratch is not
installed. Tokenizer files are copied along.

Supported: BERT (`BertModel`, `BertForPreTraining` and every head class; W_Q, W_K, W_V are stacked
into our `qkv_proj`), OpenAI GPT (`OpenAIGPTModel`, `OpenAIGPTLMHeadModel`,
`OpenAIGPTDoubleHeadsModel`, `OpenAIGPTForSequenceClassification`) and GPT-2 (`GPT2Model`,
`GPT2LMHeadModel`, `GPT2DoubleHeadsModel`, `GPT2ForSequenceClassification`), which become hf_scratch
GPT in the GPT-1 layout or the GPT-2 layout (`norm_first=True`). OpenAI's `Conv1D` layers store
their weights as (in, out) and are transposed; their fused c_attn [W_Q | W_K | W_V] is exactly our
`qkv_proj` once transposed. Marian (`MarianMTModel`, `MarianModel`: the opus-mt checkpoints) becomes
the hf_scratch Transformer with Marian's options (sines-then-cosines positions, its activation, the
final logits bias); its self-attention q/k/v projections are stacked like BERT's, and its
cross-attention k/v into our `kv_proj`. The generation settings
(`generation_config.json`: beams, forced EOS, banned pad token) travel with the weights.

Converting a state dict renames every tensor by its family's rules and fails with the list of
tensors it could not place: nothing is dropped or initialised silently.

Modules, one idea each: `renaming` (the rename engine), `rules` (each family's tensor names),
`configs` (config translation), `families` (the registry and the conversions of models and of a
plain BERT folder), `folders` (folders and the command line).
"""

from .families import (
    FROM_REFERENCE,
    Family,
    LoadReport,
    from_reference,
    load_bert_checkpoint,
    to_reference,
)
from .folders import convert_folder, main
from .renaming import Rule, rename_state_dict

__all__ = [
    "FROM_REFERENCE",
    "Family",
    "LoadReport",
    "Rule",
    "convert_folder",
    "from_reference",
    "load_bert_checkpoint",
    "main",
    "rename_state_dict",
    "to_reference",
]
