"""The run's table (markdown), JSON and plot under benchmarks/results/, and the targets checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.forgetting.report import machine

EXPOSURE_SLACK_BITS = 1.0  # "falls to never-inserted": within 1 bit of their mean; "keeps": loses < 1 bit
RETAIN_PPL_RISE = 0.05
MIN_SPEEDUP = 20.0


def _ppl(row: dict, key: str) -> float:
    return row["metrics"]["perplexity"][key]


def _exact(row: dict) -> float | None:
    em = row["metrics"].get("exact_match") or {}
    return em.get("exact_match_rate")


def check(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per unlearning method: the issue's four targets, each with its figures."""
    rows = {r["variant"]: r for r in summary["results"]}
    original = rows["original"]
    never = original["metrics"]["exposure"]["never_inserted"]["mean"]
    kept_before = original["metrics"]["exposure"]["kept"]["mean"]
    ppl_before = _ppl(original, "retain")
    out = []
    for r in summary["results"]:
        if r["variant"] == "original":
            continue
        e = r["metrics"]["exposure"]
        speedup = summary["retrain_seconds"] / r["seconds"] if r["seconds"] else None
        checks = {
            "forgotten_at_never_inserted": e["forgotten"]["mean"] <= never + EXPOSURE_SLACK_BITS,
            "kept_keep_exposure": e["kept"]["mean"] >= kept_before - EXPOSURE_SLACK_BITS,
            "retain_perplexity_within_5pct": _ppl(r, "retain") <= ppl_before * (1 + RETAIN_PPL_RISE),
            "speedup_at_least_20x": r["variant"] != "retrain" and speedup is not None and speedup >= MIN_SPEEDUP,
        }
        out.append({"variant": r["variant"], "met": all(checks.values()), "checks": checks, "speedup": speedup})
    return out


def table_lines(summary: dict[str, Any]) -> list[str]:
    """The method table (also quoted in the README's Results section by benchmarks.readme)."""
    targets = {t["variant"]: t for t in summary["targets"]}
    original = next(r for r in summary["results"] if r["variant"] == "original")
    ppl0 = _ppl(original, "retain")
    lines = [
        "| method | layers | gradients | exposure forgotten | exposure kept | exposure never inserted "
        "| exact match forgotten | retain ppl (change) | held-out ppl | forgotten ppl | seconds | speed-up | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["results"]:
        e = r["metrics"]["exposure"]
        t = targets.get(r["variant"])
        speed = "" if t is None or t["speedup"] is None else f"{t['speedup']:.0f}x"
        exact = _exact(r)
        missed = (
            ""
            if t is None
            else ("met" if t["met"] else "missed: " + ", ".join(k for k, v in t["checks"].items() if not v))
        )
        lines.append(
            f"| {r['variant']} | {r.get('layers', '-')} | {r.get('gradients', '-')} "
            f"| {_spread(e['forgotten'])} | {_spread(e['kept'])} | {_spread(e['never_inserted'])} "
            f"| {'n/a' if exact is None else f'{exact:.2f}'} "
            f"| {_ppl(r, 'retain'):.3f} ({(_ppl(r, 'retain') / ppl0 - 1) * 100:+.1f}%) | {_ppl(r, 'test'):.3f} "
            f"| {_ppl(r, 'forget'):.2f} | {r['seconds']:.1f} | {speed} | {missed} |"
        )
    return lines


def _spread(stat: dict) -> str:
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    m, s, c = summary["machine"], summary["storage"], summary["counts"]
    lines = [
        f"# Language-model forgetting: {summary['profile']}",
        "",
        f"Command: `{summary['command']}`. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"(CPU). Whole run {summary['wall_seconds'] / 60:.1f} min.",
        "",
        f"Model: byte-level GPT-2 {summary['arch']} ({s['parameters']:,} parameters). "
        + (
            f"A base model pretrained {summary['pretrain_epochs']} epochs on the prose alone "
            f"({summary['pretrain_seconds']:.0f} s), then "
            if summary.get("pretrain_epochs")
            else ""
        )
        + f"trained {summary['recipe']['epochs']} epochs ({summary['train_seconds']:.0f} s, with the recorder) on "
        f"{c['documents']:,} documents ({c['train_tokens']:,} training tokens): the prose plus "
        f"{summary['canaries']['inserted']} canaries of the format `{summary['canaries']['format']}`, "
        f"each the whole text of {summary['canaries']['repeats']} documents; the requests forget "
        f"{summary['canaries']['forgotten']} canaries (all their documents), retraining starts from the same base. "
        f"Exposure (bits, max {summary['canaries']['max_exposure']:.1f}) is exact: "
        f"every string of the format is ranked. Perplexities on {summary['eval_blocks']} sampled blocks of "
        "retained prose and of held-out documents.",
        "",
        *table_lines(summary),
    ]
    lines += [
        "",
        "Targets per method: forgotten canaries' mean exposure within "
        f"{EXPOSURE_SLACK_BITS:.0f} bit of the never-inserted ones' (original model), kept canaries lose less than "
        f"{EXPOSURE_SLACK_BITS:.0f} bit, retain perplexity rises at most {RETAIN_PPL_RISE:.0%}, at least "
        f"{MIN_SPEEDUP:.0f}x faster than retrain ({summary['retrain_seconds']:.0f} s).",
        "",
        "Gradient storage (first-epoch gradients, fp16, one row per (step, document)):",
        f"- embedding only (recorded for all {c['documents']:,} documents): "
        f"{s['embedding_gradient_bytes'] / 1e6:.1f} MB",
        f"- every layer, same rows (computed, not recorded): {s['all_layers_gradient_bytes_estimate'] / 1e6:.1f} MB",
        f"- every layer for the forgotten documents only (what the all-layer first-epoch rows used): "
        f"{s['forgotten_documents_all_layer_gradient_bytes'] / 1e6:.1f} MB",
        f"- update-log deltas (pruned, fp16): {s['update_log_delta_bytes'] / 1e6:.1f} MB "
        f"(dense would be {s['dense_delta_bytes'] / 1e6:.0f} MB)",
    ]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["results"]
    labels = [r["variant"] for r in rows]
    groups = ("forgotten", "kept", "never_inserted")
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(rows)), 4.5))
    width = 0.27
    for i, g in enumerate(groups):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        means = [r["metrics"]["exposure"][g]["mean"] for r in rows]
        stds = [r["metrics"]["exposure"][g]["std"] for r in rows]
        ax.bar(xs, means, width, yerr=stds, label=g.replace("_", " "), capsize=2)
    ax.axhline(summary["canaries"]["max_exposure"], color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(rows)), labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("canary exposure (bits)")
    ax.set_title(f"Canary exposure after forgetting ({summary['profile']}; {summary['machine']['cpu']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    summary["machine"] = machine()
    summary["targets"] = check(summary)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"language-models-{summary['profile']}"
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(summary))
    plot(summary, out / f"{stem}.png")
    return summary
