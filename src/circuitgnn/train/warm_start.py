"""Start the GNN from a spline fit of the same model (``training.extensions.warm_start``).

The GNN's functions are a handful of shared 1-D curves, and for given curves W is a linear least-squares
problem: :func:`circuitgnn.train.varpro.fit_functions` solves the whole model with spline curves in a few
exact solves. The GNN then starts from that fit instead of from random weights:

* W: the fit's W (zero diagonal; each neuron's own psi term is folded into its update function);
* the embeddings: the neurons' update curves phi_i on a grid over the bulk of the activity, projected on their
  first ``embedding_dim`` principal components (neurons with the same curve start at the same point, so the
  types are apart from the first step; no label is read); for a fit with groups (the forms below), each group's
  mean point;
* phi* and psi*: Adam steps fitting the MLPs to the spline curves at the recorded activity (embeddings held).

For the pair form psi*(x_j, a_i, a_j) one shared psi is first fitted; the neurons are split into too many groups by
K-means on its update curves (no label is read), and the fit is redone with one psi per pair of groups (receiver's,
sender's), from the shared psi. Each receiver then moves to the group whose psi explains its own drift best, groups
whose members lose little through each other's psi merge, and the fit is redone until the groups stay. psi* is then
distilled from the K x K curves.

For a transfer that depends on the sender's type, psi*(x_j, a_j), the fit is redone with one psi per group of senders
(groups from the update curves, see :func:`sender_fit`), and psi* is distilled from each sender's psi; left to
gradient steps from one shared psi, the GNN's psi* of the wider transfers stopped short of their widths (Supp. 13:
gamma 1.88 / 3.50 / 7.00 for 2 / 4 / 8).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from circuitgnn.config import WarmStartConfig
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.clustering import MIN_GROUP, kmeans_silhouette
from circuitgnn.train.varpro import FunctionFit, fit_functions, receiver_losses

_CURVE_POINTS = 32
_DISTILL_FRAMES = 8  # frames (x every neuron) per distillation step, as a training batch
_SAMPLE_FRAMES = 512  # frames the distillation draws its batches from
_DISTILL_RECEIVERS = 32  # receivers per distillation step of a pair form psi* (x every sender)
_GROUP_COMPONENTS = 5  # principal components of the update curves that the grouping of a pair form clusters
# After a grouped fit the neurons are grouped again (regroup) and the fit is redone, until the groups stay (adjusted
# Rand index) or this many fits are done
_GROUP_ROUNDS = 3
_SAME_GROUPS = 0.99
_FIRST_STEPS = 2  # Gauss-Newton steps of the first grouped fit, which serves only to regroup
_MERGE_RATIO = 2.0  # two groups whose members lose less than this factor through each other's psi are one
_QUANTILE_LIMIT = 1 << 24  # the most values torch.quantile takes


@dataclass(frozen=True)
class WarmStart:
    """What the warm start found: the function fit and the times of its two parts."""

    fit: FunctionFit
    fit_seconds: float
    distill_seconds: float
    distill_error: float  # relative mean squared error of phi* and psi* against the splines, at the end

    def as_dict(self) -> dict[str, float | bool]:
        residual = self.fit.history[-1] if self.fit.history else float("nan")
        return {
            "warm_start_fit_seconds": round(self.fit_seconds, 3),
            "warm_start_distill_seconds": round(self.distill_seconds, 3),
            "warm_start_residual": residual,
            "warm_start_gauss_newton_steps": len(self.fit.history) - 1,
            "warm_start_distill_error": self.distill_error,
            "warm_start_float64": self.fit.products == torch.float64,
            "warm_start_groups": 1 if self.fit.groups is None else len(self.fit.psi_coefficients),
        }


def phi_curves(fit: FunctionFit, x: torch.Tensor, n_points: int = _CURVE_POINTS) -> torch.Tensor:
    """Each neuron's update curve (N, n_points) on a grid over the 5th to 95th percentile of the activity ``x``.

    Outside a neuron's own range (its 2nd to 98th percentile) its spline has no data: there the curve continues
    linearly, with the slope over the last tenth of its range, so that neurons which visit different ranges
    compare by what their data say.
    """
    kw: dict[str, Any] = {"dtype": torch.float64, "device": x.device}
    sample = x.reshape(-1)[:: max(1, x.numel() // 1_000_000)].double()
    lo, hi = torch.quantile(sample, torch.tensor([0.05, 0.95], **kw)).tolist()
    grid = torch.linspace(lo, hi, n_points, **kw)[:, None].expand(n_points, x.shape[1])
    rows = x[:: max(1, len(x) // min(2000, _QUANTILE_LIMIT // x.shape[1]))].double()
    own_lo, own_hi = torch.quantile(rows, torch.tensor([0.02, 0.98], **kw), dim=0)
    inner = 0.1 * (own_hi - own_lo)
    edges = torch.stack([own_lo, own_lo + inner, own_hi - inner, own_hi])  # (4, N)
    at = fit.phi(edges)
    left_slope = (at[1] - at[0]) / inner.clamp_min(1e-12)
    right_slope = (at[3] - at[2]) / inner.clamp_min(1e-12)
    curves = fit.phi(grid.clamp(own_lo, own_hi))
    curves = curves + torch.where(grid < own_lo, left_slope * (grid - own_lo), torch.zeros_like(grid))
    curves = curves + torch.where(grid > own_hi, right_slope * (grid - own_hi), torch.zeros_like(grid))
    return curves.T


def curve_embeddings(curves: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` principal components of the curves (N, P), scaled so that the first has unit std."""
    curves = curves.cpu()
    centred = curves - curves.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    scores = centred @ v[:dim].T
    if scores.shape[1] < dim:  # fewer curve points than embedding dimensions
        scores = torch.cat([scores, torch.zeros(len(scores), dim - scores.shape[1], dtype=scores.dtype)], 1)
    return scores / scores[:, 0].std().clamp_min(1e-12)


