from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from benchmarks.forgetting import report
from benchmarks.forgetting.experiment import run_seed
from benchmarks.forgetting.profiles import digits_quick, mnist

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forgetting", description=__doc__)
    parser.add_argument("--data", type=Path, help="path to mnist.npz (e.g. ../shared/data/mnist.npz)")
    parser.add_argument("--quick", action="store_true", help="digits, one seed, under a minute")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the profile's seeds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table, JSON and plots go")
    args = parser.parse_args(argv)
    if not args.quick and args.data is None:
        parser.error("give --data path/to/mnist.npz, or --quick")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    profile = digits_quick() if args.quick else mnist(args.data)
    if args.seeds:
        profile.seeds = args.seeds
    started = time.perf_counter()
    ds = profile.load()
    seeds = [run_seed(profile, ds, seed) for seed in profile.seeds]
    summary = report.write(profile.name, seeds, args.out, time.perf_counter() - started)
    for target in summary["targets"]:
        logging.info("target %s %s: %s", target["scenario"], target["method"], "met" if target["met"] else "MISSED")
    return summary
