"""Aggregate the seeds into the markdown tables, the JSON and the plots (benchmarks/results/ unless
``--out`` says otherwise), with the machine, the device and the git commit they ran on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.forgetting import plots, targets
from benchmarks.forgetting.profiles import Profile

PCT = ("forget_accuracy", "retain_accuracy", "test_accuracy", "forget_class_test_accuracy", "mia_accuracy")
KEYS = (
    *PCT,
    "mia_auc",
    "avg_gap",
    "seconds",
    "speedup",
    "log_bytes",
    "dense_log_bytes",
    "relearn_statistic",
    "verify_seconds",
)


def machine(device: torch.device | None = None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = device or torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
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


def aggregate(seeds: list[dict]) -> dict[tuple, dict[str, Any]]:
    """(scenario, method, request) -> {metric: (mean, std, n over seeds)}, and the gate's verdicts."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for seed in seeds:
        for row in seed["rows"]:
            groups[(row["scenario"], row["method"], row.get("request"))].append(row)
    out = {}
    for key, rows in groups.items():
        stats: dict[str, Any] = {}
        for metric in KEYS:
            values = [r[metric] for r in rows if r.get(metric) is not None]
            if values:
                stats[metric] = (float(np.mean(values)), float(np.std(values)), len(values))
        gated = [r for r in rows if "gate_passed" in r]
        if gated:
            stats["gate_passed"] = sum(bool(r["gate_passed"]) for r in gated)
            stats["gate_runs"] = len(gated)
            stats["gate_failed"] = dict(Counter(name for r in gated for name, ok in r["gate"].items() if ok is False))
        if any("auto_method" in r for r in rows):
            stats["auto_methods"] = dict(Counter(r["auto_method"] for r in rows))
        out[key] = stats
    return out


def _fmt(stat: tuple | None, scale: float = 1.0, digits: int = 2) -> str:
    if stat is None:
        return ""
    mean, std, n = stat
    if n > 1:
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}"


def gate_cell(stat: dict) -> str:
    if "gate_runs" not in stat:
        return ""
    cell = f"{stat['gate_passed']}/{stat['gate_runs']}"
    if stat["gate_failed"]:
        cell += " (fails: " + ", ".join(f"{name} {n}" for name, n in sorted(stat["gate_failed"].items())) + ")"
    return cell


def _stat(values: list[float]) -> tuple[float, float, int]:
    return float(np.mean(values)), float(np.std(values)), len(values)


def last_request(agg: dict, key: str) -> int | None:
    return max((r for (s, m, r) in agg if s == key and r is not None), default=None)


def header(profile: Profile, seeds: list[dict], info: dict) -> list[str]:
    logs = seeds[0]["logs"]
    layers = "+".join(logs["gradient_layers"])
    if logs["dense_bytes"] is None:  # a profile without the dense log (benchmarks/gpu): no amnesiac row
        trained, dense = "with the pruned update log", "no dense log (the profile leaves it and amnesiac out)"
    else:
        trained, dense = "with both update logs", f"dense log {logs['dense_bytes'] / 1e6:.0f} MB"
    return [
        f"# Forgetting benchmark: {profile.name}",
        "",
        f"`{profile.command}` at commit `{info['commit']}`. {profile.title}. Device: {info['device_name']}; "
        f"{info['cpu']}, {info['cores']} cores (torch {info['torch']}, {info['torch_threads']} threads, "
        f"Python {info['python']}). Seeds: {', '.join(str(s['seed']) for s in seeds)}; figures are mean ± "
        "standard deviation over the seeds.",
        "",
        f"Original model: test accuracy {_fmt(_stat([s['original_test_accuracy'] for s in seeds]), 100)}%, "
        f"trained {trained} in {_fmt(_stat([s['train_seconds'] for s in seeds]), 1, 1)} s; "
        f"{logs['steps']} recorded steps; {dense}, pruned log (top 10% per "
        f"tensor) {logs['pruned_bytes'] / 1e6:.0f} MB ({logs['pruned_ratio']:.1%} of dense), first-epoch "
        f"gradients of {layers} {logs['gradient_bytes'] / 1e6:.0f} MB.",
        "",
        "Accuracies, MIA and Avg Gap in percent / percentage points; MIA is the attack's accuracy (forget set "
        "against evaluation rows of its classes). Avg Gap: mean |metric - retrain| over forget, retain and "
        "test accuracy and MIA. Gate: the service's verification (default policy) passed in n of the seeds, "
        "and the tests that failed. Relearn: the relearn probe's statistic (how far ahead the forget set comes "
        "back compared with never-seen rows; <= 0.3 passes). Speed-up: retrain time / method time; for "
        "`auto`, time to a verified erasure with every attempt and its verification. Log: the update-log "
        "bytes the method needs. Every method runs at the service's defaults; a label in brackets names a "
        f"documented variant. The first-epoch rows update only {layers} (the recorded layers); "
        f"`gradient_ascent ({layers}, control)` is current-gradient ascent on the same layers.",
        "",
    ]