def transfer_groups(fit: FunctionFit, x: torch.Tensor, max_groups: int, seed: int) -> torch.Tensor:
    """Starting groups of neurons (N,): K-means with K = ``max_groups`` (fewer for a small network, ``MIN_GROUP``
    neurons a group: a smaller one joins the nearest) on the first principal components of their update curves. On purpose too many: a misfit psi
    blurs the curves, so a K chosen by silhouette merges types (the paper's network: 2 groups for 4 types), and
    :func:`regroup` can merge groups after a fit but not split them."""
    features = curve_embeddings(phi_curves(fit, x), _GROUP_COMPONENTS).numpy()
    k = max(1, min(max_groups, len(features) // MIN_GROUP, len(np.unique(features.round(6), axis=0))))
    return _join_small(features, KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(features))


def _join_small(features: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """``labels`` (N,) with every group of fewer than ``MIN_GROUP`` neurons joined to the nearest other group's centre in
    ``features``, smallest first, relabelled 0 .. K-1. A group of a few neurons gives its psi too few senders or
    receivers: at 120 neurons K-means made groups of 1 to 6, whose psi came out near zero, with weights up to 140 that
    magnified any error of psi*."""
    labels = np.asarray(labels).copy()
    while True:
        sizes = np.bincount(labels)
        present = np.flatnonzero(sizes)
        small = present[sizes[present] < MIN_GROUP]
        if len(small) == 0 or len(present) == 1:
            break
        smallest = small[np.argmin(sizes[small])]
        kept = present[present != smallest]
        centres = np.stack([features[labels == g].mean(0) for g in kept])
        members = labels == smallest
        labels[members] = kept[((features[members, None, :] - centres[None]) ** 2).sum(-1).argmin(1)]
    return torch.as_tensor(np.unique(labels, return_inverse=True)[1]).long()


def regroup(fit: FunctionFit, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """New groups (N,) after a grouped fit, from each receiver's residual through every group's psi
    (:func:`~circuitgnn.train.varpro.receiver_losses`): each receiver moves to the group whose psi explains its drift
    best, when by more than the factor ``_MERGE_RATIO`` (a group left with fewer than ``MIN_GROUP`` neurons is dissolved
    the same way: its psi rests on too few receivers), then two groups merge when the members of each lose little (median factor below ``_MERGE_RATIO``)
    through the other's psi. On the paper's network the second best group's residual is a median 40 to 150 times the
    best when the groups are true types."""
    losses = receiver_losses(x, y, fit)
    assert fit.groups is not None
    current = fit.groups.cpu()
    rows = torch.arange(len(losses))
    while True:
        best = losses.argmin(1)
        # a receiver keeps its group unless another's psi explains its drift clearly better: a weakly driven receiver
        # fits every psi about equally, and moving it on a small difference put it with the wrong type
        stays = losses[rows, current] <= _MERGE_RATIO * losses[rows, best]
        preferred = torch.where(stays, current, best)
        sizes = torch.bincount(preferred, minlength=losses.shape[1])
        small = (sizes > 0) & (sizes < MIN_GROUP)
        if not bool(small.any()) or int((sizes >= MIN_GROUP).sum()) == 0:
            break
        losses[:, small] = float("inf")
    present = torch.unique(preferred).tolist()
    parent = {g: g for g in present}

    def root(g: int) -> int:
        while parent[g] != g:
            g = parent[g]
        return g

    def loss_ratio(g: int, h: int) -> float:
        """The median factor by which the members of g lose through h's psi."""
        members = losses[preferred == g]
        return float((members[:, h] / members[:, g].clamp_min(1e-300)).median())

    for i, g in enumerate(present):
        for h in present[i + 1 :]:
            if max(loss_ratio(g, h), loss_ratio(h, g)) < _MERGE_RATIO:
                parent[root(h)] = root(g)
    merged = torch.tensor([root(int(g)) for g in preferred])
    return torch.unique(merged, return_inverse=True)[1]


def grouped_fit(
    x: torch.Tensor,
    y: torch.Tensor,
    shared: FunctionFit,
    options: dict[str, Any],
    max_groups: int,
    seed: int,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[FunctionFit], None] | None = None,
) -> FunctionFit:
    """The fit with one psi per pair of groups, the groups found without labels from the ``shared`` fit (see the
    module docstring); ``options``: :func:`fit_functions`' settings; ``log`` sees every grouped fit. The first fit,
    on deliberately too many groups, only regroups the neurons, so it takes at most ``_FIRST_STEPS`` Gauss-Newton
    steps (at N = 1000 it was most of the warm start's time); the shared fit is returned when one group remains."""
    groups = transfer_groups(shared, x, max_groups, seed)
    fit = shared
    for round_ in range(_GROUP_ROUNDS):
        if int(groups.max()) == 0 or (should_stop is not None and should_stop()):
            break
        short = round_ == 0 and options["iterations"] > _FIRST_STEPS
        steps = {**options, "iterations": _FIRST_STEPS} if short else options
        fit = fit_functions(x, y, groups=groups, start=shared.psi_coefficients, **steps)
        if log is not None:
            log(fit)
        found = regroup(fit, x, y)
        if adjusted_rand_score(groups, found) >= _SAME_GROUPS:
            if short:  # the groups stand: the fit with every step
                fit = fit_functions(x, y, groups=groups, start=shared.psi_coefficients, **options)
                if log is not None:
                    log(fit)
            break
        groups = found
    return fit


def sender_fit(x: torch.Tensor, y: torch.Tensor, shared: FunctionFit, options: dict[str, Any], max_groups: int, seed: int) -> FunctionFit:
    """The fit with one psi per group of senders (psi depends on the sender's group only), the groups found without
    labels; ``options``: :func:`fit_functions`' settings. The ``shared`` fit's update curves are blurred by the wrong
    psi in each neuron's own term: K-means on them, with too many groups (:func:`transfer_groups`), serves a first fit
    of ``_FIRST_STEPS`` Gauss-Newton steps, whose sharper curves are then clustered with K chosen by silhouette
    (:func:`~circuitgnn.train.clustering.kmeans_silhouette`) for the full fit (Supp. 13: the 4 types exactly, after
    groups 98 % pure from the shared curves). The shared fit is returned when one group is all the data show."""
    groups = transfer_groups(shared, x, max_groups, seed)
    if int(groups.max()) == 0:
        return shared
    first = fit_functions(x, y, groups=groups, by_receiver=False, start=shared.psi_coefficients, **{**options, "iterations": _FIRST_STEPS})
    features = curve_embeddings(phi_curves(first, x), _GROUP_COMPONENTS).numpy()
    groups = _join_small(features, kmeans_silhouette(features, max_groups, seed).labels)
    if int(groups.max()) == 0:
        return shared
    return fit_functions(x, y, groups=groups, by_receiver=False, start=shared.psi_coefficients, **options)


def distill(
    model: GNN,
    fit: FunctionFit,
    x: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    lr: float = 1e-3,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Adam steps fitting phi* and psi* to the fit's curves at the recorded activity ``x`` (T, N), the embeddings held;
    returns the final relative mean squared error (phi's and psi's, added). ``should_stop`` ends the steps early."""
    device = model.a.device
    frames = x[torch.randperm(len(x), generator=generator)[:_SAMPLE_FRAMES]].to(device)
    phi_target = fit.phi(frames.double()).to(device, torch.float32)
    pair = model.psi_input == "x_j,a_i,a_j"
    psi_frames = frames
    if pair:  # (K, frames, N): the senders' psi as the receivers of each group see it
        # half the inputs spread evenly over the activity's range: the frames leave the tails, where the scoring reads
        # each pair's plateau, to a few values, and a small network's psi* was off there by up to 40 %
        sample = x.reshape(-1)[:: max(1, x.numel() // 100_000)].double()
        low, high = torch.quantile(sample, torch.tensor([0.005, 0.995], dtype=torch.float64)).tolist()
        spread = low + (high - low) * torch.rand(frames.shape, generator=generator, dtype=torch.float64)
        psi_frames = torch.cat([frames, spread.to(frames)])
        n_groups = 1 if fit.groups is None else len(fit.psi_coefficients)
        psi_target = torch.stack([fit.transfer(psi_frames.double(), g) for g in range(n_groups)]).to(device, torch.float32)
        groups = (torch.zeros(model.n, dtype=torch.long) if fit.groups is None else fit.groups.long()).to(device)
    else:  # each sender's own psi (one shared, or its group's)
        psi_target = fit.transfer(frames.double()).to(device, torch.float32)
    phi_var, psi_var = phi_target.var().clamp_min(1e-12), psi_target.var().clamp_min(1e-12)
    params = list(model.phi.parameters()) + list(model.psi.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    error = torch.tensor(float("nan"))
    for _ in range(steps):
        if should_stop is not None and should_stop():
            break
        rows = torch.randint(len(frames), (_DISTILL_FRAMES,), generator=generator).to(device)
        xb = frames[rows]
        phi_error = ((model.phi_of(xb, model.a) - phi_target[rows]) ** 2).mean() / phi_var
        if pair:
            receivers = torch.randint(model.n, (_DISTILL_RECEIVERS,), generator=generator).to(device)
            inputs = torch.randint(len(psi_frames), (_DISTILL_FRAMES,), generator=generator).to(device)
            psi = model.psi_of_pair(psi_frames[inputs], model.a[receivers], model.a)  # (frames, receivers, N)
            psi_error = ((psi - psi_target[groups[receivers]][:, inputs].transpose(0, 1)) ** 2).mean() / psi_var
        else:
            psi_error = ((model.psi_of_sender(xb, model.a) - psi_target[rows]) ** 2).mean() / psi_var
        error = phi_error + psi_error
        optimizer.zero_grad(set_to_none=True)
        error.backward()
        optimizer.step()
    return float(error.detach())


def warm_start(
    model: GNN,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: WarmStartConfig,
    seed: int,
    should_stop: Callable[[], bool] | None = None,
    deadline: float | None = None,
    max_groups: int = 10,
) -> WarmStart:
    """Fit the spline model to frames ``x`` (T, N) and their drift ``y``, and set the GNN's W, embeddings, phi* and psi*
    from it (see the module docstring). ``should_stop`` (e.g. a Ctrl-C seen) and ``deadline`` (a
    ``time.perf_counter()`` value) cut the Gauss-Newton steps short; the distillation (``distill_steps`` Adam steps,
    seconds) is cut only by ``should_stop``: without it phi* and psi* would not match the W just set. ``max_groups``: the
    most groups of neurons a pair form's fit tells apart."""
    if model.cfg.low_rank is not None or model.masked:
        raise CircuitGNNError("training.extensions.warm_start needs a dense, unmasked W")
    start = time.perf_counter()
    options: dict[str, Any] = {
        "n_psi": cfg.psi_basis,
        "n_phi": cfg.phi_basis,
        "iterations": cfg.steps,
        "receivers": cfg.receivers,
        "seed": seed,
        "dtype": torch.float32,
        "deadline": deadline,
        "should_stop": should_stop,
    }
    fit = fit_functions(x, y, **options)
    if model.psi_input == "x_j,a_i,a_j":
        fit = grouped_fit(x, y, fit, options, max_groups, seed, should_stop)
    elif model.psi_input == "x_j,a_j" and not (should_stop is not None and should_stop()):
        fit = sender_fit(x, y, fit, options, max_groups, seed)
    fit_seconds = time.perf_counter() - start
    with torch.no_grad():
        model.W.copy_(fit.connectivity.to(model.W))
        if isinstance(model.a, torch.nn.Parameter):
            embeddings = curve_embeddings(phi_curves(fit, x), model.a.shape[1])
            if fit.groups is not None:  # one point per group: psi* is told one function per group (or pair of groups)
                groups = fit.groups.cpu()
                means = torch.zeros(int(groups.max()) + 1, embeddings.shape[1], dtype=embeddings.dtype).index_add_(0, groups, embeddings)
                embeddings = (means / torch.bincount(groups).unsqueeze(1))[groups]
            model.a.copy_(embeddings.to(model.a))
    start = time.perf_counter()
    error = distill(model, fit, x, cfg.distill_steps, torch.Generator().manual_seed(seed), should_stop=should_stop)
    return WarmStart(fit, fit_seconds, time.perf_counter() - start, error)
