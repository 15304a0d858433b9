from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

import benchmarks.forgetting
from benchmarks.forgetting import report
from benchmarks.forgetting.experiment import run_seed
from benchmarks.forgetting.profiles import PROFILES, digits_quick

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forgetting", description=benchmarks.forgetting.__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), help="the dataset, model and recipe")
    parser.add_argument("--data", type=Path, help="the profile's file (../shared/data/mnist.npz, cifar10-jpeg.npz)")
    parser.add_argument("--quick", action="store_true", help="digits, one seed, a subset of the rows")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the profile's seeds")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table, JSON and plots go")
    args = parser.parse_args(argv)
    if not args.quick and (args.profile is None or args.data is None):
        parser.error("give --profile and --data, or --quick")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    profile = digits_quick() if args.quick else PROFILES[args.profile](args.data)
    if args.seeds:
        profile.seeds = args.seeds
    device = torch.device(args.device)
    info = report.machine(device)  # before the run: the commit of the code that runs, not of later edits
    started = time.perf_counter()
    ds = profile.load()
    seeds = [run_seed(profile, ds, seed, device) for seed in profile.seeds]
    summary = report.write(profile, seeds, args.out, time.perf_counter() - started, info)
    for target in summary["targets"]:
        logging.info("target %s %s: %s", target["scenario"], target["method"], "met" if target["met"] else "MISSED")
    return summary
