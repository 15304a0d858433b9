from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from benchmarks.language_models import report
from benchmarks.language_models.experiment import run_profile
from benchmarks.language_models.profiles import quick, shakespeare

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.language_models", description=__doc__)
    parser.add_argument("--data", type=Path, help="path to tinyshakespeare.txt (../shared/data/tinyshakespeare.txt)")
    parser.add_argument("--quick", action="store_true", help="generated text and a tiny model: about a minute")
    parser.add_argument("--max-chars", type=int, help="use only the first N characters of the corpus")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table, JSON and plot go")
    args = parser.parse_args(argv)
    if not args.quick and args.data is None:
        parser.error("give --data path/to/tinyshakespeare.txt, or --quick")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    profile = quick() if args.quick else shakespeare(args.data, args.max_chars)
    started = time.perf_counter()
    summary = run_profile(profile)
    summary.update(
        profile=profile.name,
        command="python -m benchmarks.language_models " + " ".join(argv if argv is not None else sys.argv[1:]),
        arch=profile.arch,
        recipe=profile.recipe.model_dump(),
        eval_blocks=profile.eval_blocks,
        pretrain_epochs=profile.pretrain_epochs,
        canaries={
            "format": profile.fmt,
            "inserted": profile.inserted,
            "forgotten": profile.forgotten,
            "never_inserted": profile.never_inserted,
            "repeats": profile.repeats,
            "max_exposure": math.log2(10 ** profile.fmt.count("#")),
        },
        wall_seconds=time.perf_counter() - started,
    )
    summary = report.write(summary, args.out)
    for t in summary["targets"]:
        logging.info("%s: %s", t["variant"], "met" if t["met"] else f"missed {t['checks']}")
    return summary
