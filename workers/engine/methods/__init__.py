"""Method registry: one file per method, one instance each, looked up by name."""

from __future__ import annotations

from workers.engine.methods.amnesiac import Amnesiac
from workers.engine.methods.base import (
    MethodNotApplicable,
    MethodParams,
    Scope,
    UnlearningMethod,
    UnlearningTask,
)
from workers.engine.methods.finetune import Finetune
from workers.engine.methods.gradient_ascent import GradientAscent
from workers.engine.methods.label_flip import LabelFlip
from workers.engine.methods.partial_amnesiac import PartialAmnesiac
from workers.engine.methods.retrain import Retrain
from workers.engine.methods.unsir import Unsir

METHODS: dict[str, UnlearningMethod] = {
    m.name: m for m in (Retrain(), Finetune(), Amnesiac(), PartialAmnesiac(), LabelFlip(), GradientAscent(), Unsir())
}


def get_method(name: str) -> UnlearningMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(METHODS)}") from None


__all__ = [
    "METHODS",
    "MethodNotApplicable",
    "MethodParams",
    "Scope",
    "UnlearningMethod",
    "UnlearningTask",
    "get_method",
]
