"""The tables of docs/calcium.md, from the runs of `circuitgnn reproduce` (its calcium rows beyond the paper).

Run the rows first (each simulates, deconvolves, trains up to its budget and evaluates)::

    circuitgnn reproduce calcium_fig2 calcium_fig2_fluorescence calcium_unrecorded_10 calcium_unrecorded_30 \\
        calcium_unrecorded_50 calcium_sparse_10 --results results/beyond
    python benchmarks/calcium_table.py [--work runs/reproduce]

Rows trained for less time than calcium_fig2 (method (b), the unrecorded rows) are compared with
calcium_fig2's own log line at the same training time, so that every column of a table had the same
time. W R^2 and slope are corrected for psi*'s scale and the gain; types: K-means on the embeddings,
K chosen without labels. The truth is read only to score, in each run's log and metrics.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REFERENCE = "calcium_fig2"


def _log(work: Path, exp: str) -> list[dict[str, Any]]:
    path = work / exp / "run" / "log.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `circuitgnn reproduce {exp}` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _metrics(work: Path, exp: str) -> dict[str, Any]:
    path = work / exp / "run" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def at_time(log: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The last log line at or before ``seconds`` of training."""
    lines = [line for line in log if line["train_seconds"] <= seconds + 1]
    return lines[-1] if lines else log[0]


def _row(name: str, line: dict[str, Any]) -> str:
    types = line.get("type_accuracy")
    return (
        f"| {name} | {line['W_r2']:.3f} | {line['W_slope']:.3f} | {'–' if types is None else f'{types:.3f}'} | "
        f"{line['train_seconds'] / 60:.1f} min, {line['iteration']:,} it |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/reproduce"), help="the reproduce work folder")
    args = parser.parse_args()
    ref = _log(args.work, REFERENCE)
    head = "| | W R² | W slope | types | at |\n|---|---|---|---|---|"

    print("Method (a) and (b) on the same recording, at the same training time:\n")
    b = _log(args.work, "calcium_fig2_fluorescence")
    t = b[-1]["train_seconds"]
    print(head)
    print(_row("(a) deconvolved, then the derivative fit", at_time(ref, t)))
    print(_row("(b) the fluorescence objective (8 frames)", b[-1]))
    print(_row("(a) at the end of its budget", ref[-1]))
    for target in (0.9, 0.95, 0.98):
        first = next((line for line in ref if line["W_r2"] >= target), None)
        if first is not None:
            print(f"\n(a) first reached W R^2 {target}: {_row('', first)}", end="")
    print()

    print("\nNeurons left unrecorded (scores among the recorded neurons), at the same training time:\n")
    rows = []
    for fraction in (10, 30, 50):
        rows.append((fraction, _log(args.work, f"calcium_unrecorded_{fraction}")[-1]))
    t = min(line["train_seconds"] for _, line in rows)
    print(head.replace("| |", "| unrecorded |", 1))
    print(_row("0 % (calcium_fig2's log)", at_time(ref, t)))
    for fraction, line in rows:
        print(_row(f"{fraction} %", line))

    for name in ("a", "b"):  # the same network recorded for 20,000 frames (a fifth of the time), kept in benchmarks/results
        path = Path(__file__).parent / "results" / f"calcium_20k_frames_{name}.jsonl"
        if path.is_file():
            last = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][-1]
            print(f"\n20,000 frames, method ({name}): {_row('', last)}", end="")
    print()

    sparse = _metrics(args.work, "calcium_sparse_10")
    if sparse:
        print("\nSparse 10 % through calcium: edge detection (AUC; partial correlation on the same frames):\n")
        print("| | GNN, AUC of \\|W\\| | partial correlation | W R² | types | training |\n|---|---|---|---|---|---|")
        print(
            f"| sparse 10 % | {sparse['W_edge_auc']:.3f} | {sparse['W_edge_auc_partial_correlation']:.3f} | {sparse['W_r2']:.3f} | "
            f"{sparse.get('types_kmeans_accuracy', float('nan')):.3f} | {sparse['train_seconds'] / 60:.1f} min, {sparse['iterations']:,} it |"
        )
        edge_auc_by_size(args.work)


def edge_auc_by_size(work: Path, exp: str = "calcium_sparse_10") -> None:
    """The GNN's edge-detection AUC when the smallest true weights are left out: how much of the miss they make."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from circuitgnn.train.run_folder import load_run, run_dataset

    run = load_run(work / exp / "run")
    truth = run_dataset(run).truth
    assert truth is not None
    off = ~np.eye(truth.connectivity.shape[0], dtype=bool)
    true, learned = truth.connectivity[off], np.abs(run.model.connectivity().detach().cpu().numpy()[off])
    present = true != 0
    print("\nEdge detection without the smallest true weights (the truncated Cauchy has many near zero):\n")
    print("| true edges kept | smallest kept \\|w\\| | AUC of \\|W\\| |\n|---|---|---|")
    for q in (0.0, 0.05, 0.1):
        floor = float(np.quantile(np.abs(true[present]), q))
        keep = ~present | (np.abs(true) >= floor)
        label = "all" if q == 0 else f"all but the smallest {q:.0%}"
        print(f"| {label} | {floor:.2e} | {roc_auc_score(present[keep], learned[keep]):.3f} |")


if __name__ == "__main__":
    main()
