"""Experiment configuration: typed, validated, loaded from YAML.

Each layer owns its section, in its own module here (this package sits below every layer, so any
layer may read any section):

* :mod:`~circuitgnn.config.simulation`: ``simulation`` (the simulate layer)
* :mod:`~circuitgnn.config.model`: ``model`` (the GNN)
* :mod:`~circuitgnn.config.training`: ``training`` (the loop, its regularisers, clustering, and the
  ``extensions`` beyond the paper's method, grouped in one place)
* :mod:`~circuitgnn.config.analysis`: ``analysis``
* :mod:`~circuitgnn.config.experiment`: the whole experiment and the checks that span sections

Every section is a pydantic model that rejects unknown keys; every field has a default and a
one-line description (shown by ``circuitgnn config-help``). Per-type parameters accept one number
(shared by all types, the default) or one value per type, so any ``n_types`` validates.

Conventions used everywhere in the package:

* ``W[i, j]`` is the weight of the connection **from neuron j to neuron i**
  (row = receiver, column = sender), so the summed input is ``W @ psi(x)``.
* Neuron types are integers ``0 .. n_types - 1``.
"""

from circuitgnn.config.analysis import AnalysisConfig
from circuitgnn.config.base import StrictModel
from circuitgnn.config.experiment import ExperimentConfig
from circuitgnn.config.io import config_from_dict, describe_fields, dump_config, format_validation_error, load_config
from circuitgnn.config.model import ModelConfig
from circuitgnn.config.simulation import ConnectivityConfig, NeuronConfig, ObservationConfig, SimulationConfig, StimulusConfig
from circuitgnn.config.training import (
    ClusteringConfig,
    Coefficient,
    ExtensionsConfig,
    RegularizationConfig,
    RolloutConfig,
    TrainingConfig,
    WarmStartConfig,
    WSolveConfig,
)

__all__ = [
    "AnalysisConfig",
    "ClusteringConfig",
    "Coefficient",
    "ConnectivityConfig",
    "ExperimentConfig",
    "ExtensionsConfig",
    "ModelConfig",
    "NeuronConfig",
    "ObservationConfig",
    "RegularizationConfig",
    "RolloutConfig",
    "SimulationConfig",
    "StimulusConfig",
    "StrictModel",
    "TrainingConfig",
    "WSolveConfig",
    "WarmStartConfig",
    "config_from_dict",
    "describe_fields",
    "dump_config",
    "format_validation_error",
    "load_config",
]
