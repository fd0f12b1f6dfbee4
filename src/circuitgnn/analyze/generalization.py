"""Generalisation tests (spec 5.5): the learned functions driving a new network.

A new connectivity (another seed, a given filling factor) and new type proportions are drawn
with the dataset's own simulation config. The trained phi* and psi* are kept; each neuron
receives the learned embedding of a random neuron of its type, and W is the new true W times
the run's raw slope (the scale the model learned for W). The model's forecast is then scored
against the new network's noise-free trajectory. What is tested is the transfer of the learned
functions and embeddings to a new, known wiring, as in the paper's Supp. Figs. 5 and 6.
"""

from __future__ import annotations

import numpy as np
import torch

from circuitgnn.analyze.rollout import RolloutScore, rollout_model, score_rollout
from circuitgnn.config import config_from_dict
from circuitgnn.data.dataset import Dataset
from circuitgnn.model.gnn import GNN
from circuitgnn.simulate.replay import frame_trajectory, held_out_state
from circuitgnn.simulate.run import build_network
from circuitgnn.train.run_folder import TrainedRun

# (name, filling factor, type fractions) of the paper's two tests, for 4-type networks
PAPER_TESTS = (("S5", 0.25, (0.1, 0.2, 0.3, 0.4)), ("S6", 0.5, (0.6, 0.4, 0.0, 0.0)))


@torch.no_grad()
def generalization_test(
    run: TrainedRun, ds: Dataset, w_scale: float, filling_factor: float, type_fractions: tuple[float, ...], steps: int = 800, seed: int = 7
) -> RolloutScore:
    """Forecast score of the transferred model on a new network (see the module docstring)."""
    truth = ds.truth
    if truth is None:
        raise ValueError("a generalisation test needs the dataset's ground truth")
    data = dict(ds.meta["config"])
    sim = data["simulation"]
    sim["seed"] = int(sim["seed"]) + 1000 + seed
    sim["connectivity"] = {**sim["connectivity"], "filling_factor": filling_factor}
    sim["neurons"] = {**sim["neurons"], "type_fractions": list(type_fractions), "type_layout": "contiguous"}
    cfg = config_from_dict(data, source=f"{ds.path}/meta.json (generalisation test)")
    net = build_network(cfg.simulation, torch.device("cpu"))

    model = GNN(run.config.model, ds.n_neurons)
    model.phi.load_state_dict(run.model.phi.state_dict())
    model.psi.load_state_dict(run.model.psi.state_dict())
    rng = np.random.default_rng(seed)
    old_a = run.model.a.detach().cpu().numpy()
    new_a = np.stack([old_a[rng.choice(np.flatnonzero(truth.types == t))] for t in net.types])
    model.a.copy_(torch.as_tensor(new_a))
    model.W.copy_(torch.as_tensor(net.connectivity * w_scale))

    x0 = held_out_state(net.circuit, ds.dt / ds.every, seed)
    true = frame_trajectory(net.circuit, x0, steps, ds)
    pred = rollout_model(model, x0, steps, ds.dt, None, "none", *run.config.training.frame_integration())
    return score_rollout(pred, true)
