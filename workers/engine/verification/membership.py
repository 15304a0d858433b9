"""Sample scope: can a loss attack tell the forget set from data the model never saw?

Two sets of per-row losses: the forget set F, and the evaluation rows R of F's classes (never seen
by the model, never read by a method). The attack scores a row as a member when its loss is low; its
ROC-AUC on F against R is ``P(loss_f < loss_r)`` (ties count half).

- never-seen baseline: the same attack with an equal-size set S drawn from R in F's place (F's class
  counts, so a forget set of hard classes is not mistaken for a memorised one; at most a quarter of
  R, so that the reference keeps most of it), against R \\ S:
  what a model that never saw F would score;
- excess = AUC(F, R \\ S) - AUC(S, R \\ S), averaged over many draws of S; its upper confidence
  bound comes from a bootstrap over F and the reference;
- pass when that bound is at most the margin. A small forget set cannot pass a small margin even
  when it was never seen: ``half_width`` says how far above the excess the bound sits, and
  :func:`expected_half_width` estimates it from the set sizes alone (method ``auto`` uses it to skip
  methods the test could never verify).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

MIN_ROWS = 5  # per side, below which there is no test at all
BASELINE_DRAWS = 200
SET_ASIDE = 4  # a never-seen set takes at most 1/4 of each class's evaluation rows


def auc_lower_is_member(members: np.ndarray, others: np.ndarray) -> float:
    """P(member loss < other loss) + P(equal) / 2: the ROC-AUC of "low loss means member"."""
    return float(_placements(members, np.sort(others)).mean())


def _placements(members: np.ndarray, sorted_others: np.ndarray) -> np.ndarray:
    """For each member, the fraction of others with a higher loss (ties half)."""
    lo = np.searchsorted(sorted_others, members, side="left")
    hi = np.searchsorted(sorted_others, members, side="right")
    return (len(sorted_others) - hi + 0.5 * (hi - lo)) / len(sorted_others)


def expected_half_width(n_forget: int, n_reference: int, confidence: float) -> float:
    """The bound's distance above the excess for a forget set of ``n_forget`` rows and ``n_reference``
    evaluation rows of its classes: z * the Mann-Whitney null SD of an AUC, sqrt((n + m + 1) / (12 n m)),
    with m the reference left beside a never-seen set."""
    m = n_reference - min(n_forget, n_reference // SET_ASIDE)
    if n_forget < MIN_ROWS or n_reference // SET_ASIDE < MIN_ROWS:
        return math.inf
    z = NormalDist().inv_cdf(confidence)
    return z * math.sqrt((n_forget + m + 1) / (12 * n_forget * m))


def _cap(values: np.ndarray, labels: np.ndarray, limit: int, rng: np.random.Generator):
    if len(values) <= limit:
        return values, labels
    rows = rng.permutation(len(values))[:limit]
    return values[rows], labels[rows]


def _never_seen_draws(
    ref_labels: np.ndarray, forget_labels: np.ndarray, rng: np.random.Generator
) -> tuple[list[np.ndarray], int]:
    """Masks over R: True for the rows of one never-seen set S (F's class counts, at most a quarter of
    each class's rows, so that the reference R \\ S keeps most of them), ``BASELINE_DRAWS`` times;
    empty when S would be too small. And the size of S."""
    classes, counts = np.unique(forget_labels, return_counts=True)
    by_class = {c: np.flatnonzero(ref_labels == c) for c in classes}
    take = {c: min(int(k), len(by_class[c]) // SET_ASIDE) for c, k in zip(classes, counts, strict=True)}
    size = sum(take.values())
    if size < MIN_ROWS:
        return [], size
    draws = []
    for _ in range(BASELINE_DRAWS):
        chosen = np.zeros(len(ref_labels), dtype=bool)
        for c in classes:
            chosen[rng.choice(by_class[c], take[c], replace=False)] = True
        draws.append(chosen)
    return draws, size


def membership_test(
    forget_losses: np.ndarray,
    forget_labels: np.ndarray,
    reference_losses: np.ndarray,
    reference_labels: np.ndarray,
    *,
    margin: float,
    confidence: float,
    bootstrap: int,
    max_rows: int,
    seed: int = 0,
) -> dict[str, Any]:
    """The gate's sample-scope test, as stored in the job's metrics."""
    rng = np.random.default_rng(seed)
    f, f_labels = _cap(np.asarray(forget_losses, np.float64), np.asarray(forget_labels), max_rows, rng)
    r, r_labels = _cap(np.asarray(reference_losses, np.float64), np.asarray(reference_labels), max_rows, rng)
    out: dict[str, Any] = {
        "name": "membership_inference",
        "statistic": None,
        "threshold": margin,
        "comparison": "upper bound of (AUC forget - AUC never-seen) <= threshold",
        "passed": False,
        "forget_rows": len(f),
        "reference_rows": len(r),
        "confidence": confidence,
    }
    draws, baseline_rows = _never_seen_draws(r_labels, f_labels, rng) if len(r) else ([], 0)
    if len(f) < MIN_ROWS or not draws:
        out["note"] = (
            f"too few rows to test: {len(f)} forget rows, never-seen sets of {baseline_rows} rows "
            f"(at least {MIN_ROWS} each)"
        )
        return out
    # Each draw compares F and S with the same reference R \ S, so that taking S out of R does not
    # change the reference's class mix for one side only.
    references = [np.sort(r[~s]) for s in draws]
    baseline = float(np.mean([_placements(r[s], ref).mean() for s, ref in zip(draws, references, strict=True)]))
    auc = float(np.mean([_placements(f, ref).mean() for ref in references]))
    replicates = np.empty(bootstrap)
    for i in range(bootstrap):  # F and the reference resampled
        ref = references[i % len(references)]
        ref = np.sort(ref[rng.integers(0, len(ref), len(ref))])
        replicates[i] = _placements(f[rng.integers(0, len(f), len(f))], ref).mean()
    excess = auc - baseline
    bound = float(np.quantile(replicates, confidence)) - baseline
    out.update(
        statistic=round(bound, 6),
        passed=bound <= margin,
        auc_forget=round(auc, 6),
        auc_never_seen=round(baseline, 6),
        never_seen_rows=baseline_rows,
        excess=round(excess, 6),
        half_width=round(bound - excess, 6),
    )
    return out
