"""Held-out roles: which held-out rows (test and val) a method may read, and which only verification reads.

Every held-out row belongs to one of two parts, decided by a stable hash of its sample ID alone (so
the same row has the same role on every upload, in every process, for every model):

- ``calibration``: the only held-out rows a method or stopping rule may read (calibrated stopping,
  UNSIR, a language model's calibration documents);
- ``evaluation``: test accuracy, membership-inference non-members, the verification gate. No method
  reads them, so the figures measured on them are not measured on the data a method tuned itself on.

Torch-free: the API records the counts when a dataset is registered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

Role = Literal["calibration", "evaluation"]
CALIBRATION_FRACTION = 0.3  # the rest, 70%, is evaluation: the gate's tests need the larger part
RULE = "sha256('unlearnd/holdout-role/v1:' + sample_id), first 8 bytes big-endian / 2**64 < 0.3: calibration"
_PREFIX = b"unlearnd/holdout-role/v1:"  # its own hash domain: independent of the 80/20 train/test hash
_CUT = int(CALIBRATION_FRACTION * 2**64)


def role_of(sample_id: str) -> Role:
    h = int.from_bytes(hashlib.sha256(_PREFIX + sample_id.encode("utf-8")).digest()[:8], "big")
    return "calibration" if h < _CUT else "evaluation"


def calibration_mask(sample_ids: Iterable[str]) -> np.ndarray:
    """True where the row is in the calibration part (meaningful for held-out rows only)."""
    return np.fromiter((role_of(s) == "calibration" for s in sample_ids), dtype=bool)


def role_counts(held_out_ids: Sequence[str]) -> dict[str, int | float | str]:
    """What a dataset records: how many of its held-out rows have each role, and the rule."""
    calibration = int(calibration_mask(held_out_ids).sum()) if len(held_out_ids) else 0
    return {
        "calibration": calibration,
        "evaluation": len(held_out_ids) - calibration,
        "calibration_fraction": CALIBRATION_FRACTION,
        "rule": RULE,
    }


def held_out_rows(split: np.ndarray, ids: np.ndarray, role: Role) -> np.ndarray:
    """Indices of the held-out rows (test or val) with this role. ``ids`` is per row: a language
    model's blocks repeat their document's ID, and every block of a document shares its role."""
    held = np.flatnonzero(split != "train")
    if not len(held):
        return held
    unique, inverse = np.unique(ids[held], return_inverse=True)
    calibration = calibration_mask(unique.tolist())[inverse]
    return held[calibration if role == "calibration" else ~calibration]
