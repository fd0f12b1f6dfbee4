"""circuitgnn: recover connectivity, neuron types, functions and hidden stimuli of neural assemblies
with an interpretable graph neural network, proven against ground truth from its own simulator.

Public API::

    from circuitgnn import load_config, simulate, open_dataset
    cfg = load_config("configs/quick.yaml")
    result = simulate(cfg, "datasets/quick")
    ds = open_dataset("datasets/quick")      # ds.x, ds.dxdt (memory-mapped), ds.truth
    run = Trainer(cfg, "datasets/quick", "runs/quick").fit()
    run = load_run("runs/quick")             # run.model, run.log, run.config
"""

__version__ = "0.1.0"

from circuitgnn.config import ExperimentConfig, load_config  # noqa: E402
from circuitgnn.data.dataset import Dataset, open_dataset  # noqa: E402
from circuitgnn.simulate.run import simulate  # noqa: E402
from circuitgnn.train.trainer import Trainer, load_run, train  # noqa: E402

__all__ = ["ExperimentConfig", "Dataset", "Trainer", "load_config", "load_run", "open_dataset", "simulate", "train", "__version__"]
