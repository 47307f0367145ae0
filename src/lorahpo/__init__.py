"""lorahpo: hyperparameter optimisation of LoRA fine-tuning for LLM text classifiers."""

from lorahpo.report import report

__all__ = ["report"]
