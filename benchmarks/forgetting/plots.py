"""The plots: Avg Gap against speed-up per scenario, and the successive requests' curves."""

from __future__ import annotations

from pathlib import Path


def write(profile: str, agg: dict, scenarios: dict[str, str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 4), squeeze=False)
    for ax, key in zip(axes[0], scenarios, strict=True):
        last = max((r for (s, m, r) in agg if s == key and r is not None), default=None)
        for (s, m, r), stat in agg.items():
            if s == key and r == last and m not in ("original", "retrain") and "avg_gap" in stat and "speedup" in stat:
                ax.scatter(stat["speedup"][0], stat["avg_gap"][0], s=18)
                ax.annotate(m, (stat["speedup"][0], stat["avg_gap"][0]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("speed-up over retraining")
        ax.set_ylabel("Avg Gap to retraining (pt)")
        ax.set_title(scenarios[key], fontsize=8)
    fig.tight_layout()
    path = out / f"forgetting-{profile}-tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    seq = [(m, r, stat) for (s, m, r), stat in agg.items() if s == "sequential" and r is not None]
    if seq:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for method in sorted({m for m, _, _ in seq}):
            points = sorted((r, st) for m, r, st in seq if m == method)
            a1.plot(
                [r for r, _ in points], [st["test_accuracy"][0] * 100 for _, st in points], marker="o", label=method
            )
            a2.plot(
                [r for r, _ in points], [st["forget_accuracy"][0] * 100 for _, st in points], marker="o", label=method
            )
        a1.set_title("test accuracy after each request (%)")
        a2.set_title("accuracy on everything forgotten so far (%)")
        for a in (a1, a2):
            a.set_xlabel("request")
        a1.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"forgetting-{profile}-sequential.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
