"""The five scenarios of the benchmark, as rows of the training split to forget.

Labels and sizes come from the data: the class scenarios take existing labels (the one at a third
of the sorted labels, and the first and third), the "one class" scenario the second-to-last label,
and the sequential requests split the random set into parts that are never empty, with the title
stating their real size.
"""

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
    class_samples: int,
    requests: int,
    rng: np.random.Generator,
    names: dict[int, str] | None = None,
) -> list[Scenario]:
    """``class_samples``: how many samples of one class the fourth scenario forgets (at most half of
    that class); ``requests``: how many successive requests share the random set."""
    names = names or {}
    train = ds.rows("train")
    labels = [int(v) for v in np.unique(ds.y[train])]
    if len(labels) < 3:
        raise ValueError(f"the scenarios need at least three labels in the training split, found {labels}")

    def name(label: int) -> str:
        return names.get(label, str(label))

    one = labels[len(labels) // 3]
    two = (labels[0], labels[2])
    random_rows = np.sort(rng.choice(train, size=max(1, round(sample_fraction * len(train))), replace=False))
    picked = labels[-2]
    of_label = ds.rows("train", labels=[picked])
    n_picked = max(1, min(class_samples, len(of_label) // 2))
    picked_rows = np.sort(rng.choice(of_label, size=n_picked, replace=False))
    # The successive requests forget the random set of scenario 3 in parts: after the last one the
    # forget set is the same, so scenario 3's retrained model is the reference for both.
    parts = [np.sort(p) for p in np.array_split(rng.permutation(random_rows), min(requests, len(random_rows)))]
    sizes = sorted({len(p) for p in parts})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    pct = f"{sample_fraction:.0%}"
    return [
        Scenario(
            f"class-{one}", f"forget one class ({name(one)})", "class_labels", ds.rows("train", labels=[one]), (one,)
        ),
        Scenario(
            f"classes-{two[0]}-{two[1]}",
            f"forget two classes ({name(two[0])} and {name(two[1])})",
            "class_labels",
            ds.rows("train", labels=list(two)),
            two,
        ),
        Scenario(
            "random-samples",
            f"forget {pct} of the training samples at random ({len(random_rows)})",
            "sample_ids",
            random_rows,
        ),
        Scenario("one-class-samples", f"forget {n_picked} samples of class {name(picked)}", "sample_ids", picked_rows),
        Scenario(
            "sequential",
            f"{len(parts)} successive requests of {size} random samples (the {pct} set in parts)",
            "sample_ids",
            np.sort(np.concatenate(parts)),
            requests=parts,
        ),
    ]
