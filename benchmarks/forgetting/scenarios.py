"""The five scenarios of the benchmark, as rows of the training split to forget."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workers.engine.datasets import ArrayDataset


@dataclass
class Scenario:
    key: str
    title: str
    scope: str  # class_labels | sample_ids
    forget_rows: np.ndarray  # rows of the dataset
    classes: tuple[int, ...] = ()
    requests: list[np.ndarray] = field(default_factory=list)  # sequential: the rows of each request

    @property
    def sequential(self) -> bool:
        return bool(self.requests)


def build(
    ds: ArrayDataset,
    sample_fraction: float,
    one_digit: tuple[int, int],
    sequential: tuple[int, int],
    rng: np.random.Generator,
) -> list[Scenario]:
    train = ds.rows("train")
    random_rows = np.sort(rng.choice(train, size=round(sample_fraction * len(train)), replace=False))
    digit, n_digit = one_digit
    digit_rows = np.sort(rng.choice(ds.rows("train", labels=[digit]), size=n_digit, replace=False))
    n_requests, per_request = sequential
    # The ten successive requests forget the random 1% of scenario 3 in ten parts: after the last
    # one the forget set is the same, so scenario 3's retrained model is the reference for both.
    order = rng.permutation(random_rows)[: n_requests * per_request]
    requests = [np.sort(order[i * per_request : (i + 1) * per_request]) for i in range(n_requests)]
    pct = f"{sample_fraction:.0%}"
    return [
        Scenario("class-3", "forget one class (digit 3)", "class_labels", ds.rows("train", labels=[3]), (3,)),
        Scenario(
            "classes-0-2", "forget two classes (0 and 2)", "class_labels", ds.rows("train", labels=[0, 2]), (0, 2)
        ),
        Scenario(
            "random-samples",
            f"forget {pct} of the training samples at random ({len(random_rows)})",
            "sample_ids",
            random_rows,
        ),
        Scenario("one-digit-samples", f"forget {n_digit} samples of digit {digit}", "sample_ids", digit_rows),
        Scenario(
            "sequential",
            f"{n_requests} successive requests of {per_request} random samples",
            "sample_ids",
            np.sort(np.concatenate(requests)),
            requests=requests,
        ),
    ]
