"""circuitgnn: recover connectivity, neuron types, functions and hidden stimuli of neural assemblies
with an interpretable graph neural network.

Public API::

    from circuitgnn import CircuitGNN
    est = CircuitGNN().fit(x, dt=0.01)          # x: (frames, neurons) array
    est.connectivity_, est.types_, est.equations(), est.predict(x), est.simulate(x[0], 800)
    est.save("model.pt"); CircuitGNN.load("model.pt")

    from circuitgnn import read_recording, import_recording
    est = CircuitGNN(training={"derivative": "spline"}).fit(read_recording("session.nwb"))
    import_recording(["day1.npy", "day2.npy"], "datasets/mouse", rate=30.0)   # a dataset folder, one segment per file

    from circuitgnn import load_config, simulate, open_dataset
    cfg = load_config("configs/quick.yaml")
    simulate(cfg, "datasets/quick")             # ground truth to test on
    ds = open_dataset("datasets/quick")         # ds.x, ds.dxdt (memory-mapped), ds.truth
    CircuitGNN(cfg.model, cfg.training).fit_dataset(ds)
"""

from circuitgnn.config import ExperimentConfig, ModelConfig, TrainingConfig, load_config
from circuitgnn.data.dataset import Dataset, open_dataset
from circuitgnn.data.importer import import_recording
from circuitgnn.data.readers import Recording, read_recording
from circuitgnn.estimator import CircuitGNN, NotFittedError
from circuitgnn.simulate.run import simulate
from circuitgnn.train.run_folder import load_run
from circuitgnn.train.trainer import Trainer, train
from circuitgnn.version import __version__

__all__ = [
    "CircuitGNN",
    "Dataset",
    "ExperimentConfig",
    "ModelConfig",
    "NotFittedError",
    "Recording",
    "Trainer",
    "TrainingConfig",
    "__version__",
    "import_recording",
    "load_config",
    "load_run",
    "open_dataset",
    "read_recording",
    "simulate",
    "train",
]
