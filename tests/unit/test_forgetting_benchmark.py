"""The forgetting benchmark: its --quick mode (digits, one seed) writes the tables with every row
gated, and ``auto`` runs the service's plan to a verified erasure; its scenarios come from the data;
its profiles differ only in data, model and recipe. Speed targets are judged on the MNIST and
CIFAR-10 runs only: on 1,437 images retraining takes seconds, so a speed-up measures overheads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.forgetting.cli import main
from benchmarks.forgetting.profiles import cifar10, digits_quick, mnist
from benchmarks.forgetting.scenarios import build
from workers.engine.datasets import validate_arrays


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return main(["--quick", "--out", str(out)]), out


def rows_of(summary: dict, method: str) -> list[dict]:
    return [r for r in summary["seeds"][0]["rows"] if r["method"] == method]


def test_the_tables_json_and_plots_name_their_commit_and_device(quick):
    summary, out = quick
    table = (out / "forgetting-digits-quick.md").read_text()
    for title in summary["seeds"][0]["scenarios"].values():
        assert f"## {title}" in table
    for heading in ("| original |", "| retrain |", "| salun |", "| scrub |", "| auto → ", "## The gate measured"):
        assert heading in table
    saved = json.loads((out / "forgetting-digits-quick.json").read_text())
    assert saved["machine"]["device"] == "cpu" and saved["machine"]["commit"] in table
    assert saved["machine"]["commit"] != "unknown"
    for name in ("tradeoff", "sequential"):
        assert (out / f"forgetting-digits-quick-{name}.png").stat().st_size > 10_000


def test_every_row_is_gated_and_the_gate_fails_the_untouched_original(quick):
    summary, _ = quick
    rows = summary["seeds"][0]["rows"]
    last = max(r.get("request") or 0 for r in rows)
    final = [r for r in rows if r.get("request") in (None, last)]
    assert len(final) > 20 and all("gate_passed" in r and "relearn_statistic" in r for r in final)
    originals = rows_of(summary, "original")
    assert len(originals) == 5 and not any(r["gate_passed"] for r in originals)
    # retraining forgets a class by construction: the class test passes it
    for r in rows_of(summary, "retrain"):
        if r["scenario"].startswith("class"):
            assert r["gate"]["class_forgetting"] is True


def test_auto_ends_verified_and_close_to_retraining_in_the_class_scenarios(quick):
    summary, _ = quick
    for row in rows_of(summary, "auto"):
        assert row["auto_method"] == "retrain" or row["gate_passed"], row
        if row["scenario"].startswith("class"):
            assert row["forget_class_test_accuracy"] <= 0.01
            assert row["avg_gap"] < 5.0  # the untouched original's is over 25 points
    verified = [t["checks"]["verified"] for t in summary["targets"] if "verified" in t["checks"]]
    assert len(verified) == 5 and all(verified)


def test_scenarios_take_labels_and_sizes_from_the_data():
    rng = np.random.default_rng(0)
    n = 48_000  # 1% is 480: ten requests of 48, none empty
    y = rng.integers(0, 6, n + 1000)  # no label 8 or 9
    ds = validate_arrays(
        np.array([f"s{i}" for i in range(len(y))]),
        rng.integers(0, 255, (len(y), 4, 4), dtype=np.uint8),
        y,
        np.r_[np.zeros(n, dtype=np.int64), np.ones(1000, dtype=np.int64)],
    )
    scenarios = {s.key: s for s in build(ds, 0.01, 100, 10, np.random.default_rng(0))}
    assert set(scenarios) == {"class-2", "classes-0-2", "random-samples", "one-class-samples", "sequential"}
    assert set(ds.y[scenarios["one-class-samples"].forget_rows]) == {4}
    sequential = scenarios["sequential"]
    assert [len(r) for r in sequential.requests] == [48] * 10
    assert "10 successive requests of 48 random samples" in sequential.title
    assert np.array_equal(sequential.forget_rows, scenarios["random-samples"].forget_rows)


def test_profiles_differ_in_data_model_and_recipe_never_in_method_parameters():
    def methods(profile) -> list[tuple[str, str]]:
        layers = profile.pruned_log.first_epoch_gradients
        out = []
        for row in profile.rows():
            params = {k: v for k, v in row.params.items() if k != "layers"}
            assert row.params.get("layers", layers) == layers  # only the control names layers: the recorded ones
            out.append((row.method, json.dumps(params, sort_keys=True)))
        return out

    data = Path("unused.npz")
    assert methods(mnist(data)) == methods(cifar10(data))
    quick = methods(digits_quick())
    assert set(quick) <= set(methods(mnist(data)))
