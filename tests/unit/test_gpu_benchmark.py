"""The GPU benchmark: its --quick mode runs the same code path on the CPU (digits, ResNet-18 at width
4) and writes real figures; the GPU run's script parses and names files that exist; and the import
chain a GPU machine runs needs, beyond what that machine has, only the wheels fetch_wheels.sh carries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu.cli import main

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    return main(["--quick", "--out", str(out)]), out


def test_quick_writes_the_training_rows_with_throughput_and_overhead(quick):
    summary, out = quick
    saved = json.loads((out / "gpu-digits-quick.json").read_text())
    assert saved["complete"] and not saved["left_out"]
    rows = {r["key"]: r for r in saved["training"]}
    assert {"plain", "dense", "pruned_epoch0", "pruned_later"} <= set(rows)
    for key in ("plain", "dense", "pruned_epoch0", "pruned_later"):
        row = rows[key]
        assert row["steps"] == 6 and row["images"] == 6 * 128 and row["images_per_s"] > 0
        assert 0.1 < row["vs_plain"] < 50, row  # a loaded 2-core machine: wide, but a real ratio
    assert rows["dense"]["log"] == "dense" and rows["dense"]["log_bytes"] > 6 * 4 * 40_000  # 44,550 params
    assert rows["pruned_epoch0"]["gradient_bytes"] > 0 and rows["pruned_later"]["gradient_bytes"] == 0
    assert rows["pruned_later"]["log_bytes"] < rows["dense"]["log_bytes"] / 3
    assert rows["dense"]["target"] == 1.5 and rows["pruned_epoch0"]["target"] == 1.3
    assert saved["pruned_whole_run"]["epochs"] == 3 and saved["pruned_whole_run"]["vs_plain"] > 0
    cpu = saved["cpu"]
    assert cpu["device"] == "cpu" and cpu["steps"] == 3 and cpu["images_per_s"] > 0 and cpu["torch_threads"] >= 1


def test_quick_forgets_through_the_gate_with_auto_against_retrain(quick):
    summary, out = quick
    seed = summary["forgetting"]["seed"]
    assert list(seed["scenarios"]) == ["class-3", "random-samples"]
    assert seed["logs"]["dense_bytes"] is None  # no dense log: no amnesiac row
    for key in seed["scenarios"]:
        rows = {r["method"]: r for r in seed["rows"] if r["scenario"] == key}
        assert {"original", "retrain", "auto"} <= set(rows) and "amnesiac" not in rows
        assert all(isinstance(r["gate_passed"], bool) and r["gate"] for r in rows.values())
        assert rows["retrain"]["seconds"] > 0 and rows["auto"]["auto_attempts"]
    class_rows = {r["method"]: r for r in seed["rows"] if r["scenario"] == "class-3"}
    assert not class_rows["original"]["gate_passed"]  # it still knows the class
    auto_row = class_rows["auto"]
    assert auto_row["auto_method"] == "retrain" or auto_row["gate_passed"]  # retrain: exact, gate reported only
    assert auto_row["forget_class_test_accuracy"] <= 0.01
    table = summary["forgetting"]["table"]["class-3"]
    auto = next(r for r in table if r["method"] == "auto")
    assert auto["verified_seconds"] == auto["seconds"] and auto["verified_speedup"] > 0
    # the forgetting benchmark's own tables, from the same rows
    assert (out / "forgetting-digits-quick-gpu.md").read_text().count("| auto → ") == 2


def test_quick_markdown_names_the_device_commit_and_what_was_cut(quick):
    summary, out = quick
    text = (out / "gpu-digits-quick.md").read_text()
    commit = summary["machine"]["commit"]
    assert commit != "unknown" and f"`{commit}`" in text
    assert summary["machine"]["device_name"] in text
    for heading in ("## Training: throughput", "## CPU vs CUDA", "## Forgetting on the GPU", "What was cut"):
        assert heading in text
    assert "| dense update log |" in text and "<= 1.5x" in text


def test_the_commit_can_be_passed_in_for_a_copy_without_git(monkeypatch):
    import torch

    from benchmarks.gpu.report import machine

    monkeypatch.setenv("UNLEARND_COMMIT", "abc1234-dirty")
    assert machine(torch.device("cpu"), None)["commit"] == "abc1234-dirty"
    assert machine(torch.device("cpu"), "f00")["commit"] == "f00"


def _referenced_paths(script: str) -> set[str]:
    return set(re.findall(r"((?:benchmarks|tests)/[\w/.-]+\.(?:py|sh))", script))


def test_the_gpu_scripts_parse_and_name_files_that_exist():
    for name in ("run.sh", "prepare.sh", "fetch_wheels.sh"):
        script = GPU / name
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert script.stat().st_mode & 0o111, f"{name} is not executable"
    run = (GPU / "run.sh").read_text()
    paths = _referenced_paths(run)
    assert {"tests/unit/test_cuda_engine.py", "benchmarks/gpu/prepare.sh", "benchmarks/gpu/fetch_wheels.sh"} <= paths
    for path in paths | _referenced_paths((GPU / "prepare.sh").read_text()):
        assert (ROOT / path).exists(), path
    assert '-m benchmarks.gpu --data .gpudata/cifar10-jpeg.npz --device "${DEVICE:-cuda}"' in run
    assert "WHEELS=${WHEELS:-.whl}" in run and '--target /tmp/site "$WHEELS"/*.whl' in run
    assert "export UNLEARND_COMMIT=$(cat .gpudata/commit)" in run
    ignored = subprocess.run(
        ["git", "check-ignore", ".whl/x.whl", ".gpudata/cifar10-jpeg.npz"], cwd=ROOT, capture_output=True, text=True
    )
    assert ignored.stdout.split() == [".whl/x.whl", ".gpudata/cifar10-jpeg.npz"]


# The project's dependencies a GPU machine's python lacks (it has torch, numpy, safetensors,
# transformers, scikit-learn, pillow, matplotlib, nvidia-ml-py, psutil, httpx, pytest, pyyaml).
NOT_ON_GPU = {
    "fastapi",
    "fastapi-offline",
    "uvicorn",
    "pydantic",
    "pydantic-settings",
    "python-multipart",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "celery",
    "kombu",
    "redis",
    "cryptography",
    "prometheus-client",
    "tenacity",
    "python-json-logger",
    "click",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
}
CHAIN = [
    "benchmarks.gpu.cli",
    "benchmarks.gpu.forgetting",
    "tests.unit.test_cuda_engine",
    "workers.engine.methods",
    "workers.engine.verification.membership",
    "benchmarks.forgetting.plots",
]

_PROBE = """
import importlib, importlib.metadata as md, json, sys
chain = json.loads(sys.argv[1])
for name in chain:
    importlib.import_module(name)
