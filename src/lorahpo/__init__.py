"""lorahpo: hyperparameter optimisation of LoRA fine-tuning for LLM text classifiers."""

from lorahpo import schema as _schema
from lorahpo.report import report

__all__ = ["report"]

import logging as _logging

# bitsandbytes' CPU backend warns, on import, that an optional kernel package (a download) is
# missing; it then uses its own CPU kernels, which is what 4-bit on CPU needs
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

_schema.register()  # the typed config schema, before any config is composed
