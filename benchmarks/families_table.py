"""The varied families of issue 21 beside the regression told the true functions, on the same frames.

Run the rows and the bound first::

    circuitgnn reproduce family_six_types family_unequal_types family_dale_balanced family_sparse_default \\
        family_weak_noisy family_gaussian_gains family_biased --work runs/reproduce_families --results results/families
    mkdir -p runs/families_data && for d in runs/reproduce_families/family_*; do ln -sfn ../../$d/data runs/families_data/$(basename $d); done
    circuitgnn baselines runs/families_data/family_* --out runs/families_bound --methods known_functions
    python benchmarks/families_table.py

Each family is trained with the default settings (warm start on). The regression told the true psi and phi
basis recovers W from the same training frames whenever the frames determine it: where it does and the
GNN does not, the miss is the optimiser's. W R^2 and slope are corrected for psi*'s scale and divided by the
receivers' gains; types: K-means on the embeddings with K chosen without labels. The truth is read only to
score. The table is printed and appended, with the machine, to benchmarks/results/families.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from records import append_record

from circuitgnn.analyze.baselines.compare import machine

FAMILIES = (
    "family_six_types",
    "family_unequal_types",
    "family_dale_balanced",
    "family_sparse_default",
    "family_weak_noisy",
    "family_gaussian_gains",
    "family_biased",
)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _first_line(work: Path, family: str) -> dict[str, Any]:
    """The run's iteration-0 log line: the scores right after the warm start."""
    log = work / family / "run" / "log.jsonl"
    if not log.is_file():
        return {}
    first = log.read_text().splitlines()[0]
    return json.loads(first)


def _cell(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/reproduce_families"), help="the reproduce work folder")
    parser.add_argument("--bound", type=Path, default=Path("runs/families_bound"), help="the baselines output folder")
    args = parser.parse_args()
    head = (
        "| family | N | W R² | W slope | types (K found / true) | after the warm start: W R² / types | trained | "
        "told the true functions: W R² |\n|---|---|---|---|---|---|---|---|"
    )
    rows, records = [head], []
    for family in FAMILIES:
        metrics = _json(args.work / family / "run" / "metrics.json")
        if not metrics:
            rows.append(f"| {family} | not run | | | | | | |")
            continue
        summary = _json(args.work / family / "data" / "meta.json").get("summary", {})
        bound = _json(args.bound / family / "methods" / "known_functions.json")
        start = _first_line(args.work, family)
        bound_r2 = bound.get("result", {}).get("metrics", {}).get("W_r2")
        types = metrics.get("types_kmeans_accuracy")
        rows.append(
            f"| {family} | {metrics['n_neurons']} | {_cell(metrics.get('W_r2'))} | {_cell(metrics.get('W_slope'))} | "
            f"{_cell(types)} ({metrics.get('types_kmeans_k', '–')} / {summary.get('n_types', '–')}) | "
            f"{_cell(start.get('W_r2'))} / {_cell(start.get('type_accuracy'))} | "
            f"{metrics['train_seconds'] / 60:.1f} min, {metrics['iterations']:,} it | {_cell(bound_r2, 4)} |"
        )
        records.append({"family": family, "metrics": {k: metrics.get(k) for k in ("W_r2", "W_slope", "types_kmeans_accuracy")},
                        "bound_W_r2": bound_r2, "train_seconds": metrics["train_seconds"]})  # fmt: skip
    table = "\n".join(rows)
    print(table)
    append_record(
        Path(__file__).parent / "results" / "families.jsonl",
        {"machine": machine(), "rows": records},
    )


if __name__ == "__main__":
    main()
