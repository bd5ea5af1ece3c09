"""The loss curves as a picture, because a glance at the curve answers "is it learning?" fastest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in Dagster runs

from matplotlib import pyplot as plt  # noqa: E402  (after the backend is chosen)

Points = Sequence[tuple[int, float]]


def plot_loss_curve(loss_history: Points, eval_history: Points, path: Path) -> Path:
    """Draw training loss (line) and validation loss (markers) against optimizer step into a PNG.

    About 800x450 pixels: readable inline in the Dagster UI without dwarfing the metadata.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if loss_history:
            steps, losses = zip(*loss_history)
            ax.plot(steps, losses, label="train loss", color="tab:blue", linewidth=1.5)
        if eval_history:
            steps, losses = zip(*eval_history)
            ax.plot(steps, losses, label="validation loss", color="tab:orange", marker="o", linewidth=1.5)
        if not loss_history and not eval_history:
            ax.text(0.5, 0.5, "no losses recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title("Training and validation loss")
        ax.grid(True, alpha=0.3)
        if loss_history or eval_history:
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
