"""Training the tokenizers the examples need when the user brings none, with the `tokenizers`
library."""

from collections.abc import Iterable, Sized

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"


def _train(tokenizer: Tokenizer, texts: Iterable[str], trainer) -> None:
    """Learn the vocabulary; the progress bar knows its end when the texts have a length."""
    length = len(texts) if isinstance(texts, Sized) else None
    tokenizer.train_from_iterator(texts, trainer, length=length)


def train_byte_level_bpe(
    texts: Iterable[str], vocab_size: int, show_progress: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's scheme: any byte sequence is representable, so there is
    no unknown token), with one special token, <|endoftext|>, serving as bos, eos and padding."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    _train(tokenizer, texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )


UNKNOWN_CHARACTER = "<unk>"


def train_characters(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A character-level tokenizer, as nanoGPT's Shakespeare model uses: one token per character
    seen in `texts`, numbered in code-point order from 0 (65 for Tiny Shakespeare), then
    <|endoftext|> (bos, eos and padding) and <unk> (a character never seen). Decoding joins the
    characters, so text made of seen characters round-trips exactly."""
    characters = sorted(set().union(*map(set, texts)))
    vocabulary = {character: i for i, character in enumerate(characters)}
    vocabulary.update({END_OF_TEXT: len(characters), UNKNOWN_CHARACTER: len(characters) + 1})
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=UNKNOWN_CHARACTER))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        unk_token=UNKNOWN_CHARACTER,
        clean_up_tokenization_spaces=False,
    )


BERT_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, lowercase: bool = True, show_progress: bool = True
) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer as BERT's (Wu et al. 2016): BERT's normalisation (lower-casing, accents
    stripped) and pre-tokenisation, continuation pieces prefixed "##", and the special tokens [PAD]
    (id 0), [UNK], [CLS], [SEP], [MASK]; encoding a pair gives [CLS] A [SEP] B [SEP] with token type
    ids 0 / 1."""
    specials = list(BERT_SPECIAL_TOKENS.values())
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=show_progress
    )
    _train(tokenizer, texts, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **BERT_SPECIAL_TOKENS,
    )


TRANSLATION_SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}


def train_translation_bpe(
    texts: Iterable[str], vocab_size: int, show_progress: bool = True
) -> PreTrainedTokenizerFast:
    """A BPE tokenizer shared by the source and the target language (the Transformer's joint
    vocabulary, §5.1), in SentencePiece's style: NFKC normalisation, words marked by a leading "▁"
    so that decoding restores the spacing, digits kept apart, and the special tokens <pad> (id 0),
    <s> (1, the decoder start), </s> (2, appended to every encoded sentence) and <unk> (3,
    characters never seen)."""
    specials = list(TRANSLATION_SPECIAL_TOKENS.values())
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    # Digits stay single tokens, so numbers are spelled rather than memorised as wholes.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=show_progress
    )
    _train(tokenizer, texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **TRANSLATION_SPECIAL_TOKENS)
