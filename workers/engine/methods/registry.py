"""The implementations, one instance each, looked up by name (torch: the worker's side of the catalog)."""

from __future__ import annotations

from workers.engine.methods.amnesiac import Amnesiac
from workers.engine.methods.base import UnlearningMethod
from workers.engine.methods.finetune import Finetune
from workers.engine.methods.gradient_ascent import GradientAscent
from workers.engine.methods.label_flip import LabelFlip
from workers.engine.methods.partial_amnesiac import PartialAmnesiac
from workers.engine.methods.retrain import Retrain
from workers.engine.methods.salun import Salun
from workers.engine.methods.scrub import Scrub
from workers.engine.methods.unsir import Unsir

METHODS: dict[str, UnlearningMethod] = {
    m.name: m
    for m in (
        Retrain(),
        Finetune(),
        Amnesiac(),
        PartialAmnesiac(),
        LabelFlip(),
        GradientAscent(),
        Unsir(),
        Salun(),
        Scrub(),
    )
}


def get_method(name: str) -> UnlearningMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(METHODS)}") from None
