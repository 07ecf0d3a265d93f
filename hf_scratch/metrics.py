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
