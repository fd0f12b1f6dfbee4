"""The activity's rank (independent directions among the neurons, `circuitgnn.data.informative.activity_rank`) of the
first T consecutive frames of a dataset, for several T: where the data stop determining W.

    python benchmarks/activity_rank.py runs/baselines_data/fig2_baseline --frames 5000 10000 20000
"""

from __future__ import annotations

import argparse

import numpy as np

from circuitgnn import open_dataset
from circuitgnn.data.informative import activity_rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--frames", type=int, nargs="+", default=[5000, 10000])
    args = parser.parse_args()
    x = open_dataset(args.dataset).x
    for t in args.frames:
        rank, among, duplicates = activity_rank(np.asarray(x[:t]))
        print(f"first {t} frames: rank {rank} of {among} neurons; {len(duplicates)} duplicated pairs")


if __name__ == "__main__":
    main()
