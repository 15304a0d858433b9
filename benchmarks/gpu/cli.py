from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

import benchmarks.gpu
from benchmarks.forgetting import report as forgetting_report
from benchmarks.gpu import forgetting, report, throughput
from workers.engine.device import setup_device
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import RecorderConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"
log = logging.getLogger("benchmarks.gpu")

# Shares of --budget-s: the training rows start before TRAINING_END of it, the CPU comparison
# before CPU_END; the forgetting part has the rest, less --margin-s for the row running at its end.
TRAINING_END, CPU_END = 0.35, 0.45
LOOPED_GRADIENT_STEPS = 50  # the epoch-0 pruned row's steps when the recorder loops over samples


class Stopped(BaseException):  # noqa: N818 - not an error; BaseException: no `except Exception` swallows it
    """SIGTERM/SIGINT (run.sh's hard time limit): write what finished, then stop."""


def _stop(signum, frame):
    raise Stopped(f"stopped by signal {signal.Signals(signum).name}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=benchmarks.gpu.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="CIFAR-10 (cifar10-jpeg.npz)")
    parser.add_argument(
        "--quick", action="store_true", help="digits, a tiny width, on the CPU: the same code in ~1 min"
    )
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where gpu-*.md/json and forgetting-*-gpu.* go")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole run's time (default 420; quick 300)")
    parser.add_argument(
        "--margin-s",
        type=float,
        default=None,
        help="forgetting rows stop starting this long before the budget ends (default 60; quick 0)",
    )
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 width (default 64, the published one)")
    parser.add_argument("--train-steps", type=int, default=None, help="steps per training row (default 128)")
    parser.add_argument("--cpu-steps", type=int, default=None, help="steps of the CPU comparison (default 20)")
    parser.add_argument("--epochs", type=int, default=None, help="the forgetting part's training epochs (default 3)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="CUDA fast mode (TF32, cuDNN autotuning) instead of the worker's default deterministic mode",
    )
    parser.add_argument("--parts", default="training,cpu,forgetting", help="comma-separated parts to run")
    parser.add_argument("--workdir", type=Path, default=None, help="where update logs are written (and deleted)")
    parser.add_argument("--commit", default=None, help="the code's commit (default: UNLEARND_COMMIT, else git)")
    args = parser.parse_args(argv)
    if not args.quick and args.data is None:
        parser.error("give --data (cifar10-jpeg.npz), or --quick")
    quick = args.quick
    defaults = {
        "budget_s": 300.0 if quick else 420.0,
        "margin_s": 0.0 if quick else 60.0,
        "width": 4 if quick else 64,
        "train_steps": 6 if quick else 128,  # two chunks of 64 steps, all batches full
        "cpu_steps": 3 if quick else 20,
        "epochs": 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.device is None:
        args.device = "cpu" if quick else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    args.parts = set(args.parts.split(","))
    return args


def load(args: argparse.Namespace):
    if args.quick:
        return forgetting.quick_profile(args.width, args.epochs)
    return forgetting.gpu_profile(args.data, args.width, args.epochs)


def cut_list(args: argparse.Namespace, spec: throughput.Spec, steps_per_epoch: int) -> list[str]:
    dense_epoch = spec.dense_step_bytes() * steps_per_epoch
    return [
        f"Training rows: {args.train_steps} steps each ({args.train_steps * spec.recipe.batch_size:,} images), not "
        f"whole epochs of {steps_per_epoch} steps: a dense-log epoch writes {report.size(dense_epoch)}, and the "
        "run must fit one device call of a few minutes. Ratios are per step.",
        f"Forgetting: {args.epochs} training epochs (the recipe above; the CIFAR-10 profile trains 6 at width 8), "
        "one seed, two of the five scenarios (one class; 1% at random), every method at its defaults plus `auto` "
        "and first-epoch gradient ascent (auto's first or second attempt); the documented variants are left out.",
        f"Forgetting: no dense update log ({args.epochs} epochs x {report.size(dense_epoch)}), so no `amnesiac` "
        "row (and none in auto's plan: the model's log is the pruned one, as in the forgetting benchmark).",
        f"CPU comparison: {args.cpu_steps} steps of plain training, no update log.",
        "Rows not started by their part's deadline are listed where they would have been.",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    budget_end = started + args.budget_s
    deterministic = not args.fast
    device = setup_device("cuda" if args.device.startswith("cuda") else "cpu", deterministic=deterministic)
    profile = load(args)
    info = report.machine(device, args.commit)  # before the run: the code that runs
    state: dict[str, Any] = {
        "name": "digits-quick" if args.quick else "cifar10",
        "title": profile.title.split(",")[0] + f", ResNet-18 at width {args.width}",
        "command": "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "mode": ("deterministic" if deterministic else "fast") if device.type == "cuda" else "n/a (CPU)",
        "args": {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
        "complete": False,
        "model": f"resnet18 width {args.width}",
        "notes": [],
        "cut": [],
        "left_out": [],
    }
    out = args.out
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report.write(state, out)
        ds = profile.load()
        spec = throughput.Spec(
            architecture=profile.architecture,
            config=profile.config,
            input_shape=ds.input_shape,
            num_classes=ds.num_classes,
            recipe=profile.recipe,
            dense=RecorderConfig(mode="dense"),  # the service's defaults (chunks of 64 steps)
            pruned=RecorderConfig(mode="pruned", top_p=0.1, first_epoch_gradients=forgetting.LAYERS),
        )
        params = spec.parameters()
        state["model"] = f"resnet18 width {args.width}, {params:,} parameters"
        train_rows = ds.rows("train")
        steps_per_epoch = -(-len(train_rows) // spec.recipe.batch_size)
        state["cut"] = cut_list(args, spec, steps_per_epoch)
        r = spec.recipe
        state["training_intro"] = (
            f"The engine's `train()` on the first {min(len(train_rows), args.train_steps * r.batch_size):,} "
            f"training rows, one pass, from a fresh model (seed 0) each row: {r.optimizer.upper()} lr {r.lr}, "
            f"momentum {r.momentum}, weight decay {r.weight_decay}, batch {r.batch_size}, {r.lr_schedule}. "
            "Logs with the service's defaults (chunks of 64 steps, written to local disk with their sha256, "
            "deleted after the row); the pruned log keeps the top 10% of each tensor, and in epoch 0 also the "
            f"per-sample gradients of {'+'.join(forgetting.LAYERS)}. vs plain: seconds per step against plain "
            "training's (fp32, the run's mode). Peak GPU memory includes the resident training rows."
        )
        report.write(state, out)
        if "training" in args.parts:
            n = min(len(train_rows), args.train_steps * spec.recipe.batch_size)
            rows = train_rows[:n]
            data = LabelledTensors.from_arrays(ds.x[rows], ds.y[rows], ds.ids[rows].tolist(), device)
            problem = throughput.vmap_check(spec, data, device)
            if problem:
                state["notes"].append(
                    "The recorder's batched per-sample gradients (vmap) fail on this model, so epoch 0 of a "
                    "pruned log with first-epoch gradients takes one backward pass per sample "
                    f"(UpdateRecorder._looped_gradients): {problem}"
                )

            def on_row(done: list[dict]) -> None:
                state["training"] = done
                report.write(state, out)

            state["training"] = throughput.training_rows(
                spec,
                data,
                device,
                deterministic=deterministic,
                workdir=args.workdir,
                deadline=started + TRAINING_END * args.budget_s,
                notes=state["notes"],
                left_out=state["left_out"],
                on_row=on_row,
                looped_gradient_steps=LOOPED_GRADIENT_STEPS if problem else None,
            )
            state["pruned_whole_run"] = throughput.whole_run(state["training"], args.epochs)
            del data
            _free(device)
            report.write(state, out)
        if "cpu" in args.parts:
            rows = train_rows[: args.cpu_steps * spec.recipe.batch_size]
            cpu_budget = max(0.0, started + CPU_END * args.budget_s - time.monotonic())
            try:
                state["cpu"] = throughput.cpu_row(
                    spec, ds.x[rows], ds.y[rows], ds.ids[rows].tolist(), args.cpu_steps, cpu_budget, state["notes"]
                )
            except Exception as exc:
                log.exception("the CPU comparison failed")
                state["cpu"] = None
                state["notes"].append(f"The CPU comparison failed: {type(exc).__name__}: {exc}")
            if state["cpu"] is None:
                state["left_out"].append("the CPU comparison")
            report.write(state, out)
        if "forgetting" in args.parts:
            try:
                run_forgetting(args, profile, ds, device, state, info, budget_end - args.margin_s)
            except Exception as exc:  # what finished before is written below
                log.exception("the forgetting part failed")
                state["left_out"].append(f"the rest of the forgetting part (failed: {type(exc).__name__}: {exc})")
        state["complete"] = not state["left_out"]
    except Stopped as exc:
        state["stopped"] = str(exc)
        log.info("%s: writing what finished", exc)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        state["wall_seconds"] = time.monotonic() - started
        summary = report.write(state, out)
    return summary


def run_forgetting(args, profile, ds, device, state, info, deadline: float) -> None:
    """The forgetting part, its record in ``state["forgetting"]``; the forgetting benchmark's full
    tables (forgetting-<profile>.md/json/png) once at least one scenario finished."""
    f = state["forgetting"] = {"title": profile.title, "profile": profile.name, "epochs": args.epochs, "seed": None}
    if time.monotonic() >= deadline:
        state["left_out"].append("the forgetting part (no time was left for it)")
        return
    part_started = time.perf_counter()

    def on_progress(seed: dict[str, Any]) -> None:
        f["seed"] = seed
        report.write(state, args.out)

    # a retrain is plain training (no log) for the profile's epochs: from the training part's figure
    plain = next((r for r in state.get("training") or [] if r["key"] == "plain"), None)
    estimate = None
    if plain is not None:
        estimate = plain["seconds_per_step"] * -(-len(ds.rows("train")) // profile.recipe.batch_size)
        estimate *= profile.recipe.epochs
    seed = forgetting.run(profile, ds, device, deadline, on_progress, retrain_estimate=estimate)
    f["seed"] = seed
    state["left_out"] += [f"forgetting {s}: {label}" for s, label in seed["skipped_rows"]]
    state["left_out"] += [f"forgetting {s}: the whole scenario" for s in seed["skipped_scenarios"]]
    state["left_out"] += [f"forgetting {failure} (failed)" for failure in seed["failed_scenarios"]]
    if seed["scenarios"]:
        try:
            forgetting_report.write(profile, [seed], args.out, time.perf_counter() - part_started, info)
            f["tables"] = f"forgetting-{profile.name}.md"
        except Exception as exc:  # the GPU report has the rows already
            log.exception("the forgetting tables failed")
            state["notes"].append(f"The forgetting benchmark's tables failed: {type(exc).__name__}: {exc}")


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
