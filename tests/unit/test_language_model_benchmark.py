"""The language-model benchmark's --quick mode (generated text, a tiny GPT-2, about a minute): the
table, JSON and plot are written, exact retraining forgets the canaries it no longer sees, and every
calibrated ascent stops where it should. The issue's targets are judged on the tiny Shakespeare run
(benchmarks/results/language-models-tinyshakespeare.*): here retraining takes seconds, so speed-ups
measure fixed overheads, and a tiny model memorises its canaries only partly."""

from __future__ import annotations

import json

import pytest

from benchmarks.language_models.cli import main

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-bench")
    return main(["--quick", "--out", str(out)]), out


def _rows(summary: dict) -> dict[str, dict]:
    return {r["variant"]: r for r in summary["results"]}


def test_the_table_json_and_plot_are_written(quick):
    summary, out = quick
    table = (out / "language-models-quick.md").read_text()
    for variant in _rows(summary):
        assert f"| {variant} |" in table
    assert {"original", "retrain", "finetune", "gradient_ascent first_epoch embedding"} <= set(_rows(summary))
    saved = json.loads((out / "language-models-quick.json").read_text())
    assert saved["machine"]["cores"] >= 1 and len(saved["targets"]) == len(saved["results"]) - 1
    assert (out / "language-models-quick.png").stat().st_size > 10_000


def test_retraining_forgets_what_it_no_longer_sees(quick):
    rows = _rows(quick[0])
    original, retrain = rows["original"]["metrics"], rows["retrain"]["metrics"]
    assert original["exposure"]["forgotten"]["mean"] - retrain["exposure"]["forgotten"]["mean"] > 1.0
    # the forgotten documents' perplexity rises once no training step saw them
    assert retrain["perplexity"]["forget"] > 1.5 * original["perplexity"]["forget"]


def test_calibrated_ascent_stops_at_the_held_out_level_and_storage_is_per_document(quick):
    summary, _ = quick
    for name, row in _rows(summary).items():
        if not name.startswith("gradient_ascent"):
            continue
        extra = row["extra"]
        target = extra["calibration"]["forget_loss_target"]
        assert extra["stop_reason"] == "calibrated", (name, extra)
        # stopped at (not far past) the target: the loss of the held-out canary documents
        # (the check measures a probe of the forget set, the metric all of it: a little slack below)
        assert 0.9 * target <= row["metrics"]["forget_mean_nll"] <= 1.5 * target, (name, extra)
        if "first_epoch" in name:
            assert extra["gradient_source"] == "recorded_first_epoch"
    storage = summary["storage"]
    # one fp16 embedding gradient per (step, document): the embedding is 14% of this tiny model
    assert storage["embedding_parameters"] < 0.15 * storage["parameters"]
    assert 0 < storage["embedding_gradient_bytes"] < 0.15 * storage["all_layers_gradient_bytes_estimate"]
