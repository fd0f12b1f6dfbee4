"""The training-size and sparsity series as figures (paper Supp. Figs. 7 and 9)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AXES = {
    "frames": ("frames in the training set", lambda r: r["frames"], "{:,.0f} frames"),
    "sparsity": ("connectivity filling factor", lambda r: r["filling_factor"], "{:.0%} filled"),
}


def series_figure(name: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Left: final W R^2 against the series variable; right: W R^2 against training samples, one curve per run."""
    xlabel, key, fmt = AXES[name]
    measured = sorted((r for r in rows if r.get("status") != "not run"), key=key)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if measured:
        left.plot([key(r) for r in measured], [r["W_r2"] for r in measured], "o-", color="k", label="this package")
        paper = [(key(r), r["paper"]["W_r2"]) for r in measured if r["paper"]["W_r2"] is not None]
        if paper:
            left.plot(*zip(*paper, strict=True), "s--", color="tab:gray", label="paper")
        for r in measured:
            samples = [p["iteration"] * r["batch_size"] for p in r["curve"]]
            right.plot(samples, [p["W_r2"] for p in r["curve"]], label=fmt.format(key(r)))
    else:
        left.text(0.5, 0.5, "no run measured yet", ha="center", transform=left.transAxes)
    if name == "sparsity":
        left.set_xscale("log")
    left.set(xlabel=xlabel, ylabel="W R²", ylim=(min(0.0, *(r["W_r2"] for r in measured)) if measured else 0, 1.02))
    right.set(xlabel="training samples (iterations × batch)", ylabel="W R²", ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"Connectivity recovery against {xlabel}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
