"""The fault-injection results (written by tests/faults) as a markdown table for the README.

python -m benchmarks.faults_report     # render benchmarks/results/faults.json to faults.md and print it

Each record: ``fault``, ``injected`` (what was done), ``expected``, ``outcome`` (what happened), and
``figures`` (jobs, attempts, kills, durations, ...). The tests merge their records into the JSON file
by fault name, so running one fault test updates its row and keeps the others.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results" / "faults.json"
ORDER = ["worker-kill-9", "worker-sigterm", "artifact-disk-full", "redis-restart", "postgres-restart"]


def _figures(figures: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in figures.items())


def render(records: list[dict]) -> str:
    rows = sorted(records, key=lambda r: (ORDER.index(r["fault"]) if r["fault"] in ORDER else 99, r["fault"]))
    lines = [
        "| fault | what the test did | outcome | figures |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [
            f"`{r['fault']}`",
            r["injected"],
            ("**passed**: " if r.get("passed") else "**FAILED**: ") + r["outcome"],
        ]
        cells.append(_figures(r.get("figures", {})))
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    stamp = max((r.get("recorded_at", "") for r in records), default="")
    lines.append("")
    lines.append(
        f"Produced by `pytest tests/faults --faults-results benchmarks/results/faults.json` (last run {stamp}); "
        "`python -m benchmarks.faults_report` renders it."
    )
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], path: Path = RESULTS_JSON) -> None:
    """Merge ``records`` into the JSON file (by fault name) and re-render the markdown next to it."""
    existing: dict[str, dict] = {}
    if path.exists():
        try:
            existing = {r["fault"]: r for r in json.loads(path.read_text())["faults"]}
        except (ValueError, KeyError, TypeError):
            existing = {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for r in records:
        existing[r["fault"]] = {**r, "recorded_at": r.get("recorded_at", now)}
    merged = sorted(existing.values(), key=lambda r: ORDER.index(r["fault"]) if r["fault"] in ORDER else 99)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"faults": merged}, indent=2, sort_keys=True) + "\n")
    path.with_suffix(".md").write_text(render(merged))


def main() -> int:
    if not RESULTS_JSON.exists():
        print(f"{RESULTS_JSON} does not exist: run pytest tests/faults first", file=sys.stderr)
        return 1
    records = json.loads(RESULTS_JSON.read_text())["faults"]
    text = render(records)
    RESULTS_JSON.with_suffix(".md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
