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


def translation_metrics(tokenizer):
    """`compute_metrics` for a Seq2SeqTrainer with `predict_with_generate`: corpus BLEU and chrF of
    the detokenized outputs against the references (sacreBLEU's defaults: 13a tokenization, which is
    what papers report as SacreBLEU), and the mean output length in tokens (special tokens not
    counted)."""
    import sacrebleu

    def compute(prediction) -> dict[str, float]:
        predictions, labels = prediction.predictions, prediction.label_ids
        pad = tokenizer.pad_token_id
        predictions = np.where(predictions < 0, pad, predictions)  # -100 from padding across steps
        labels = np.where(labels < 0, pad, labels)
        hypotheses = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        references = tokenizer.batch_decode(labels, skip_special_tokens=True)
        return {
            "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            "gen_len": float(
                np.isin(predictions, tokenizer.all_special_ids, invert=True).sum(-1).mean()
            ),
        }

    return compute