def scenario_table(key: str, title: str, agg: dict) -> list[str]:
    lines = [f"## {title}", ""]
    sequential = any(r is not None for (s, m, r) in agg if s == key)
    class_scope = key.startswith("class")
    head = (
        ["method", "forget acc", "retain acc", "test acc"]
        + (["forgotten-class test"] if class_scope else [])
        + ["MIA", "MIA AUC", "Avg Gap", "gate", "relearn", "time (s)", "speed-up", "log (MB)"]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    last = last_request(agg, key)
    for (s, m, r), stat in agg.items():
        if s != key or (sequential and r not in (None, last)):
            continue
        label = m
        if "auto_methods" in stat:
            label += " → " + ", ".join(f"{name} ({n})" for name, n in sorted(stat["auto_methods"].items()))
        cells = [label] + [_fmt(stat.get(k), 100) for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")]
        if class_scope:
            cells.append(_fmt(stat.get("forget_class_test_accuracy"), 100))
        cells += [
            _fmt(stat.get("mia_accuracy"), 100),
            _fmt(stat.get("mia_auc"), 1, 3),
            _fmt(stat.get("avg_gap")),
            gate_cell(stat),
            _fmt(stat.get("relearn_statistic"), 1, 3),
            _fmt(stat.get("seconds")),
            _fmt(stat.get("speedup"), 1, 1),
            _fmt(stat.get("log_bytes"), 1e-6, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if sequential:
        lines += [
            "",
            f"After the last of the {last} requests; time is cumulative and the speed-up is against retraining "
            f"after every request ({last} x the measured retrain). The reference is the model retrained without "
            "all of them (the same forget set as the random-samples scenario); the gate judges the last model on "
            "everything forgotten. When every request's `auto` plan is retrain alone (requests too small for the "
            "membership test to verify anything), each costs the measured retrain and the last one's model is "
            "the reference. Per-request figures are in the JSON and the plot.",
        ]
    return lines + [""]


def gate_table(seeds: list[dict]) -> list[str]:
    lines = [
        "## The gate measured",
        "",
        "The gate run on the untouched original and on the retrained model of every scenario and seed.",
        "",
        "| scenario | MIA AUC original - retrain | original fails the gate | retrain passes the gate |",
        "|---|---|---|---|",
    ]
    for key in seeds[0]["scenarios"]:
        original, retrain = (targets.final_rows(seeds, key, m) for m in ("original", "retrain"))
        diff = [o["mia_auc"] - r["mia_auc"] for o, r in zip(original, retrain, strict=True)]
        fails = sum(not o["gate_passed"] for o in original)
        passes = sum(bool(r["gate_passed"]) for r in retrain)
        lines.append(f"| {key} | {_fmt(_stat(diff), 1, 3)} | {fails}/{len(original)} | {passes}/{len(retrain)} |")
    return lines + [""]


def targets_table(checked: list[dict]) -> list[str]:
    lines = ["## Targets", "", "| scenario | method | target | met | missed | figures |", "|---|---|---|---|---|---|"]
    for t in checked:
        figures = ", ".join(f"{k} {_figure(v)}" for k, v in t["figures"].items() if v is not None)
        missed = ", ".join(k for k, ok in t["checks"].items() if not ok)
        lines.append(
            f"| {t['scenario']} | {t['method']} | {t['target']} | {'yes' if t['met'] else 'NO'} | {missed} "
            f"| {figures} |"
        )
    return lines + [""]


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value)


def write(profile: Profile, seeds: list[dict], out: Path, wall_seconds: float, info: dict) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(seeds)
    scenarios = seeds[0]["scenarios"]
    checked = targets.check(seeds)
    lines = header(profile, seeds, info)
    for key, title in scenarios.items():
        lines += scenario_table(key, title, agg)
    lines += gate_table(seeds) + targets_table(checked)
    lines.append(f"Whole run: {wall_seconds / 60:.1f} minutes.")
    (out / f"forgetting-{profile.name}.md").write_text("\n".join(lines) + "\n")
    summary = {
        "profile": profile.name,
        "title": profile.title,
        "command": profile.command,
        "machine": info,
        "wall_seconds": wall_seconds,
        "targets": checked,
        "aggregate": [
            {"scenario": s, "method": m, "request": r, **{k: _jsonable(v) for k, v in st.items()}}
            for (s, m, r), st in agg.items()
        ],
        "seeds": seeds,
    }
    (out / f"forgetting-{profile.name}.json").write_text(json.dumps(summary, indent=1, default=float))
    plots.write(profile.name, agg, scenarios, out)
    return summary


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
