"""The training-size and sparsity series as figures (paper Supp. Figs. 7 and 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circuitgnn.simulate.figure import pyplot, save_figure

AXES = {
    "frames": ("frames in the training set", lambda r: r["frames"], "{:,.0f} frames"),
    "sparsity": ("connectivity filling factor", lambda r: r["filling_factor"], "{:.0%} filled"),
}


def curve_label(name: str, row: dict[str, Any]) -> str:
    """Legend of one run: its series value, and whether W was trained with the proximal L1."""
    _, key, fmt = AXES[name]
    return fmt.format(key(row)) + (" (proximal L1)" if row.get("w_shrink") else "")


def series_figure(name: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Left: final W R^2 against the series variable; right: W R^2 against iterations, one curve per run.

    Runs without a measured W R^2 are left out; the paper's values are drawn where the manifest has them;
    runs trained with the proximal L1 on W (``regularization.w_shrink``) say so in the legend.
    """
    xlabel, key, _ = AXES[name]
    measured = sorted((r for r in rows if r.get("W_r2") is not None), key=key)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4))
    if measured:
        left.plot([key(r) for r in measured], [r["W_r2"] for r in measured], "o-", color="k", label="this package")
        paper = [(key(r), r["paper"]["W_r2"]) for r in measured if r["paper"]["W_r2"] is not None]
        if paper:
            left.plot(*zip(*paper, strict=True), "s--", color="tab:gray", label="paper")
        for r in measured:
            right.plot([p["iteration"] for p in r["curve"]], [p["W_r2"] for p in r["curve"]], label=curve_label(name, r))
    else:
        left.text(0.5, 0.5, "no run measured yet", ha="center", transform=left.transAxes)
    if name == "sparsity":
        left.set_xscale("log")
    left.set(xlabel=xlabel, ylabel="W R²", ylim=(min(0.0, *(r["W_r2"] for r in measured)) if measured else 0, 1.02))
    right.set(xlabel="iterations (same batch size across the series)", ylabel="W R²", ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"Connectivity recovery against {xlabel}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
