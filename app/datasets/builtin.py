"""Built-in datasets: scikit-learn's bundled copy of the 8x8 handwritten digits (no download)."""

from __future__ import annotations

import numpy as np

BUILTIN = ("digits",)


def digits_arrays() -> dict[str, np.ndarray]:
    """1,797 images, 10 classes; a stratified, seeded 80/20 train/test split; IDs ``digits-0000``..."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    n = len(data.target)
    ids = np.array([f"digits-{i:04d}" for i in range(n)])
    _, test_rows = train_test_split(np.arange(n), test_size=0.2, stratify=data.target, random_state=0)
    split = np.full(n, "train", dtype="<U5")
    split[test_rows] = "test"
    x = (data.images / 16.0).astype(np.float32)  # pixel values 0..16 -> 0..1
    return {"ids": ids, "x": x, "y": data.target.astype(np.int64), "split": split}
