"""The forgetting-benchmark issue's targets, each judged on the run's own rows, with the figures
it was judged on. Defaults only: every row is a method at its defaults or a named variant."""

from __future__ import annotations

import statistics
from typing import Any

FIRST_EPOCH_PARTIAL = "gradient_ascent (first-epoch"  # + the layers, ", partial)"
MIA_GAP = 0.05  # original's MIA AUC above retrain's by this much: the gate must fail the original
SMALL = 100  # requests of at most this many samples: the 20x speed target


def final_rows(seeds: list[dict], scenario: str, method: str) -> list[dict]:
    """Each seed's row (for successive requests, the one after the last request)."""
    out = []
    for seed in seeds:
        rows = [r for r in seed["rows"] if r["scenario"] == scenario and r["method"] == method]
        if rows:
            out.append(max(rows, key=lambda r: r.get("request") or 0))
    return out


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def verified(row: dict) -> bool:
    """A request's outcome as the service judges it: retrain is exact, anything else must pass."""
    return row.get("auto_method") == "retrain" or bool(row.get("gate_passed"))


def target(scenario: str, method: str, what: str, checks: dict[str, bool], figures: dict) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "method": method,
        "target": what,
        "checks": checks,
        "met": all(checks.values()),
        "figures": figures,
    }


def check(seeds: list[dict]) -> list[dict[str, Any]]:
    first = seeds[0]
    out: list[dict[str, Any]] = []
    methods = {r["method"] for s in seeds for r in s["rows"]}
    for key in first["scenarios"]:
        scope = first["scopes"][key]
        sizes = first.get("request_sizes", {}).get(key) or [first["forget_sizes"][key]]
        auto, original, retrain = (final_rows(seeds, key, m) for m in ("auto", "original", "retrain"))
        if auto:
            out.append(_auto(key, scope, sizes, auto, original, retrain))
            for rival in ("salun", "scrub"):
                rows = final_rows(seeds, key, rival)
                if rows:
                    out.append(_beats(key, rival, auto, rows))
        out.append(_gate_on_original(key, original, retrain))
        if scope == "class_labels" and {"unsir", "unsir (reference: 1 noise input x 20)"} <= methods:
            ours, theirs = (
                _mean(final_rows(seeds, key, m), "avg_gap") for m in ("unsir", "unsir (reference: 1 noise input x 20)")
            )
            out.append(
                target(
                    key,
                    "unsir",
                    "unsir at its defaults beats the reference notebook's setting (1 noise input x 20) on Avg Gap",
                    {"avg_gap": ours is not None and (theirs is None or ours < theirs)},
                    {"avg_gap": ours, "reference_avg_gap": theirs},
                )
            )
        for method in sorted(m for m in methods if m.startswith(FIRST_EPOCH_PARTIAL) and m.endswith("partial)")):
            rows = final_rows(seeds, key, method)
            if rows:
                test, base = _mean(rows, "test_accuracy"), _mean(original, "test_accuracy")
                out.append(
                    target(
                        key,
                        method,
                        "retained accuracy (evaluation rows of the kept classes) within 1 point of the original",
                        {"retained": test is not None and test >= base - 0.01},
                        {"test_accuracy": test, "original": base},
                    )
                )
    out.append(_gate_on_retrain(seeds))
    return out


def _auto(key: str, scope: str, sizes: list[int], auto: list, original: list, retrain: list) -> dict[str, Any]:
    gap, original_gap = _mean(auto, "avg_gap"), _mean(original, "avg_gap")
    needed = 20 if max(sizes) <= SMALL else 10
    speed = None
    auto_time, retrain_time = _median(auto, "seconds"), _median(retrain, "seconds")
    if auto_time and retrain_time:
        speed = retrain_time * (len(sizes) if len(sizes) > 1 else 1) / auto_time
    checks = {
        "verified": all(verified(r) for r in auto),
        "avg_gap": gap is not None and gap <= 1.0,
        "speed": speed is not None and speed >= needed,
    }
    if original_gap is not None and original_gap > 1.0:
        checks["half_original"] = gap is not None and gap < original_gap / 2
    return target(
        key,
        "auto",
        f"every request verified; Avg Gap <= 1.0 (and < half the original's where that is > 1.0); "
        f"median time to a verified erasure >= {needed}x faster than retrain",
        checks,
        {
            "verified": sum(verified(r) for r in auto) / len(auto),
            "avg_gap": gap,
            "original_avg_gap": original_gap,
            "speedup": speed,
            "methods": sorted({r.get("auto_method", "") for r in auto}),
        },
    )


def _beats(key: str, rival: str, auto: list, rows: list) -> dict[str, Any]:
    ours, theirs = _mean(auto, "avg_gap"), _mean(rows, "avg_gap")
    # a job with the rival method also runs the gate: its time to a verdict is method + verification
    our_time = _mean(auto, "seconds")
    timed = [r["seconds"] + r.get("verify_seconds", 0.0) for r in rows if r.get("seconds") is not None]
    their_time = statistics.fmean(timed) if timed else None
    # a rival that diverged in every seed handed back no model: nothing to beat
    return target(
        key,
        "auto",
        f"auto beats {rival} (defaults) on Avg Gap and on time to a verdict (method + gate)",
        {
            "avg_gap": theirs is None or (ours is not None and ours <= theirs),
            "time": their_time is None or (our_time is not None and our_time <= their_time),
        },
        {"avg_gap": ours, f"{rival}_avg_gap": theirs, "seconds": our_time, f"{rival}_seconds": their_time},
    )


def _gate_on_original(key: str, original: list, retrain: list) -> dict[str, Any]:
    """Per seed: where the original's MIA AUC is >= 0.05 above the retrained model's, the gate must
    fail the original."""
    distinguishable = failed = 0
    for o, r in zip(original, retrain, strict=True):
        if o.get("mia_auc") is not None and r.get("mia_auc") is not None and o["mia_auc"] - r["mia_auc"] >= MIA_GAP:
            distinguishable += 1
            failed += not o["gate_passed"]
    return target(
        key,
        "gate",
        "the gate fails the untouched original wherever its MIA AUC exceeds the retrained model's by >= 0.05",
        {"fails_original": failed == distinguishable},
        {
            "seeds_distinguishable": distinguishable,
            "original_failed_there": failed,
            "original_failed_overall": sum(not o["gate_passed"] for o in original) / len(original),
            "mia_auc_gap": _mean(original, "mia_auc") - _mean(retrain, "mia_auc"),
        },
    )


def _gate_on_retrain(seeds: list[dict]) -> dict[str, Any]:
    rows = [r for key in seeds[0]["scenarios"] for r in final_rows(seeds, key, "retrain")]
    rate = sum(bool(r["gate_passed"]) for r in rows) / len(rows)
    return target(
        "all",
        "gate",
        "the gate passes the retrained model in >= 95% of scenario-seeds",
        {"passes_retrain": rate >= 0.95},
        {"pass_rate": rate, "scenario_seeds": len(rows)},
    )
