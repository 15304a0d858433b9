"""Verification of a language model after training or unlearning: perplexity per set, greedy-
continuation exact match of the forgotten documents, and loss-based membership inference.

The sets are ``LabelledTensors`` of packed blocks (``workers.engine.text.lm_tensors``): ``x`` token
IDs, ``y`` labels (``IGNORE_INDEX`` on padding), ``ids`` the document of each block (needed for
exact match, which goes by document).
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from workers.engine.lm_metrics import exact_match_rate, perplexity
from workers.engine.metrics import mia_from_losses, per_sample_losses
from workers.engine.objectives import CAUSAL_LM
from workers.engine.tensors import LabelledTensors
from workers.engine.text import IGNORE_INDEX


def document_tokens(data: LabelledTensors) -> list[list[int]]:
    """Each document's real tokens, its blocks concatenated in row order; documents in the order of
    their first block (rows without ``ids`` count as one document each)."""
    ids = data.ids if data.ids is not None else [str(i) for i in range(len(data))]
    docs: dict[str, list[int]] = {}
    real = (data.y != IGNORE_INDEX).cpu()
    tokens = data.x.cpu()
    for row, sid in enumerate(ids):
        docs.setdefault(sid, []).extend(tokens[row][real[row]].tolist())
    return list(docs.values())


def set_perplexity(model: nn.Module, data: LabelledTensors | None) -> float | None:
    """exp(mean next-token NLL over the set's real target tokens); None for an empty set."""
    if data is None or len(data) == 0:
        return None
    return perplexity(model, data.x, (data.y != IGNORE_INDEX))  # moves each batch to the model's device


def lm_verification(
    model: nn.Module,
    sets: dict[str, LabelledTensors | None],
    forget_key: str = "forget",
    holdout_key: str = "test",
    prefix_tokens: int = 32,
    continuation_tokens: int = 32,
) -> dict[str, Any]:
    """``{"perplexity": {name: value per set}, "exact_match": {...}, "mia": {...} | None}``.

    - perplexity: exp of the token-mean NLL over each set's real tokens (None for an empty set);
    - exact_match (of ``sets[forget_key]``'s documents): greedy continuation of ``continuation_tokens``
      after each document's first ``prefix_tokens`` tokens against the document's own next tokens
      (``lm_metrics.exact_match_rate``; documents shorter than both are skipped and counted); empty
      (None values) when the model's context cannot hold prefix and continuation;
    - mia: membership inference of the forget blocks against the holdout blocks by per-block loss
      (mean next-token NLL), ``metrics.mia_from_losses`` (None below 5 blocks a side).
    """
    out: dict[str, Any] = {"perplexity": {name: set_perplexity(model, data) for name, data in sets.items()}}
    forget = sets.get(forget_key)
    n_positions = getattr(getattr(model, "config", None), "n_positions", None)
    if forget is None or len(forget) == 0:
        out["exact_match"] = None
    elif n_positions is not None and prefix_tokens + continuation_tokens - 1 > n_positions:
        out["exact_match"] = {
            "exact_match_rate": None,
            "token_match_rate": None,
            "note": f"the context ({n_positions} tokens) cannot hold {prefix_tokens} + {continuation_tokens} tokens",
        }
    else:
        out["exact_match"] = exact_match_rate(
            model, document_tokens(forget), prefix_tokens, continuation_tokens
        ).as_dict()
    holdout = sets.get(holdout_key)
    mia = None
    if forget is not None and holdout is not None and len(forget) and len(holdout):
        mia = mia_from_losses(
            per_sample_losses(model, forget, objective=CAUSAL_LM),
            per_sample_losses(model, holdout, objective=CAUSAL_LM),
        )
    out["mia"] = mia
    out["forget_mean_nll"] = _log(out["perplexity"].get(forget_key))
    out["holdout_mean_nll"] = _log(out["perplexity"].get(holdout_key))
    return out


def _log(value: float | None) -> float | None:
    return math.log(value) if value else None


__all__ = ["document_tokens", "lm_verification", "set_perplexity"]
