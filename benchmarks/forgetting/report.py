"""Aggregate the seeds into the markdown table, the JSON and the plots under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

PCT = ("forget_accuracy", "retain_accuracy", "test_accuracy", "forget_class_test_accuracy", "mia_accuracy")
KEYS = (*PCT, "mia_auc", "avg_gap", "seconds", "speedup", "log_bytes", "dense_log_bytes")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git_commit(),
    }


def git_commit() -> str:
    """The checkout's commit, ``-dirty`` when it has uncommitted changes; ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        # results written by this or an earlier run do not make the code dirty
        status = ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(status, cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def aggregate(seeds: list[dict]) -> dict[tuple, dict[str, tuple[float, float]]]:
    """(scenario, method, request) -> {metric: (mean, std over seeds)}."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for seed in seeds:
        for row in seed["rows"]:
            groups[(row["scenario"], row["method"], row.get("request"))].append(row)
    out = {}
    for key, rows in groups.items():
        stats = {}
        for metric in KEYS:
            values = [r[metric] for r in rows if r.get(metric) is not None]
            if values:
                stats[metric] = (float(np.mean(values)), float(np.std(values)), len(values))
        out[key] = stats
    return out


def _fmt(stat: tuple | None, scale: float = 1.0, digits: int = 2) -> str:
    if stat is None:
        return ""
    mean, std, n = stat
    if n > 1:
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}"


def _target(scenario: str, method: str, target: str, checks: dict[str, bool], figures: dict) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "method": method,
        "target": target,
        "checks": checks,
        "met": all(checks.values()),
        "figures": figures,
    }


def check_targets(agg: dict, scenarios: dict[str, str]) -> list[dict[str, Any]]:
    """The issue's targets, each with its separate checks and the figures they were judged on."""
    results = []

    def mean(scenario, method, metric, request=None):
        stat = agg.get((scenario, method, request), {}).get(metric)
        return None if stat is None else stat[0]

    def last_request(key):
        return max((r for (s, m, r) in agg if s == key and r is not None), default=None)

    for key in ("class-3", "classes-0-2"):
        if key not in scenarios:
            continue
        original = mean(key, "original", "test_accuracy")
        methods = sorted({m for (s, m, r) in agg if s == key and (m == "unsir" or "partial" in m)})
        for method in methods:
            forgotten, kept, speed = (
                mean(key, method, k) for k in ("forget_class_test_accuracy", "test_accuracy", "speedup")
            )
            results.append(
                _target(
                    key,
                    method,
                    "forgotten-class test <= 1%, retained-class test >= original - 1.0 pt, >= 20x faster",
                    {"forgotten": forgotten <= 0.01, "retained": kept >= original - 0.01, "speed": speed >= 20},
                    {
                        "forgotten_class_test": forgotten,
                        "retained_class_test": kept,
                        "original": original,
                        "speedup": speed,
                    },
                )
            )
    for key in ("random-samples", "one-digit-samples", "sequential"):
        request = last_request(key)
        test = mean(key, "partial_amnesiac", "test_accuracy", request)
        if key not in scenarios or test is None:
            continue
        original = mean(key, "original", "test_accuracy")
        mia, mia_ref = mean(key, "partial_amnesiac", "mia_accuracy", request), mean(key, "retrain", "mia_accuracy")
        ratio = mean(key, "partial_amnesiac", "log_bytes", request) / mean(
            key, "partial_amnesiac", "dense_log_bytes", request
        )
        speed = mean(key, "partial_amnesiac", "speedup", request)
        results.append(
            _target(
                key,
                "partial_amnesiac",
                "no fine-tuning: test >= original - 0.5 pt, MIA within 0.02 of retrain, "
                "log <= 15% of dense, >= 50x faster",
                {
                    "test": test >= original - 0.005,
                    "mia": abs(mia - mia_ref) <= 0.02,
                    "storage": ratio <= 0.15,
                    "speed": speed >= 50,
                },
                {
                    "test": test,
                    "original": original,
                    "mia": mia,
                    "retrain_mia": mia_ref,
                    "log_ratio": ratio,
                    "speedup": speed,
                },
            )
        )
    for key in scenarios:
        request = last_request(key)
        ranked = sorted(
            (agg[(s, m, r)]["avg_gap"][0], m)
            for (s, m, r) in agg
            if s == key and r == request and m not in ("original", "retrain") and "avg_gap" in agg[(s, m, r)]
        )
        if ranked:
            results.append(
                _target(
                    key,
                    ranked[0][1],
                    "best method Avg Gap <= 1.0 pt",
                    {"avg_gap": ranked[0][0] <= 1.0},
                    {"avg_gap": ranked[0][0]},
                )
            )
    return results


def markdown(profile: str, seeds: list[dict], agg: dict, targets: list[dict], info: dict) -> str:
    scenarios = seeds[0]["scenarios"]
    lines = [
        f"# Forgetting benchmark: {profile}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (torch {info['torch']}, {info['torch_threads']} threads, "
        f"Python {info['python']}). Seeds: {', '.join(str(s['seed']) for s in seeds)}; figures are mean ± "
        "standard deviation over the seeds.",
        "",
        f"Original model: test accuracy {_fmt(_stat([s['original_test_accuracy'] for s in seeds]), 100)}%, "
        f"trained with both update logs in {_fmt(_stat([s['train_seconds'] for s in seeds]), 1, 1)} s; "
        f"{seeds[0]['logs']['steps']} recorded steps; dense log "
        f"{seeds[0]['logs']['dense_bytes'] / 1e6:.0f} MB, pruned log (top 10% per tensor) "
        f"{seeds[0]['logs']['pruned_bytes'] / 1e6:.0f} MB ({seeds[0]['logs']['pruned_ratio']:.1%} of dense), "
        f"first-epoch gradients of fc2 {seeds[0]['logs']['gradient_bytes'] / 1e6:.0f} MB.",
        "",
        "Accuracies, MIA and Avg Gap in percent / percentage points. Avg Gap: mean |metric - retrain| over "
        "forget, retain, test accuracy and MIA. Speed-up: retrain time / method time. Log: the update-log "
        "bytes the method needs.",
        "",
    ]
    for key, title in scenarios.items():
        lines += [f"## {title}", ""]
        sequential = any(r is not None for (s, m, r) in agg if s == key)
        class_scope = key.startswith("class")
        head = (
            ["method", "forget acc", "retain acc", "test acc"]
            + (["forgotten-class test"] if class_scope else [])
            + ["MIA", "Avg Gap", "time (s)", "speed-up", "log (MB)"]
        )
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        last = max((r for (s, m, r) in agg if s == key and r is not None), default=None)
        for (s, m, r), stat in agg.items():
            if s != key or (sequential and r not in (None, last)):
                continue
            cells = [
                m,
                _fmt(stat.get("forget_accuracy"), 100),
                _fmt(stat.get("retain_accuracy"), 100),
                _fmt(stat.get("test_accuracy"), 100),
            ]
            if class_scope:
                cells.append(_fmt(stat.get("forget_class_test_accuracy"), 100))
            cells += [
                _fmt(stat.get("mia_accuracy"), 100),
                _fmt(stat.get("avg_gap")),
                _fmt(stat.get("seconds")),
                _fmt(stat.get("speedup"), 1, 1),
                _fmt(stat.get("log_bytes"), 1e-6, 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if sequential:
            lines += [
                "",
                f"After the last of the {last} requests; time is cumulative and the speed-up is against "
                f"retraining after every request ({last} x the measured retrain). The reference is the model "
                "retrained without all of them (the same forget set as the 1% scenario). Per-request figures "
                "are in the JSON and the plot.",
            ]
        lines.append("")
    lines += ["## Targets", "", "| scenario | method | target | met | missed | figures |", "|---|---|---|---|---|---|"]
    for t in targets:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in t["figures"].items() if v is not None)
        missed = ", ".join(k for k, ok in t["checks"].items() if not ok)
        lines.append(
            f"| {t['scenario']} | {t['method']} | {t['target']} | {'yes' if t['met'] else 'NO'} | {missed} "
            f"| {figures} |"
        )
    return "\n".join(lines) + "\n"


def _stat(values: list[float]) -> tuple[float, float, int]:
    return float(np.mean(values)), float(np.std(values)), len(values)


def plots(profile: str, agg: dict, scenarios: dict[str, str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 4), squeeze=False)
    for ax, key in zip(axes[0], scenarios, strict=True):
        last = max((r for (s, m, r) in agg if s == key and r is not None), default=None)
        for (s, m, r), stat in agg.items():
            if s == key and r == last and m not in ("original", "retrain") and "avg_gap" in stat and "speedup" in stat:
                ax.scatter(stat["speedup"][0], stat["avg_gap"][0], s=18)
                ax.annotate(m, (stat["speedup"][0], stat["avg_gap"][0]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("speed-up over retraining")
        ax.set_ylabel("Avg Gap to retraining (pt)")
        ax.set_title(scenarios[key], fontsize=8)
    fig.tight_layout()
    path = out / f"forgetting-{profile}-tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    seq = [(m, r, stat) for (s, m, r), stat in agg.items() if s == "sequential" and r is not None]
    if seq:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for method in sorted({m for m, _, _ in seq}):
            points = sorted((r, st) for m, r, st in seq if m == method)
            a1.plot(
                [r for r, _ in points], [st["test_accuracy"][0] * 100 for _, st in points], marker="o", label=method
            )
            a2.plot(
                [r for r, _ in points], [st["forget_accuracy"][0] * 100 for _, st in points], marker="o", label=method
            )
        a1.set_title("test accuracy after each request (%)")
        a2.set_title("accuracy on everything forgotten so far (%)")
        for a in (a1, a2):
            a.set_xlabel("request")
        a1.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"forgetting-{profile}-sequential.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write(profile: str, seeds: list[dict], out: Path, wall_seconds: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(seeds)
    scenarios = seeds[0]["scenarios"]
    targets = check_targets(agg, scenarios)
    info = machine()
    text = markdown(profile, seeds, agg, targets, info)
    text += f"\nWhole run: {wall_seconds / 60:.1f} minutes.\n"
    (out / f"forgetting-{profile}.md").write_text(text)
    summary = {
        "profile": profile,
        "machine": info,
        "wall_seconds": wall_seconds,
        "targets": targets,
        "aggregate": [
            {"scenario": s, "method": m, "request": r, **{k: list(v) for k, v in st.items()}}
            for (s, m, r), st in agg.items()
        ],
        "seeds": seeds,
    }
    (out / f"forgetting-{profile}.json").write_text(json.dumps(summary, indent=1, default=float))
    plots(profile, agg, scenarios, out)
    return summary
