"""benchmarks/results/service.{md,json,png} from one service benchmark run (each paced level run a few times)."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _stat(stats: dict | None, key: str, digits: int = 2) -> str:
    return "" if not stats else _num(stats[key], digits)


KEYS = (
    "requests_per_s",
    "post_p50_ms",
    "post_p99_ms",
    "post_server_p99_ms",
    "get_p50_ms",
    "get_p99_ms",
)


def by_level(levels: list[dict]) -> list[dict]:
    """The runs of each (mode, clients), in order: per figure of KEYS its median, min and max over
    the runs (one run's p99 moves by tens of ms between identical runs: the spread says how much),
    and the server-side stats of the run whose POST p99 is the median one."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for lv in levels:
        groups.setdefault((lv["mode"], lv["clients"]), []).append(lv)
    out = []
    for (mode, clients), runs in groups.items():
        figures = {}
        for key in KEYS:
            values = sorted(lv[key] for lv in runs if lv.get(key) is not None)
            figures[key] = (median(values), values[0], values[-1]) if values else None
        middle = sorted(runs, key=lambda lv: lv["post_p99_ms"] or 0)[len(runs) // 2]
        errors = sum(lv["errors"] for lv in runs)
        out.append(
            {
                "mode": mode,
                "clients": clients,
                "runs": len(runs),
                "figures": figures,
                "median_run": middle,
                "errors": errors,
            }
        )
    return out


def write(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "service.json").write_text(json.dumps(summary, indent=1))
    (out / "service.md").write_text(markdown(summary))
    _plot(summary, out / "service.png")


def markdown(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        "# Service benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; commit {m.get('commit', 'unknown')}"
        f"{_settings(summary)}. One machine runs everything: "
        "Postgres, Redis, one Celery worker (concurrency 1), the API "
        f"({summary['api_workers']} uvicorn process) and the load generator (httpx, asyncio; each client "
        "has its own HTTP client and connection, as independent pipelines do). "
        "Every request forgets one training sample of a tiny MLP on digits with finetune (1 epoch); "
        "all requests target the same model, whose jobs run one at a time.",
        "",
        f"Machine speed at idle, before the load (medians): {speed_sentence(summary['machine_speed_ms'])}.",
        "",
        f"paced ({summary['paced_seconds']:.0f} s per level): each client POSTs a request, polls it every "
        f"0.5 s until it ends, then POSTs the next; the clients join one by one over the first "
        f"{summary['ramp_seconds']:.0f} s (included in the figures). burst: each client POSTs its requests "
        "back to back without waiting, which saturates the API: its latencies are queueing (clients / "
        "throughput), the figure to read there is requests/s. Each burst request is sent a second time "
        "with the same Idempotency-Key, as a client retrying after a lost answer (not in the POST figures).",
        "",
        "Latencies of POST and GET are measured by the client (ms); the server columns are the API's own "
        "time for the same requests (its `Server-Timing` header: from uvicorn handing the request over to "
        "the response headers), so client minus server is time in the HTTP server, the network and the "
        "load generator. Queue-to-start (job created -> claimed "
        "by the worker), job run (claimed -> SUCCEEDED) and end-to-end (request received -> SUCCEEDED) come "
        "from the service's own timestamps (s).",
        "",
        "| mode | clients | run | POSTs | GETs | errors | requests/s | POST p50 | POST p99 | POST p50 / p99 server "
        "| GET p50 | GET p99 | GET p50 / p99 server | queue-to-start p50 / p99 | job run p50 "
        "| end-to-end p50 / p99 | final states |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in summary["levels"]:
        q, r, e = lv["queue_to_start_s"], lv["job_run_s"], lv["end_to_end_s"]
        states = ", ".join(f"{k} {v}" for k, v in sorted(lv["final_states"].items()))
        lines.append(
            f"| {lv['mode']} | {lv['clients']} | {lv.get('run', 1)} | {lv['posts']} | {lv['gets']} | {lv['errors']} | "
            f"{_num(lv['requests_per_s'])} | {_num(lv['post_p50_ms'])} | {_num(lv['post_p99_ms'])} | "
            f"{_num(lv.get('post_server_p50_ms'))} / {_num(lv.get('post_server_p99_ms'))} | "
            f"{_num(lv['get_p50_ms'])} | {_num(lv['get_p99_ms'])} | "
            f"{_num(lv.get('get_server_p50_ms'))} / {_num(lv.get('get_server_p99_ms'))} | "
            f"{_stat(q, 'p50')} / {_stat(q, 'p99')} | "
            f"{_stat(r, 'p50')} | {_stat(e, 'p50')} / {_stat(e, 'p99')} | {states} |"
        )
    lines += [
        "",
        f"Over the {summary.get('repeats', 1)} runs of each paced level, median (min - max):",
        "",
        "| mode | clients | runs | requests/s | POST p50 | POST p99 | POST p99 server | GET p50 | GET p99 |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_spread_row(level) for level in by_level(summary["levels"])),
        "",
        f"Accepted requests: {summary['accepted']}; not found afterwards: {summary['lost']}. "
        + "".join(
            f"Burst retries with the same Idempotency-Key: {lv['retries']}, answered with another request "
            f"or not as a replay: {lv['retries_not_replayed']}; connections that broke before the answer "
            f"(sent again with the same key): {lv.get('transport_retries', 0)}. "
            for lv in summary["levels"]
            if lv.get("retries")
        )
        + f"Requests the model has that no client was answered 202 for: "
        f"{summary.get('requests_not_accepted_by_any_client', 'n/a')}. "
        f"The burst's backlog drained in {summary['burst_drain_seconds']:.0f} s. "
        f"Whole run: {summary['wall_seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def speed_sentence(speed: dict) -> str:
    """How fast the machine was at idle (benchmarks/service/calibrate.py): machines of one kind differ."""
    return (
        f"{speed['python_ms']:.1f} ms for 5,000 validations and serialisations of a request body in Python, "
        f"{speed['pg_round_trip_ms']:.3f} ms per Postgres round trip, {speed['pg_commit_ms']:.3f} ms per "
        "one-row insert and COMMIT"
    )


def spread(figure: tuple[float, float, float] | None, digits: int = 1) -> str:
    """``median (min - max)``; just the value for a single run."""
    if figure is None:
        return "n/a"
    mid, low, high = figure
    return f"{mid:.{digits}f}" if low == high else f"{mid:.{digits}f} ({low:.{digits}f} - {high:.{digits}f})"


def _spread_row(level: dict) -> str:
    f = level["figures"]
    cells = [spread(f[k]) for k in ("requests_per_s", "post_p50_ms", "post_p99_ms", "post_server_p99_ms")]
    cells += [spread(f[k]) for k in ("get_p50_ms", "get_p99_ms")]
    return f"| {level['mode']} | {level['clients']} | {level['runs']} | " + " | ".join(cells) + " |"


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [level for level in by_level(summary["levels"]) if level["mode"] == "paced"]
    clients = [level["clients"] for level in levels]
    paced = [level["median_run"] for level in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (
        ("post_p50_ms", "POST p50"),
        ("post_p99_ms", "POST p99"),
        ("get_p50_ms", "GET p50"),
        ("get_p99_ms", "GET p99"),
    ):
        mid = [level["figures"][key][0] for level in levels]
        low = [m - level["figures"][key][1] for m, level in zip(mid, levels, strict=True)]
        high = [level["figures"][key][2] - m for m, level in zip(mid, levels, strict=True)]
        left.errorbar(clients, mid, yerr=[low, high], marker="o", capsize=3, label=label)
    left.axhline(50, color="grey", linestyle=":", label="target POST p99")
    left.set_xscale("log")
    left.set_xlabel("concurrent clients (paced)")
    left.set_ylabel("latency (ms): median of runs, bars min - max")
    left.legend()
    for key, label in (("queue_to_start_s", "queue-to-start p50"), ("end_to_end_s", "end-to-end p50")):
        right.plot(clients, [(lv[key] or {}).get("p50") for lv in paced], marker="o", label=label)
    right.set_xscale("log")
    right.set_xlabel("concurrent clients (paced)")
    right.set_ylabel("seconds")
    right.set_title("one worker, one model: jobs run one at a time", fontsize=9)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _settings(summary: dict) -> str:
    """The settings the run changed from the defaults (``--env``), if any."""
    changed = summary.get("settings") or {}
    return "; settings " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) if changed else ""
