"""Unlearning methods: one file per method, one instance each, looked up by name.

``catalog`` describes them (params, scopes, kinds) without torch, for the API; the implementations
need torch, so ``METHODS``, ``get_method``, ``UnlearningMethod`` and ``UnlearningTask`` load on first
use (PEP 562) and importing ``workers.engine.methods.catalog`` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from workers.engine.methods.catalog import MethodNotApplicable, MethodParams, Scope

_LAZY = {"METHODS": "registry", "get_method": "registry", "UnlearningMethod": "base", "UnlearningTask": "base"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "METHODS",
    "MethodNotApplicable",
    "MethodParams",
    "Scope",
    "UnlearningMethod",
    "UnlearningTask",
    "get_method",
]
