"""What a model is trained (and unlearned) to minimise: the loss of one batch, per model kind.

- ``CLASSIFICATION`` (architectures of kind ``"classifier"``): ``x`` inputs, ``y`` class labels
  ``[N]``; the cross-entropy of ``model(x)``.
- ``CAUSAL_LM`` (kind ``"language_model"``): ``x`` token IDs ``[N, T]`` (long), ``y`` labels
  ``[N, T]``: the same tokens with ``IGNORE_INDEX`` (-100) on padding (``PackedBlocks.labels``).
  Token ``t + 1`` is predicted from tokens ``<= t`` of the row (next-token shift: ``logits[:, :-1]``
  against ``y[:, 1:]``); a row's loss is the mean NLL over its real target tokens.

``loss(model, x, y, reduction)``:

- ``"none"``: one value per row (classification: its cross-entropy; causal LM: the row's mean NLL
  over its target tokens, 0 for a row without any);
- ``"sum"``: the sum of those per-row values;
- ``"mean"``: classification: the mean over rows; causal LM: the mean NLL over every real target
  token of the batch (rows weighted by their token counts, as perplexity is).

Pure torch: no service imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.text import IGNORE_INDEX

Reduction = Literal["mean", "sum", "none"]


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a model output: a tensor, an object with ``.logits`` (transformers), or a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, tuple | list):
        return out[0]
    raise TypeError(f"cannot find logits in a {type(out).__name__}")


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token NLL ``[N, T-1]`` (0 where there is no target) and the bool mask of real targets."""
    logits = logits[:, :-1]
    targets = labels[:, 1:]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(targets)
    return nll, targets != IGNORE_INDEX


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    nll, mask = token_nll(logits, labels)
    if reduction == "mean":
        return nll.sum() / mask.sum().clamp(min=1)
    per_row = nll.sum(1) / mask.sum(1).clamp(min=1)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def trimmed(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of blocks without the trailing columns that are padding in every row. Attention is
    causal, so no real token sees them: the loss is the same, and a batch of short documents costs
    the tokens it holds rather than whole blocks (a one-line document in a 128-token block: 5x)."""
    real = (y != IGNORE_INDEX).any(0)
    if bool(real.all()):
        return x, y
    n = int(real.nonzero().max()) + 1 if bool(real.any()) else 1
    return x[:, :n], y[:, :n]


@dataclass(frozen=True)
class Objective:
    name: Literal["classification", "causal_lm"]

    def loss_from_output(self, out: Any, y: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
        """The loss of an already computed model output (what ``loss`` does after the forward pass)."""
        if self.name == "classification":
            return F.cross_entropy(logits_of(out), y, reduction=reduction)
        return causal_lm_loss(logits_of(out), y, reduction)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
        if self.name == "causal_lm":
            x, y = trimmed(x, y)
        return self.loss_from_output(model(x), y, reduction)

    def token_totals(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(summed loss, count) of a batch such that summing both over batches and dividing gives the
        ``"mean"`` of the whole set: (sum of per-row losses, rows) for classification, (sum of token
        NLL, target tokens) for a causal LM."""
        if self.name == "causal_lm":
            x, y = trimmed(x, y)
        out = model(x)
        if self.name == "classification":
            return F.cross_entropy(logits_of(out), y, reduction="sum"), len(y)
        nll, mask = token_nll(logits_of(out), y)
        return nll.sum(), int(mask.sum())


CLASSIFICATION = Objective("classification")
CAUSAL_LM = Objective("causal_lm")
_BY_KIND = {"classifier": CLASSIFICATION, "language_model": CAUSAL_LM}


def objective_for(kind: str) -> Objective:
    """The objective of an architecture kind (``Architecture.kind``)."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(_BY_KIND)}") from None


__all__ = [
    "CAUSAL_LM",
    "CLASSIFICATION",
    "Objective",
    "causal_lm_loss",
    "logits_of",
    "objective_for",
    "token_nll",
    "trimmed",
]
