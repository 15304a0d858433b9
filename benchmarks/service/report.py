"""benchmarks/results/service.{md,json,png} from one service benchmark run."""

from __future__ import annotations

import json
from pathlib import Path


def _ms(value) -> str:
    return "" if value is None else f"{value:.1f}"


def write(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "service.json").write_text(json.dumps(summary, indent=1))
    m = summary["machine"]
    lines = [
        "# Service benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. One machine runs everything: "
        f"Postgres, Redis, one Celery worker (concurrency 1), the API ({summary['api_workers']} uvicorn "
        "process) and the load generator (httpx, asyncio). Requests: forget one training sample of a tiny "
        "MLP on digits with finetune (1 epoch).",
        "",
        "paced: each client POSTs a request, polls it every 0.5 s until it ends, then POSTs the next. "
        "burst: each client POSTs its requests back to back without waiting.",
        "",
        "| mode | clients | POSTs | GETs | errors | requests/s | accepted/s | POST p50 (ms) | POST p99 (ms) | "
        "GET p50 (ms) | GET p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in summary["levels"]:
        lines.append(
            f"| {lv['mode']} | {lv['clients']} | {lv['posts']} | {lv['gets']} | {lv['errors']} | "
            f"{lv['requests_per_s']:.1f} | {lv['accepted_per_s']:.1f} | {_ms(lv['post_p50_ms'])} | "
            f"{_ms(lv['post_p99_ms'])} | {_ms(lv['get_p50_ms'])} | {_ms(lv['get_p99_ms'])} |"
        )
    runs, q2s = summary["job_run_seconds"], summary["queue_to_start_seconds_after_burst"]
    lines += [
        "",
        f"Accepted requests: {summary['accepted']}; after draining the queue "
        f"({summary['drain_seconds']:.0f} s): {summary['final_states']}.",
        "",
    ]
    if runs:
        lines.append(f"One job (claim to SUCCEEDED, the last 200): p50 {runs['p50']:.2f} s, p99 {runs['p99']:.2f} s.")
    if q2s:
        lines.append(
            f"Queue-to-start after the burst (the last 200 jobs, which waited behind the whole burst on one "
            f"worker): p50 {q2s['p50']:.1f} s, p99 {q2s['p99']:.1f} s."
        )
    (out / "service.md").write_text("\n".join(lines) + "\n")
    _plot(summary, out / "service.png")


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paced = [lv for lv in summary["levels"] if lv["mode"] == "paced"]
    fig, ax = plt.subplots(figsize=(6, 4))
    clients = [lv["clients"] for lv in paced]
    for key, label in (
        ("post_p50_ms", "POST p50"),
        ("post_p99_ms", "POST p99"),
        ("get_p50_ms", "GET p50"),
        ("get_p99_ms", "GET p99"),
    ):
        ax.plot(clients, [lv[key] for lv in paced], marker="o", label=label)
    ax.axhline(50, color="grey", linestyle=":", label="target POST p99")
    ax.set_xscale("log")
    ax.set_xlabel("concurrent clients (paced)")
    ax.set_ylabel("latency (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
