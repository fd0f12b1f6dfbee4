"""What happens at the end of an epoch, as named events run in order by the training loop.

The loop keeps one list, :data:`EPOCH_EVENTS`: clustering the neurons into types (which freezes
psi* and the embeddings for the next epochs), then the exact least-squares solve of W. Each event
says when it is due and what it did; an event records the epoch it ran in, so a run resumed after an
interrupt at the end of an epoch never runs it twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from circuitgnn.config import ExperimentConfig
from circuitgnn.data.dataset import evenly_spaced_frames
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.clustering import cluster_neurons, phi_profiles
from circuitgnn.train.data import FrameSource
from circuitgnn.train.wsolve import solve_connectivity


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    iteration: int = 0  # within the epoch
    global_iteration: int = 0
    train_seconds: float = 0.0
    frozen_until_epoch: int = 0  # psi* and embeddings frozen while epoch < this
    clusterings: list[dict[str, Any]] = field(default_factory=list)
    cluster_labels: list[int] | None = None  # the latest clustering's partition
    clustering_stable: bool = False  # extensions.stop_clustering_at_ari was reached: no more clusterings
    w_solves: int = 0  # exact least-squares solves of W so far (extensions.w_solve)
    warm_started: bool = False  # extensions.warm_start has set the model
    events_done: dict[str, int] = field(default_factory=dict)  # event name -> the last epoch it ran in


class LoopState(Protocol):
    """What an event may read and change: the training loop's state."""

    config: ExperimentConfig
    model: GNN
    counters: Counters
    source: FrameSource
    device: torch.device
    n_frames: int
    starts: torch.Tensor  # the frames training reads (held-out frames and incomplete rows excluded)


class ClusterTypes:
    """Group the neurons without labels, share embeddings within groups, refit phi* to the group
    profiles and freeze psi* and the embeddings for ``clustering.freeze_epochs`` epochs.

    With ``extensions.stop_clustering_at_ari``, a partition that repeats the previous one ends
    clustering instead (and freezes nothing).
    """

    name = "clustering"

    def due(self, s: LoopState) -> bool:
        cc = s.config.training.clustering
        e, n = s.counters.epoch, s.config.training.n_epochs
        return (
            cc.enabled
            and not s.counters.clustering_stable
            and isinstance(s.model.a, torch.nn.Parameter)
            and (e + 1) % cc.every_epochs == 0
            and e < n - cc.every_epochs
        )

    def __call__(self, s: LoopState) -> str:
        cc = s.config.training.clustering
        stop_at = s.config.training.extensions.stop_clustering_at_ari
        c, m = s.counters, s.model
        result = cluster_neurons(m, cc.features, cc.max_types, cc.profile_range, s.config.training.seed + c.epoch)
        labels = result.labels
        record: dict[str, Any] = {"epoch": c.epoch, "k": result.k, "silhouettes": result.silhouettes}
        if c.cluster_labels is not None and stop_at is not None:
            record["ari_with_previous"] = float(adjusted_rand_score(c.cluster_labels, labels))
            if record["ari_with_previous"] >= stop_at:
                c.clustering_stable = record["stable"] = True
                c.clusterings.append(record)
                return f"clustered the neurons into {result.k} groups (no labels used), the same groups as before: clustering stops"
        grid, prof = phi_profiles(m, cc.profile_range)
        with torch.no_grad():
            a = m.a.detach().cpu().numpy().copy()
            targets = np.empty_like(prof)
            for k in np.unique(labels):
                members = labels == k
                a[members] = np.median(a[members], axis=0)
                targets[members] = np.median(prof[members], axis=0)
            m.a.copy_(torch.as_tensor(a, device=s.device))
        if cc.refit_steps > 0:
            r = torch.as_tensor(grid, dtype=torch.float32, device=s.device)
            target = torch.as_tensor(targets, dtype=torch.float32, device=s.device).T  # (P, N)
            opt = torch.optim.Adam(m.phi.parameters(), lr=s.config.training.lr_mlp)
            for _ in range(cc.refit_steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((m.phi_of(r[:, None].expand(len(r), m.n), m.a.detach()) - target) ** 2)
                loss.backward()
                opt.step()
        # recorded only now: an interrupt above resumes into this clustering again, which must not
        # find its own partition as "the previous one"
        c.frozen_until_epoch = c.epoch + 1 + cc.freeze_epochs
        c.cluster_labels = labels.tolist()
        c.clusterings.append(record)
        return f"clustered the neurons into {result.k} groups (no labels used); psi* and embeddings frozen for {cc.freeze_epochs} epoch(s)"


class SolveConnectivity:
    """Replace W by the least-squares W given phi* and psi* on evenly spaced frames (``extensions.w_solve``)."""

    name = "w_solve"

    def due(self, s: LoopState) -> bool:
        ws = s.config.training.extensions.w_solve
        return ws is not None and (s.counters.epoch + 1) % ws.every_epochs == 0

    def __call__(self, s: LoopState) -> str:
        ws = s.config.training.extensions.w_solve
        assert ws is not None
        idx = s.starts[torch.from_numpy(evenly_spaced_frames(len(s.starts), ws.frames))]
        chunk = s.model.frames_per_pass()
        parts = (s.source.batch(idx[i : i + chunk]) for i in range(0, len(idx), chunk))
        batches = ((part[0], part[1]) for part in parts)
        try:
            w = solve_connectivity(s.model, batches, ws.ridge)
        except ValueError as err:
            raise CircuitGNNError(f"training.extensions.w_solve at epoch {s.counters.epoch}: {err}") from None
        with torch.no_grad():
            s.model.W.copy_(w)
        s.counters.w_solves += 1
        return f"W solved by least squares over {len(idx)} frames"


EPOCH_EVENTS = (ClusterTypes(), SolveConnectivity())


def run_epoch_events(s: LoopState) -> list[str]:
    """Run the events due at the end of the current epoch, each at most once per epoch; returns their messages."""
    messages = []
    for event in EPOCH_EVENTS:
        if s.counters.events_done.get(event.name) == s.counters.epoch or not event.due(s):
            continue
        messages.append(f"epoch {s.counters.epoch}: {event(s)}")
        s.counters.events_done[event.name] = s.counters.epoch
    return messages
