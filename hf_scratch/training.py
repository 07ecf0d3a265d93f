"""The end of every example script: train, evaluate on the held-out split, save everything."""

import math

from transformers import Trainer


def train_evaluate_save(trainer: Trainer, perplexity: bool = False) -> dict[str, float]:
    """Train (resuming from `--resume_from_checkpoint` if given), evaluate, and write the metrics
    (eval_results.json), the model and tokenizer (`save_pretrained`, with the model's source files)
    and the trainer state (trainer_state.json, the loss curve) into the output folder. With
    `perplexity`, the metrics add exp(eval_loss), the perplexity of a language model's mean loss."""
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    if perplexity:
        metrics["perplexity"] = math.exp(metrics["eval_loss"])
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    trainer.save_model()
    trainer.save_state()
    return metrics
