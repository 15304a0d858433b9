"""Validation of uploaded safetensors weights against an architecture (no pickle, no torch needed)."""

from __future__ import annotations

from safetensors import SafetensorError, safe_open

from app.core.errors import Invalid

LIST_LIMIT = 100


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(path, framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise Invalid(
            f"the weights are not a readable safetensors file: {exc}", slug="invalid-weights", title="Invalid weights"
        ) from None


def check_against(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """422 naming every missing key, unexpected key and shape mismatch (first 100 of each)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        {"key": k, "expected": list(expected[k]), "found": list(found[k])}
        for k in sorted(set(found) & set(expected))
        if found[k] != expected[k]
    ]
    if missing or unexpected or mismatched:
        raise Invalid(
            f"the weights do not fit the architecture: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} with the wrong shape",
            slug="invalid-weights",
            title="Weights do not match the architecture",
            missing_keys=missing[:LIST_LIMIT],
            unexpected_keys=unexpected[:LIST_LIMIT],
            shape_mismatches=mismatched[:LIST_LIMIT],
        )