dists = md.packages_distributions()
top = {m.split(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names)
print(json.dumps(sorted({d for t in top for d in dists.get(t, [])})))
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_gpu_import_chain_needs_only_the_carried_wheels():
    text = (GPU / "fetch_wheels.sh").read_text()
    loop = re.search(r"for name in ([^;]+);", text)
    assert loop is not None
    carried = {_normal(n) for n in loop.group(1).split()}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(CHAIN)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    imported = {_normal(d) for d in json.loads(probe.stdout)}
    missing = {_normal(d) for d in NOT_ON_GPU} & imported
    assert missing <= carried, f"imported on the GPU path but neither there nor carried: {missing - carried}"
    assert {"pydantic", "pydantic-core"} <= missing  # the chain does need them: the probe is not vacuous


def test_a_part_past_its_deadline_is_left_out_and_listed(tmp_path):
    summary = main(["--quick", "--parts", "cpu", "--budget-s", "0", "--out", str(tmp_path)])
    assert not summary["complete"] and summary["left_out"] == ["the CPU comparison"]
    assert "Left out (their part's time was up): the CPU comparison." in (tmp_path / "gpu-digits-quick.md").read_text()


def test_a_run_stopped_by_its_time_limit_keeps_what_finished(tmp_path):
    """run.sh's hard limit sends SIGTERM: the rows written so far stay, and the files say it stopped."""
    import signal
    import time

    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--quick",
        "--parts",
        "training,forgetting",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = tmp_path / "gpu-digits-quick.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if saved.exists() and len(json.loads(saved.read_text() or "{}").get("training") or []) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the quick run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 3  # incomplete
    finally:
        proc.kill()
    result = json.loads(saved.read_text())
    assert result["stopped"] == "stopped by signal SIGTERM" and not result["complete"]
    assert len(result["training"]) >= 2 and all(r["images_per_s"] > 0 for r in result["training"])
    assert "(stopped by signal SIGTERM)" in (tmp_path / "gpu-digits-quick.md").read_text()


def test_the_gpu_profile_runs_every_default_auto_first_without_the_dense_log():
    from benchmarks.forgetting.profiles import cifar10
    from benchmarks.gpu.forgetting import ROWS, gpu_profile

    profile = gpu_profile(Path("unused.npz"), 64, 3)
    labels = [r.label for r in profile.rows()]
    assert labels == ROWS and labels[0] == "auto" and "amnesiac" not in labels
    assert profile.dense_log is None and profile.scenarios == ["class-3", "random-samples"]
    assert profile.config == {"width": 64} and profile.recipe.epochs == 3 and profile.seeds == [0]
    # the same methods and parameters as the CIFAR-10 profile's rows of those labels
    published = {r.label: (r.method, r.params) for r in cifar10(Path("unused.npz")).rows()}
    assert all(published[r.label] == (r.method, r.params) for r in profile.rows())
    assert [r.label for r in profile.rows_for("sample_ids")] == [label for label in ROWS if label != "unsir"]
