"""Evaluation metrics computed locally (the `evaluate` hub metrics cannot be downloaded offline)."""

import numpy as np


def classification_metrics(prediction) -> dict[str, float]:
    """`compute_metrics` for a Trainer: accuracy, and for two classes the F1 of class 1."""
    predicted = np.argmax(prediction.predictions, axis=-1)
    labels = prediction.label_ids
    metrics = {"accuracy": float((predicted == labels).mean())}
    if prediction.predictions.shape[-1] == 2:
        true_positive = float(((predicted == 1) & (labels == 1)).sum())
        precision = true_positive / max(float((predicted == 1).sum()), 1.0)
        recall = true_positive / max(float((labels == 1).sum()), 1.0)
        metrics["f1"] = 2 * precision * recall / max(precision + recall, 1e-12)
    return metrics


def decode_token_ids(tokenizer, ids: np.ndarray) -> list[str]:
    """Texts of a batch of generated or label ids, special tokens dropped; the -100 that pads labels
    and predictions gathered across batches of different lengths is read as padding."""
    return tokenizer.batch_decode(
        np.where(ids < 0, tokenizer.pad_token_id, ids), skip_special_tokens=True
    )


def translation_metrics(tokenizer):
    """`compute_metrics` for a Seq2SeqTrainer with `predict_with_generate`: corpus BLEU and chrF of
    the detokenized outputs against the references (sacreBLEU's defaults: 13a tokenization, which is
    what papers report as SacreBLEU), and the mean output length in tokens (special tokens not
    counted)."""
    import sacrebleu

    def compute(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        hypotheses = decode_token_ids(tokenizer, predictions)
        references = decode_token_ids(tokenizer, prediction.label_ids)
        generated = (predictions >= 0) & np.isin(
            predictions, tokenizer.all_special_ids, invert=True
        )
        return {
            "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            "gen_len": float(generated.sum(-1).mean()),
        }

    return compute
