"""A short, fixed-length training run and the sha256 of the parameters it ends with.

Two versions of the code that train the same way print the same fingerprint on the same machine and
thread count; that is how a refactor of the training loop is checked to change nothing. Two runs:

* ``fig2``: the Fig. 2 config, 6 epochs of 400 iterations, clustering every 2 epochs (three clusterings,
  each freezing psi* and the embeddings for an epoch).
* ``supp13``: the Supp. 13 config, 5 epochs of 300 iterations: clustering with the stop on a repeated
  partition, an exact W solve after every epoch (on 2,000 frames), the RMS monotonicity term.

    python benchmarks/train_fingerprint.py fig2 --data datasets/fig2 --out runs/fingerprint
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/train_fingerprint.py fig2 --data datasets/fig2 --out runs/fp-old

The datasets are simulated from the packaged configs when missing. The script reads the config
through attribute names that exist both before and after the settings were grouped under
``training.extensions``, so it also runs on older checkouts.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

import circuitgnn
from circuitgnn import load_config, simulate
from circuitgnn.train.trainer import Trainer

CONFIGS = Path(circuitgnn.__file__).parent / "configs/paper"  # the configs of the version being run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["fig2", "supp13"])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (simulated if missing)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (replaced)")
    args = parser.parse_args()
    name = {"fig2": "fig2_baseline.yaml", "supp13": "supp13_transmitters.yaml"}[args.which]
    cfg = load_config(CONFIGS / name)
    if not (args.data / "meta.json").is_file():
        simulate(cfg, args.data, progress=False, figure=False)
    t = cfg.training
    if args.which == "fig2":
        t.iterations_per_epoch, t.n_epochs, t.log_every, t.checkpoint_every = 400, 6, 200, 400
        t.clustering.every_epochs = 2
    else:
        t.iterations_per_epoch, t.n_epochs, t.log_every, t.checkpoint_every = 300, 5, 150, 300
        solve = t.extensions.w_solve if hasattr(t, "extensions") else t.w_solve
        solve.frames = 2000
    run = Trainer(cfg, args.data, args.out, overwrite=True, progress=False).fit()
    h = hashlib.sha256()
    for key, value in sorted(run.model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    print(f"{args.which}: {run.log[-1]['iteration']} iterations, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"parameters sha256 {h.hexdigest()}")


if __name__ == "__main__":
    main()
