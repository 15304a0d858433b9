"""The GPU benchmark's files: ``gpu-<name>.md`` and ``gpu-<name>.json``, rewritten after every part
(and every forgetting scenario), so that a run stopped by its time limit keeps what it finished."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from benchmarks.forgetting import report as forgetting_report


def machine(device: torch.device, commit: str | None) -> dict[str, Any]:
    """The forgetting benchmark's machine record, the CUDA stack's versions and the commit (from
    ``commit``, else ``UNLEARND_COMMIT``, else git: the GPU machine's copy has no git history)."""
    info = forgetting_report.machine(device)
    info["commit"] = commit or os.environ.get("UNLEARND_COMMIT", "").strip() or info["commit"]
    info["cuda"] = torch.version.cuda
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "cudnn": torch.backends.cudnn.version(),
            "capability": f"{props.major}.{props.minor}",
            "gpu_memory_bytes": props.total_memory,
            "driver": _driver(),
        }
    return info


def _driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML: the nvidia-smi log that run.sh writes has it
        return None


def size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:,.0f}"


def _s(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def device_line(m: dict[str, Any]) -> str:
    parts = [m["device_name"]]
    if m.get("cuda"):
        parts.append(f"CUDA {m['cuda']}")
    if m.get("cudnn"):
        parts.append(f"cuDNN {m['cudnn']}")
    if m.get("driver"):
        parts.append(f"driver {m['driver']}")
    if m.get("gpu_memory_bytes"):
        parts.append(f"{m['gpu_memory_bytes'] / 2**30:.0f} GiB")
    return ", ".join(parts)


def training_table(state: dict[str, Any]) -> list[str]:
    rows = state.get("training") or []
    if not rows:
        return ["(not run)", ""]
    lines = [
        "| run | precision | mode | steps | images | seconds | images/s | peak GPU memory (MB) | vs plain | target "
        "| log (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = ""
        if "target" in r:
            target = f"<= {r['target']}x: {'met' if r['met'] else '**missed**'}"
        log_mb = ""
        if r.get("log_bytes") is not None:
            log_mb = _mb(r["log_bytes"] + (r.get("gradient_bytes") or 0))
        peak = _mb(r["peak_memory_bytes"]) if r["peak_memory_kind"].startswith("cuda") else "(CPU)"
        vs = f"{r['vs_plain']:.2f}x" if "vs_plain" in r else ""
        lines.append(
            f"| {r['label']} | {r['precision']} | {r['mode']} | {r['steps']} | {r['images']:,} | {_s(r['seconds'])} "
            f"| {r['images_per_s']:,.0f} | {peak} | {vs} | {target} | {log_mb} |"
        )
    whole = state.get("pruned_whole_run")
    if whole:
        lines += [
            "",
            f"A whole pruned-log training of {whole['epochs']} epochs (the forgetting part's), epoch 0 with the "
            f"first-epoch gradients and the rest without, from the per-step times: {whole['vs_plain']:.2f}x plain "
            f"training (target <= {whole['target']}x: {'met' if whole['met'] else '**missed**'}).",
        ]
    return lines + [""]


def cpu_table(state: dict[str, Any]) -> list[str]:
    cpu = state.get("cpu")
    plain = next((r for r in state.get("training") or [] if r["key"] == "plain"), None)
    if cpu is None:
        return ["(not run)", ""]
    lines = [
        "| device | threads | steps | images | seconds | images/s |",
        "|---|---|---|---|---|---|",
    ]
    if plain is not None:
        lines.append(
            f"| {plain['device']}: {state['machine']['device_name']} | | {plain['steps']} | {plain['images']:,} "
            f"| {_s(plain['seconds'])} | {plain['images_per_s']:,.0f} |"
        )
    lines.append(
        f"| cpu: {state['machine']['cpu']} | {cpu['torch_threads']} | {cpu['steps']} | {cpu['images']:,} "
        f"| {_s(cpu['seconds'])} | {cpu['images_per_s']:,.0f} |"
    )
    if plain is not None:
        lines += ["", f"The same step code: {plain['images_per_s'] / cpu['images_per_s']:.1f}x the CPU's images/s."]
    return lines + [""]


def _gate(row: dict[str, Any]) -> str:
    if "gate_passed" not in row:
        return ""
    failed = [name for name, ok in row.get("gate", {}).items() if ok is False]
    return "passed" if row["gate_passed"] else "failed (" + ", ".join(failed) + ")"


def forgetting_rows(seed: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per scenario: each row with its time to a verified erasure and the speed-ups vs retrain."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key in seed["scenarios"]:
        rows = [r for r in seed["rows"] if r["scenario"] == key]
        retrain = next(r for r in rows if r["method"] == "retrain")["seconds"]
        table = []
        for r in rows:
            seconds = r.get("seconds")
            if r["method"] == "original":
                verified = None
            elif r["method"] in ("retrain", "auto"):  # retrain is exact; auto's time already has its gate
                verified = seconds
            else:
                verified = seconds + r.get("verify_seconds", 0.0) if r.get("gate_passed") and seconds else None
            table.append(
                {
                    "method": r["method"],
                    "seconds": seconds,
                    "verify_seconds": r.get("verify_seconds"),
                    "speedup": retrain / seconds if seconds else None,
                    "verified_seconds": verified,
                    "verified_speedup": retrain / verified if verified else None,
                    "gate": _gate(r),
                    "avg_gap": r.get("avg_gap"),
                    "forget_accuracy": r.get("forget_accuracy"),
                    "test_accuracy": r.get("test_accuracy"),
                    "auto_method": r.get("auto_method"),
                    "auto_attempts": r.get("auto_attempts"),
                    "diverged": r.get("diverged"),
                }
            )
        out[key] = table
    return out


def forgetting_section(state: dict[str, Any]) -> list[str]:
    f = state.get("forgetting")
    if not f:
        return ["(not run)", ""]
    seed = f.get("seed")
    if seed is None:
        return ["(the original model was not trained)", ""]
    logs = seed["logs"]
    lines = [
        f"{f['title']}; seed {seed['seed']}. Original model: test accuracy "
        f"{100 * seed['original_test_accuracy']:.2f}%, "
        f"trained with the pruned update log in {seed['train_seconds']:.1f} s ({logs['steps']} steps; pruned log "
        f"{logs['pruned_bytes'] / 1e6:,.0f} MB, first-epoch gradients of {'+'.join(logs['gradient_layers'])} "
        f"{logs['gradient_bytes'] / 1e6:,.0f} MB).",
        "",
        "Seconds: the method alone; gate: the service's verification (default policy) on the result, and the "
        "tests it failed. Verified: seconds to a verified erasure, method + gate, for a model that passed (retrain "
        "is exact by construction; `auto`'s time is its whole attempt loop, every attempt and its verification). "
        "Speed-ups are retrain's seconds over the row's, on the same GPU. Avg Gap: mean |difference| to the "
        "retrained model over forget, retain and test accuracy and the membership-inference score (points).",
        "",
    ]
    for key, table in forgetting_rows(seed).items():
        lines += [
            f"### {seed['scenarios'][key]}",
            "",
            "| method | seconds | speed-up | gate | verified (s) | verified speed-up | Avg Gap | forget acc "
            "| test acc |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in table:
            label = r["method"]
            if r["auto_method"]:
                label += f" → {r['auto_method']}"
            if r["diverged"]:
                label += " (diverged)"
            pct = lambda v: "" if v is None else f"{100 * v:.2f}"  # noqa: E731
            speed = lambda v: "" if v is None else f"{v:.1f}x"  # noqa: E731
            lines.append(
                f"| {label} | {_s(r['seconds'])} | {speed(r['speedup'])} | {r['gate']} | {_s(r['verified_seconds'])} "
                f"| {speed(r['verified_speedup'])} | {_s(r['avg_gap'])} | {pct(r['forget_accuracy'])} "
                f"| {pct(r['test_accuracy'])} |"
            )
        attempts = [r["auto_attempts"] for r in table if r["auto_attempts"]]
        if attempts:
            lines += ["", "auto's attempts: " + "; ".join(attempts[0]) + "."]
        lines.append("")
    left_out = [f"{s}: {label}" for s, label in seed.get("skipped_rows", [])]
    left_out += [f"{s}: the whole scenario" for s in seed.get("skipped_scenarios", [])]
    if left_out:
        lines += ["Left out (not started before the time was up): " + "; ".join(left_out) + ".", ""]
    if f.get("tables"):
        lines += [f"Full tables (every metric, the gate per test, the targets): `{f['tables']}`.", ""]
    return lines


def markdown(state: dict[str, Any]) -> str:
    m = state["machine"]
    lines = [
        f"# GPU benchmark: {state['title']}",
        "",
        f"`{state['command']}` at commit `{m['commit']}`. Device: {device_line(m)}. Host: {m['cpu']}, "
        f"{m['cores']} cores. torch {m['torch']}, Python {m['python']}. CUDA mode: {state['mode']} (the worker's "
        f"`UNLEARND_DETERMINISTIC`; workers/engine/device.py). Model: {state['model']}.",
        "",
    ]
    status = "complete" if state.get("complete") else "**incomplete**"
    if state.get("stopped"):
        status += f" ({state['stopped']})"
    if state.get("wall_seconds") is not None:
        status += f"; {state['wall_seconds'] / 60:.1f} minutes"
    lines += [f"Run: {status}.", ""]
    if state.get("left_out"):
        lines += ["Left out (their part's time was up): " + "; ".join(state["left_out"]) + ".", ""]
    if state.get("cut"):
        lines += ["What was cut to fit one short device run, and why:", ""]
        lines += [f"- {c}" for c in state["cut"]] + [""]
    if state.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in state["notes"]] + [""]
    lines += [
        "## Training: throughput and update-log overhead",
        "",
        state.get("training_intro", ""),
        "",
    ]
    lines += training_table(state)
    lines += ["## CPU vs CUDA, the same training step", ""] + cpu_table(state)
    lines += ["## Forgetting on the GPU", ""] + forgetting_section(state)
    return "\n".join(lines).rstrip() + "\n"


def write(state: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    name = state["name"]
    summary = dict(state)
    f = state.get("forgetting") or {}
    if f.get("seed") is not None:
        summary["forgetting"] = f | {"table": forgetting_rows(f["seed"])}
    (out / f"gpu-{name}.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
    (out / f"gpu-{name}.md").write_text(markdown(state))
    return summary


def _jsonable(value: Any) -> Any:
    """numpy scalars as numbers, anything else as its string."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
