"""The service benchmark end to end on a tiny load: its own stack (migrated Postgres database, Redis
queue, a Celery worker, the API), clients over HTTP, and every accepted request accounted for."""

from __future__ import annotations

import json

from benchmarks.service.cli import main


def test_every_accepted_request_ends_succeeded_and_the_report_is_written(tmp_path):
    args = ["--clients", "1", "3", "--duration", "3", "--repeats", "2", "--burst", "6", "--out", str(tmp_path)]
    summary = main(args)

    levels = summary["levels"]
    runs = [(lv["mode"], lv["clients"], lv["run"]) for lv in levels]
    assert runs == [("paced", 1, 1), ("paced", 1, 2), ("paced", 3, 1), ("paced", 3, 2), ("burst", 3, 1)]
    for lv in levels:
        assert lv["errors"] == 0, lv["error_kinds"]
        assert lv["accepted"] >= 1
        assert lv["final_states"] == {"SUCCEEDED": lv["accepted"]}
        assert lv["end_to_end_s"]["n"] == lv["accepted"]
        assert lv["queue_to_start_s"]["p50"] <= lv["end_to_end_s"]["p50"]
    assert levels[-1]["posts"] == 6
    # every burst request was retried with its Idempotency-Key and got the first answer back
    assert (levels[-1]["retries"], levels[-1]["retries_not_replayed"]) == (6, 0)
    assert summary["lost"] == 0 and summary["accepted"] == sum(lv["accepted"] for lv in levels)
    assert summary["requests_not_accepted_by_any_client"] == 0

    # the machine's speed at idle, measured before the load: real timings, not placeholders
    speed = summary["machine_speed_ms"]
    assert 0.1 < speed["python_ms"] < 5_000
    assert 0 < speed["pg_round_trip_ms"] < speed["pg_commit_ms"] < 1_000

    saved = json.loads((tmp_path / "service.json").read_text())
    assert saved["accepted"] == summary["accepted"]
    table = (tmp_path / "service.md").read_text()
    assert "| paced | 1 | 1 |" in table and "| paced | 1 | 2 |" in table and "| burst | 3 | 1 |" in table
    assert "Over the 2 runs of each paced level" in table
    assert f"{speed['python_ms']:.1f} ms for 5,000 validations" in table
    assert (tmp_path / "service.png").stat().st_size > 10_000
