"""How far to trust each inferred connection: intervals for W from one fit or from an ensemble of fits,
diagnostics that need no ground truth, and, on simulated data, how well the intervals are calibrated.

Scale. Only W psi* is determined by the data: (cW)(psi*/c) predicts the same. Every W here is therefore
given with psi*'s scale moved into it: ``W_ij * plateau_j``, where ``plateau_j`` is psi*'s median value
over the top of the activity range (as the corrected W of the metrics, but without the gain, which a
recording does not give). Two fits are then comparable entry by entry, up to an overall scale that the plateau
fixes only as well as psi* is learned: an ensemble divides each member's W by it (:func:`member_scales`).

One fit (:func:`least_squares_confidence`). With the learned psi* held fixed, W is a linear least-squares solution:
row i regresses receiver i's drift less phi* on the senders' psi* values (the package's W solve) and, by default, on
its own terms as well: psi*(x_i) and 1, z_i, ..., z_i^p (z_i its standardised activity, p = 3), which correct phi*
where it was learned wrong. A misfit of phi* is a function of x_i, and x_i follows the receiver's inputs, so that left
in the residual it is read as couplings; on issue 18's benchmark networks the correction halves W's error (see
docs/confidence.md). Row i's covariance is sigma_i^2 (G_i^-1) / T_eff,i, with G_i the senders' Gram matrix less what
the own terms explain (by Woodbury from one inverse of G; without the own terms, G^-1 restricted to w_ii = 0),
sigma_i^2 the residual variance of receiver i and T_eff,i = T / kappa_i the effective number of frames: consecutive
frames are not independent, and kappa_i = 1 + 2 sum_k (1 - k / (K + 1)) rho_e,i(k) rho_f(k) (Bartlett weights over the
lags k <= K where the senders' signals stay correlated) accounts for the autocorrelation of the residuals
(rho_e,i) and of the regressors (rho_f, pooled over senders). What this does not see: the error of psi* and what
of phi*'s error the own terms do not span, which an ensemble of fits does.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats

from circuitgnn.analyze.metrics import edge_auc, linear_fit, psi_plateau
from circuitgnn.data.activity import Activity
from circuitgnn.device import memory_bytes
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.wsolve import constrained_solve, gram_sums


@dataclass(frozen=True)
class EdgeConfidence:
    """Per-connection estimate and interval, W[i, j] from sender j to receiver i, with psi*'s scale moved into W.

    ``lower`` and ``upper`` bound the nominal ``level`` interval; ``sign_agreement`` (ensembles) is the
    fraction of members whose weight has the sign of the mean. The diagonal is not estimated (NaN sd).
    ``dof``: the degrees of freedom of each ``sd`` (K - 1 for an ensemble of K fits; infinite for least squares).
    ``test``: where set, the confidence whose estimate the tests of "is this weight zero?" read (:attr:`z`,
    :attr:`lfdr`, :attr:`lfsr`, :meth:`confident`) instead of ``mean``: the members' least-squares W, which an L1
    penalty on the fit has not shrunk toward zero (:func:`combined_confidence`, ``test_on``). ``null_width``: after
    :meth:`with_empirical_null`, the empirical null's width (sd and intervals were widened by max(1, null_width)).
    ``scales`` (ensembles): the overall scale each member's W was divided by (:func:`member_scales`; ones when not aligned).
    """

    mean: np.ndarray
    sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    method: str
    seconds: float
    sign_agreement: np.ndarray | None = None
    dof: float = float("inf")
    test: EdgeConfidence | None = None
    null_width: float | None = None
    scales: np.ndarray | None = None

    @property
    def z(self) -> np.ndarray:
        """|mean| / sd: how many standard errors each weight lies from zero (0 on the diagonal), the ranking of
        :meth:`confident`. An sd with few degrees of freedom (an ensemble of a few fits) is moderated first
        (:func:`moderated_variance`): alone, it is too noisy to rank by. That of ``test`` where set."""
        return self.test.z if self.test is not None else _ratio(self.mean, self.moderated_sd)

    @cached_property
    def moderated_sd(self) -> np.ndarray:
        """``sd`` moderated by empirical Bayes (:func:`moderated_variance`) when it has finitely many degrees of freedom
        (an ensemble's); ``sd`` itself otherwise."""
        return self.sd if not np.isfinite(self.dof) else np.sqrt(moderated_variance(self.sd**2, self.dof)[0])

    @property
    def z_raw(self) -> np.ndarray:
        """|mean| / sd without moderation (that of ``test`` where set)."""
        return self.test.z_raw if self.test is not None else _ratio(self.mean, self.sd)

    @property
    def standard_error(self) -> np.ndarray:
        """The standard error of each ``mean``: ``sd`` for least squares; for an ensemble of K fits the members'
        moderated sd (:func:`moderated_variance`) over sqrt(K)."""
        if not np.isfinite(self.dof):
            return self.sd
        return self.moderated_sd / np.sqrt(self.dof + 1)

    @cached_property
    def shrinkage(self) -> Shrinkage:
        """:func:`shrink` of ``mean`` and its :attr:`standard_error`: each weight's lfdr (the ranking of
        :meth:`confident`), lfsr and shrunken mean; that of ``test`` where set."""
        return self.test.shrinkage if self.test is not None else shrink(self.mean, self.standard_error)

    @property
    def lfdr(self) -> np.ndarray:
        """The local false discovery rate of each weight, the posterior probability that it is zero (1 on the diagonal)."""
        return np.nan_to_num(self.shrinkage.lfdr, nan=1.0)

    @property
    def p_nonzero(self) -> np.ndarray:
        """The posterior probability that each weight is not zero, 1 - lfdr (0 on the diagonal). It weighs a weight's
        size and its uncertainty together, where |mean| / sd ignores the size and |mean| the uncertainty."""
        return 1.0 - self.lfdr

    @property
    def lfsr(self) -> np.ndarray:
        """The local false sign rate of each weight (1 on the diagonal): the posterior probability that its sign is
        not that of ``mean``, zero counted as wrong."""
        return np.nan_to_num(self.shrinkage.lfsr, nan=1.0)

    def with_empirical_null(self) -> EdgeConfidence:
        """This confidence with every sd and interval widened by the width of the empirical null where it exceeds 1.

        For a sparse network only. There most connections are absent, so that the bulk of mean / standard error
        should spread like a standard normal; its spread (:func:`empirical_null_width`, Efron's empirical null)
        measures how much error the standard errors miss, e.g. an ensemble's shared misfit that neither the members'
        spread nor their least squares see. On a dense W the bulk is signal, and the widening would be meaningless: a
        warning says so when the width exceeds 10 (measured on the first replicate of docs/confidence.md: 0.43 to 4.0 on
        the sparse 10 % network, one fits and ensembles; 29 to 97 on the dense Fig. 2 and high-noise networks). ``test``, where set, is widened by its own
        empirical null."""
        off = ~np.eye(self.mean.shape[0], dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(self.mean[off]) / self.standard_error[off]
        width = empirical_null_width(z)
        if width > 10:
            warnings.warn(
                f"the empirical null is {width:.3g} standard errors wide: most connections look non-zero, and the widening "
                "assumes a sparse network (most connections absent)",
                UserWarning,
                stacklevel=2,
            )
        factor = max(1.0, width)
        half = (self.upper - self.mean) * factor
        return dataclasses.replace(
            self,
            sd=self.sd * factor,
            lower=self.mean - half,
            upper=self.mean + half,
            method=f"{self.method}, empirical null x{factor:.3g}",
            test=None if self.test is None else self.test.with_empirical_null(),
            null_width=width,
        )

    def nonzero(self, max_lfdr: float = 0.05) -> np.ndarray:
        """(N, N) booleans: the connections whose posterior probability of being zero (:attr:`lfdr`) is below
        ``max_lfdr``, those :meth:`confident` lists. The expected share of absent connections among them is the mean
        of their lfdr, at most ``max_lfdr``; the intervals that exclude zero would take in 10 % of the absent
        connections at the 90 % level, most of them on a sparse network."""
        if not 0 < max_lfdr <= 1:
            raise CircuitGNNError(f"max_lfdr must be in (0, 1], got {max_lfdr}")
        chosen = self.lfdr < max_lfdr
        np.fill_diagonal(chosen, False)
        return chosen

    def confident(self, limit: int | None = None, max_lfdr: float = 0.05) -> list[dict[str, float]]:
        """The connections of :meth:`nonzero`, the most probably non-zero first (then by z): receiver, sender, weight,
        interval, z, p_nonzero, lfsr."""
        i, j = np.nonzero(self.nonzero(max_lfdr))
        z, lfdr, lfsr = self.z[i, j], self.lfdr[i, j], self.lfsr[i, j]
        order = np.lexsort((-z, lfdr))[:limit]
        return [
            {
                "receiver": int(i[k]),
                "sender": int(j[k]),
                "weight": float(self.mean[i[k], j[k]]),
                "lower": float(self.lower[i[k], j[k]]),
                "upper": float(self.upper[i[k], j[k]]),
                "z": float(z[k]),
                "p_nonzero": float(1.0 - lfdr[k]),
                "lfsr": float(lfsr[k]),
            }
            for k in order
        ]


def empirical_null_width(z: np.ndarray, window: float = 2.0, iterations: int = 100) -> float:
    """The sd of the null component of z-scores that are mostly null (Efron's empirical null), from their centre.

    The sd sigma of the zero-mean normal whose second moment over abs(z) < ``window`` sigma matches that of the
    scores there (a truncated normal's: sigma^2 (1 - 2 a phi(a) / (2 Phi(a) - 1)), a = ``window``), found by fixed
    point from median(abs(z)) / 0.6745. Scores far from zero, the non-null ones, stay outside the window, where they
    widen the median: by 13 % when 10 % of the scores lie far out (the median of the mixture is the null's 56th
    percentile). NaN entries are ignored."""
    values = np.abs(np.asarray(z, dtype=np.float64))
    values = values[np.isfinite(values)]
    if len(values) < 10:
        raise CircuitGNNError(f"the empirical null needs at least 10 finite scores, got {len(values)}")
    sigma = float(np.median(values) / stats.norm.ppf(0.75))
    if sigma == 0:
        return 0.0
    kept = 1 - 2 * window * stats.norm.pdf(window) / (2 * stats.norm.cdf(window) - 1)  # E[z^2 | |z| < a] for sigma = 1
    for _ in range(iterations):
        inside = values[values < window * sigma]
        found = float(np.sqrt(np.mean(inside**2) / kept))
        done = abs(found - sigma) <= 1e-9 * sigma
        sigma = found
        if done:
            break
    return sigma


def _ratio(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(mean) / sd
    return np.nan_to_num(out, nan=0.0, posinf=np.finfo(np.float64).max)


def moderated_variance(var: np.ndarray, dof: float) -> tuple[np.ndarray, float, float]:
    """Empirical-Bayes moderated variances (Smyth 2004, the moderated t of limma): each ``var`` (``dof`` degrees of
    freedom) is pulled toward a prior s0^2 with d0 prior degrees of freedom, both estimated from the spread of
    log ``var`` over the finite entries: (d0 s0^2 + dof var) / (d0 + dof). Returns (moderated, d0, s0^2); d0 is
    infinite (every variance replaced by s0^2) when the variances spread no more than sampling alone explains."""
    from scipy.optimize import brentq
    from scipy.special import digamma, polygamma

    finite = np.isfinite(var) & (var > 0)
    if finite.sum() < 3:
        return var, 0.0, float("nan")
    e = np.log(var[finite]) - digamma(dof / 2) + np.log(dof / 2)
    excess = float(np.var(e) - polygamma(1, dof / 2))
    if excess <= 0:
        s0 = float(np.exp(e.mean()))
        return np.where(np.isnan(var), np.nan, s0), float("inf"), s0
    d0 = 2.0 * brentq(lambda h: float(polygamma(1, h)) - excess, 1e-8, 1e8)
    s0 = float(np.exp(e.mean() + digamma(d0 / 2) - np.log(d0 / 2)))
    return (d0 * s0 + dof * var) / (d0 + dof), d0, s0


_PRIOR_VALUES = 200_000  # estimates (evenly spaced) that the prior's weights are fitted to; all are then scored
_PRIOR_WIDTHS = 20


@dataclass(frozen=True)
class Shrinkage:
    """What :func:`shrink` found for each estimate: ``lfdr`` (the posterior probability that the true value is 0),
    ``lfsr`` (the local false sign rate: the posterior probability that its sign is not the estimate's, a zero
    counted as wrong), ``posterior_mean``; and ``null_weight``, the prior's weight at zero."""

    lfdr: np.ndarray
    lfsr: np.ndarray
    posterior_mean: np.ndarray
    null_weight: float


def shrink(mean: np.ndarray, se: np.ndarray, iterations: int = 200) -> Shrinkage:
    """Empirical-Bayes shrinkage of estimates ``mean`` with standard errors ``se`` (arrays of one shape; NaN where
    either is not finite), as adaptive shrinkage has it (Stephens 2017, ashr): a prior on all the true values, a
    point mass at 0 and zero-mean normals of widths from a tenth of the smallest se to twice the largest size the
    estimates call for, mixed with weights fitted by EM to the estimates (each seen as its true value plus normal
    error of its se); then each estimate's posterior.

    Normals narrower than the se look like the point mass, so the data split the weight near zero between them: the
    lfdr (and ``null_weight``) come out smaller than the true fraction of zeros, while the ranking by lfdr stays the
    best of those measured (tests/test_confidence.py; docs/confidence.md). The lfsr does not depend on that split:
    the sign of a value that small stays uncertain either way (Stephens 2017 recommends it for that reason)."""
    mean, se = np.asarray(mean, dtype=np.float64), np.asarray(se, dtype=np.float64)
    if mean.shape != se.shape:
        raise CircuitGNNError(f"mean and se must have one shape, got {mean.shape} and {se.shape}")
    lfdr, lfsr, posterior_mean = (np.full(mean.shape, np.nan) for _ in range(3))
    ok = np.isfinite(mean) & np.isfinite(se) & (se > 0)
    if ok.sum() < 2:
        return Shrinkage(lfdr, lfsr, posterior_mean, float("nan"))
    b, s = mean[ok], se[ok]
    smallest = float(np.quantile(s, 0.01)) / 10
    largest = 2 * float(np.sqrt(max(np.max(b**2 - s**2), smallest**2)))
    widths = np.concatenate([[0.0], np.geomspace(smallest, max(largest, 2 * smallest), _PRIOR_WIDTHS)])

    def likelihood(b: np.ndarray, s: np.ndarray) -> np.ndarray:
        return stats.norm.pdf(b[:, None], 0.0, np.sqrt(widths[None] ** 2 + s[:, None] ** 2))

    step = max(1, len(b) // _PRIOR_VALUES)
    fit = likelihood(b[::step], s[::step])
    weights = np.full(len(widths), 0.5 / (len(widths) - 1))
    weights[0] = 0.5
    for _ in range(iterations):
        posterior = fit * weights
        posterior /= posterior.sum(1, keepdims=True) + 1e-300
        weights = posterior.mean(0)
    parts = {"lfdr": np.empty(len(b)), "lfsr": np.empty(len(b)), "mean": np.empty(len(b))}
    for a in range(0, len(b), _PRIOR_VALUES):
        bb, ss = b[a : a + _PRIOR_VALUES, None], s[a : a + _PRIOR_VALUES, None]
        post = likelihood(bb[:, 0], ss[:, 0]) * weights
        post /= post.sum(1, keepdims=True) + 1e-300
        shrinkage = widths[None] ** 2 / (widths[None] ** 2 + ss**2)  # per component: posterior mean b * shrinkage
        centre, spread = bb * shrinkage, np.sqrt(shrinkage) * ss
        with np.errstate(divide="ignore", invalid="ignore"):
            below = np.where(spread > 0, stats.norm.cdf(-centre / spread), 0.0)  # P(w < 0 | component); 0 for the point mass
        negative, positive = (post * below).sum(1), (post * (spread > 0) * (1 - below)).sum(1)
        parts["lfdr"][a : a + _PRIOR_VALUES] = post[:, 0]
        parts["lfsr"][a : a + _PRIOR_VALUES] = post[:, 0] + np.minimum(negative, positive)
        parts["mean"][a : a + _PRIOR_VALUES] = (post * centre).sum(1)
    lfdr[ok], lfsr[ok], posterior_mean[ok] = parts["lfdr"], parts["lfsr"], parts["mean"]
    return Shrinkage(lfdr, lfsr, posterior_mean, float(weights[0]))


def check_level(level: float) -> float:
    if not isinstance(level, int | float) or isinstance(level, bool) or not 0 < level < 1:
        raise CircuitGNNError(f"level must be a fraction in (0, 1), e.g. 0.9 for 90 % intervals, got {level!r}")
    return float(level)


def _check_model(model: GNN) -> None:
    if model.psi_input == "x_j,a_i,a_j" or model.cfg.low_rank is not None or model.masked:
        raise CircuitGNNError("per-edge intervals from one fit need a dense W and a sender-only psi* (psi_input x_j or x_j,a_j)")


def _check_input(model: GNN, extra: np.ndarray | None) -> None:
    """Least squares need an additive input's values and cannot take a multiplicative one."""
    kind = model.cfg.external_input
    if kind == "field":  # it scales each receiver's messages: a Gram matrix per receiver (N of them, N x N each)
        raise CircuitGNNError(
            "per-edge intervals from one fit do not take a multiplicative input into account (model.external_input is "
            "'field'); fit an ensemble and read its prediction intervals instead"
        )
    if kind != "none" and extra is None:  # its term would be read as part of the residual
        raise CircuitGNNError(
            f"per-edge intervals of a model fitted with an input (model.external_input is {kind!r}) need the input's values "
            "at each frame: CircuitGNN.edge_confidence(x, inputs=...) for a known input, frames=... for a learned one"
        )


@torch.no_grad()
def plateau_aligned(model: GNN, xnorm: float) -> np.ndarray:
    """The learned W with psi*'s scale moved into it: W_ij * plateau_j (see the module docstring)."""
    plateau = psi_plateau(model, xnorm)
    return model.connectivity().detach().cpu().numpy().astype(np.float64) * plateau[None, :]


def _parts(activity: Activity, dxdt: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous training parts whose frames are complete (activity and drift): the frames the fit may read."""
    out = []
    for a, b in activity.train_bounds():
        ok = np.isfinite(np.asarray(activity.x[a:b])).all(axis=1) & np.isfinite(dxdt[a:b]).all(axis=1)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
        out += [(a + int(s), a + int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True) if e - s >= 2]
    if not out:
        raise CircuitGNNError("no complete training frames with a drift to estimate W from")
    return out


def _chunks(
    model: GNN, activity: Activity, dxdt: np.ndarray, parts: Sequence[tuple[int, int]], scale: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(activity x, aligned sender signals f, targets r = dx/dt - phi*) over the parts, in chunks of frames."""
    dev = model.a.device
    rows = model.frames_per_pass()
    for a, b in parts:
        for s in range(a, b, rows):
            x = torch.as_tensor(np.array(activity.x[s : min(s + rows, b)]), device=dev)
            y = torch.as_tensor(np.array(dxdt[s : min(s + rows, b)]), device=dev)
            yield x, model.psi_of_sender(x, model.a) / scale, y - model.phi_of(x, model.a)


def _autocorrelation(series: np.ndarray, parts: Sequence[tuple[int, int]], max_lag: int) -> np.ndarray:
    """Autocorrelation of each column of ``series`` (frames of the parts joined) at lags 0..max_lag, within parts."""
    lengths = [b - a for a, b in parts]
    starts = np.cumsum([0, *lengths[:-1]])
    centred = series - series.mean(axis=0)
    out = np.zeros((max_lag + 1, series.shape[1]))
    for s, n in zip(starts, lengths, strict=True):
        z = centred[s : s + n]
        for k in range(min(max_lag, n - 1) + 1):
            out[k] += np.einsum("tn,tn->n", z[: n - k], z[k:])
    return out / np.maximum(out[0], 1e-300)


class _OwnTerms:
    """Each receiver's own terms, fitted with its row of W as a correction of phi*: psi*(x_i) (W's diagonal, left free)
    and 1, z_i, ..., z_i^degree (z_i its standardised activity). Accumulates, over chunks of frames, the frame sums
    that the solve needs beside the senders' Gram matrix: C[k] = F^T z^k (sender, receiver; for k = 0 the senders'
    sums, the same for every receiver), B_i = sum z_i^k z_i^l and d_i = sum z_i^k r_i."""

    def __init__(self, activity: Activity, parts: Sequence[tuple[int, int]], degree: int, device: torch.device):
        frames = np.concatenate([np.arange(a, b) for a, b in parts])
        sample = np.asarray(activity.x[frames[np.linspace(0, len(frames) - 1, min(len(frames), 10000)).astype(np.int64)]], np.float64)
        self.centre = torch.as_tensor(sample.mean(axis=0), device=device)
        self.spread = torch.as_tensor(np.maximum(sample.std(axis=0), 1e-12), device=device)
        self.degree = degree
        n = activity.n_neurons
        self.f_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.powers = torch.zeros((n, n * degree), dtype=torch.float64, device=device)  # [sender, receiver * degree + k - 1]
        self.bb = torch.zeros((n, degree + 1, degree + 1), dtype=torch.float64, device=device)
        self.d = torch.zeros((n, degree + 1), dtype=torch.float64, device=device)
        self.count = 0

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, degree + 1): 1, z, ..., z^degree of each neuron's standardised activity."""
        z = (x.double() - self.centre) / self.spread
        return torch.stack([z**k for k in range(self.degree + 1)], dim=-1)

    def add(self, x: torch.Tensor, f: torch.Tensor, r: torch.Tensor) -> None:
        u = self.basis(x)
        fd, rd = f.double(), r.double()
        self.f_sum += fd.sum(dim=0)
        if self.degree:
            self.powers.addmm_(fd.T, u[..., 1:].reshape(len(u), -1))  # every receiver's powers in one product
        self.bb += torch.einsum("tnk,tnl->nkl", u, u)
        self.d += torch.einsum("tnk,tn->nk", u, rd)
        self.count += len(f)

    def solve(self, g: torch.Tensor, b: torch.Tensor, ridge: float, block: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W with its diagonal, the own terms' coefficients (N, degree + 1), the diagonal of each row's covariance
        factor (N, N)) for the frame means ``g`` = F^T F / T and ``b`` = F^T R / T. Row i: the senders' Gram matrix less
        what the own terms explain, G_i = G - C_i B_i^-1 C_i^T, by Woodbury from one inverse H = G^-1:
        G_i^-1 = H + H C_i M_i^-1 C_i^T H, M_i = B_i - C_i^T H C_i."""
        gi = g.clone()
        gi.diagonal().add_(ridge * float(torch.diagonal(gi).mean()))
        h = torch.cholesky_inverse(torch.linalg.cholesky(gi))
        n = len(g)
        ones = (self.f_sum / self.count)[:, None, None].expand(n, n, 1)
        c = torch.cat([ones, (self.powers / self.count).view(n, n, self.degree)], dim=2)  # (sender, receiver, own term)
        bb, d = self.bb / self.count, self.d / self.count
        w = torch.empty_like(g)
        coef = torch.empty_like(d)
        factor = torch.empty_like(g)
        for lo in range(0, n, block):
            rows = slice(lo, min(lo + block, n))
            ci = c[:, rows].permute(1, 0, 2)  # (receivers, senders, own terms)
            hc = torch.einsum("jl,ilk->ijk", h, ci)
            b_inv = torch.linalg.pinv(bb[rows], hermitian=True)
            bhat = b[:, rows].T - torch.einsum("ijk,ikl,il->ij", ci, b_inv, d[rows])
            m_inv = torch.linalg.pinv(bb[rows] - torch.einsum("ijk,ijl->ikl", ci, hc), hermitian=True)
            w[rows] = bhat @ h + torch.einsum("ijk,ikl,il->ij", hc, m_inv, torch.einsum("ijk,ij->ik", hc, bhat))
            coef[rows] = torch.einsum("ikl,il->ik", b_inv, d[rows] - torch.einsum("ijk,ij->ik", ci, w[rows]))
            factor[rows] = torch.diagonal(h)[None, :] + torch.einsum("ijk,ikl,ijl->ij", hc, m_inv, hc)
        return w, coef, factor


@torch.no_grad()
def least_squares_confidence(
    model: GNN,
    activity: Activity,
    xnorm: float,
    dxdt: np.ndarray,
    level: float = 0.9,
    max_lag: int = 200,
    ridge: float = 1e-6,
    extra: np.ndarray | None = None,
    own_degree: int | None = 3,
) -> EdgeConfidence:
    """Per-edge intervals from one fit: least-squares W given the learned phi* and psi*, and its standard errors
    corrected for the autocorrelation of the frames (see the module docstring). ``dxdt`` (T, N): the drift the
    fit used (recorded or estimated; NaN marks a missing value). ``extra`` (T, N): the additive input at each frame,
    needed for a model fitted with one (removed from the drift before W is solved); a multiplicative input is refused.

    ``own_degree``: each receiver's row is solved together with its own terms, psi*(x_i) and a polynomial of this
    degree in its activity, which correct phi* where it is learned wrong (a misfit of phi* that follows the inputs would
    otherwise be read as couplings); None: phi* as learned, W's diagonal held at zero (see the module docstring)."""
    start = time.perf_counter()
    level = check_level(level)
    _check_model(model)
    _check_input(model, extra)
    if own_degree is not None and (not isinstance(own_degree, int) or isinstance(own_degree, bool) or own_degree < 0):
        raise CircuitGNNError(
            f"own_degree must be None or an integer >= 0 (the degree of the receivers' own polynomial), got {own_degree!r}"
        )
    if extra is not None:
        if np.shape(extra) != np.shape(dxdt):
            raise CircuitGNNError(f"the input has shape {np.shape(extra)}, the drift {np.shape(dxdt)}: one value per frame and neuron")
        dxdt = np.asarray(dxdt, dtype=np.float32) - np.asarray(extra, dtype=np.float32)
    parts = _parts(activity, dxdt)
    scale = torch.as_tensor(psi_plateau(model, xnorm), dtype=torch.float32, device=model.a.device)
    n_frames = sum(e - s for s, e in parts)
    n = activity.n_neurons
    dev = model.a.device
    budget = memory_bytes(dev)
    own = None if own_degree is None else _OwnTerms(activity, parts, own_degree, dev)
    # The functions' values are most of the time (two MLPs on every frame and neuron): kept from the first pass for the
    # second, with the activity, in preallocated (T, N) tensors where they take at most a quarter of the device's memory
    # (thousands of small kept pieces fragmented the heap: once 24 GB for N = 1000), computed again otherwise.
    count = 2 if own is None else 3  # the activity too where the own terms need it again
    kept = (
        [torch.empty((n_frames, n), dtype=torch.float32, device=dev) for _ in range(count)]
        if budget and 4 * count * n_frames * n <= budget / 4
        else None
    )

    def keeping() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        at = 0
        for x, f, r in _chunks(model, activity, dxdt, parts, scale):
            if kept is not None:
                for tensor, value in zip(kept, (f, r, x), strict=False):
                    tensor[at : at + len(f)] = value
            if own is not None:
                own.add(x, f, r)
            at += len(f)
            yield f, r

    g, b = gram_sums(keeping())
    if own is None:
        w = constrained_solve(g.clone(), b, ridge)  # rows: receivers
        coef = None
    else:
        w, coef, factor = own.solve(g, b, ridge)
    step = max(1, (4 << 20) // (8 * n))  # float64 blocks of about 4 MiB (see GNN.frames_per_pass)
    second = (
        ((kept[-1][s : s + step], kept[0][s : s + step], kept[1][s : s + step]) for s in range(0, n_frames, step))
        if kept is not None
        else _chunks(model, activity, dxdt, parts, scale)
    )  # (x, f, r); x is only read with the own terms (kept[-1] is then the activity)
    res = np.empty((n_frames, n))
    pooled = np.empty((n_frames, 1))  # the senders' pooled signal (its lags decay like theirs)
    at = 0
    for x, f, r in second:
        fd = f.double()
        fitted = fd @ w.T
        if own is not None and coef is not None:
            fitted += (own.basis(x) * coef[None]).sum(dim=-1)
        res[at : at + len(f)] = (r.double() - fitted).cpu().numpy()
        pooled[at : at + len(f)] = fd.mean(dim=1, keepdim=True).cpu().numpy()
        at += len(f)
    sigma2 = (res**2).sum(axis=0) / max(1, n_frames - n - (0 if own_degree is None else own_degree + 1))
    lag = min(max_lag, max(stop - begin for begin, stop in parts) - 1)
    rho_f = _autocorrelation(pooled, parts, lag)[:, 0]
    below = np.flatnonzero(rho_f < 0.05)
    k = int(below[0]) if len(below) else lag  # the lags over which the regressors stay correlated
    rho_e = _autocorrelation(res, parts, k)
    bartlett = 1 - np.arange(1, k + 1) / (k + 1)
    kappa = np.maximum(1.0, 1 + 2 * (bartlett[:, None] * rho_e[1 : k + 1] * rho_f[1 : k + 1, None]).sum(axis=0))
    if own is None:
        gi = g.clone()
        gi.diagonal().add_(ridge * float(torch.diagonal(gi).mean()))
        h = torch.cholesky_inverse(torch.linalg.cholesky(gi)).cpu().numpy()
        hd = np.diag(h)
        cov = hd[None, :] - h**2 / hd[:, None]  # row i: w_i with w_ii = 0
    else:
        cov = factor.cpu().numpy()
    var = sigma2[:, None] * kappa[:, None] * cov / n_frames
    sd = np.sqrt(np.maximum(var, 0))
    np.fill_diagonal(sd, np.nan)
    mean = w.cpu().numpy()
    np.fill_diagonal(mean, 0.0)  # with the own terms, the diagonal is psi*(x_i)'s part of the corrected phi*
    half = stats.norm.ppf(0.5 + level / 2) * sd
    return EdgeConfidence(mean, sd, mean - half, mean + half, level, "least_squares", time.perf_counter() - start)


def member_scales(weights: Sequence[np.ndarray], iterations: int = 20) -> np.ndarray:
    """The overall scale c_k of each fit's W against the others' (geometric mean 1): W_k ~ c_k mean_l(W_l / c_l),
    by least squares off the diagonal.

    Only W psi* is determined by the data, and each fit's psi* plateau (:func:`plateau_aligned`) anchors its scale only
    as well as psi* is learned: on issue 18's high-noise network, members trained for 2 minutes differed by up to 15 %
    in overall scale, 64 % to 99 % of their differences in two of three replicates (docs/confidence.md). Dividing each
    W by its c_k removes that direction, which the data cannot tell apart, before the members are compared."""
    stack = np.asarray(weights, dtype=np.float64)  # no copy when the caller already stacked them
    values = stack[:, ~np.eye(stack.shape[1], dtype=bool)]
    scales = np.ones(len(stack))
    for _ in range(iterations):
        centre = (1 / scales) @ values / len(stack)  # mean_l(W_l / c_l) without a (K, N^2) temporary
        norm = float(centre @ centre)
        if norm == 0:
            return np.ones(len(stack))
        found = values @ centre / norm
        if np.any(found <= 0):
            bad = [k for k, c in enumerate(found) if c <= 0]
            raise CircuitGNNError(f"the W of fit(s) {bad} point away from the others' mean: no common scale to align them to")
        scales = found / np.exp(np.mean(np.log(found)))
    return scales


def ensemble_confidence(
    weights: Sequence[np.ndarray], level: float = 0.9, seconds: float = float("nan"), align_scale: bool = True
) -> EdgeConfidence:
    """Per-edge mean, Student-t interval and sign agreement over K >= 2 fits' W, each with psi*'s scale moved in
    (:func:`plateau_aligned`) and, with ``align_scale``, divided by its overall scale against the others'
    (:func:`member_scales`, kept in the result's ``scales``)."""
    level = check_level(level)
    if len(weights) < 2:
        raise CircuitGNNError(f"an ensemble needs at least 2 fits, got {len(weights)}")
    shapes = {np.shape(w) for w in weights}
    if len(shapes) != 1:
        raise CircuitGNNError(f"the fits' W have different shapes: {sorted(shapes)}")
    stack = np.stack([np.asarray(w, dtype=np.float64) for w in weights])
    scales = member_scales(stack) if align_scale else np.ones(len(stack))
    stack /= scales[:, None, None]
    k = len(stack)
    mean = stack.mean(axis=0)
    sd = stack.std(axis=0, ddof=1)
    np.fill_diagonal(sd, np.nan)
    half = stats.t.ppf(0.5 + level / 2, k - 1) * sd * np.sqrt(1 + 1 / k)  # a prediction interval: the next fit's weight
    agree = (np.sign(stack) == np.sign(mean)[None]).mean(axis=0)
    return EdgeConfidence(mean, sd, mean - half, mean + half, level, f"ensemble of {k}", seconds, agree, dof=k - 1, scales=scales)


def combined_confidence(
    ensemble: EdgeConfidence,
    one_fits: EdgeConfidence | Sequence[EdgeConfidence],
    test_on: Literal["fit", "least_squares"] = "fit",
    centre: Literal["fit", "least_squares"] = "fit",
) -> EdgeConfidence:
    """An ensemble's estimate with a standard error that counts the data's share of its error once.

    A member's error is the data's share (the frames' noise, which a one fit's least-squares sd estimates and
    which every member's estimate carries, so that averaging the members does not remove it) plus the fit's
    own share (its seed, its resample), which the mean of K members divides by sqrt(K). With ``sd`` the members'
    spread and ``ls^2`` the mean of the one fits' variances: se^2 = ls^2 + max(sd^2 - ls^2, 0) / K, and the
    interval is mean +- t(nu) se, nu from the Welch-Satterthwaite formula (K - 1 degrees of freedom for the
    members' part, infinitely many for the least-squares part). The prediction interval of
    :func:`ensemble_confidence` assumes the members' errors are fully shared, the interval of the mean that they
    are independent; this lies between.

    ``one_fits``: the least-squares intervals of one member or of several (:func:`least_squares_confidence` given
    each member's functions), the first members' in order; each is divided by its member's overall scale
    (``ensemble.scales``). One member's sd reads its own functions' misfit as the data's noise and varies from
    member to member (by a factor of 1.8 at the median on the Fig. 2 network); the mean over the members is the
    steadier estimate (docs/confidence.md).

    ``centre``: which estimates are combined. ``"fit"``: the trained members' W (``ensemble``). ``"least_squares"``
    (at least two one fits; the default of :meth:`CircuitGNNEnsemble.combined_confidence`): the one fits' W, their
    mean and their spread, se^2 = ls^2 + sd^2 / K (the one fits all read the same frames, so that the data's share
    is not in their spread: only the members' functions differ); solved with each receiver's own terms (the default of
    :func:`least_squares_confidence`)
    they are closer to the truth than the trained W on issue 18's dense networks (the mean's error 34 % and 49 %
    smaller on Fig. 2 and high noise, replicate 6; coverage in docs/confidence.md);
    where the members were fitted with an L1 penalty on a sparse network the trained mean is the closer one.

    ``test_on`` (with ``centre="fit"``): which estimate the tests of "is this weight zero?" read (``test`` of the
    result). ``"fit"``: the members' mean itself. ``"least_squares"`` (at least two one fits): the one fits' W
    combined the same way. Where the members were fitted with an L1 penalty on W, the penalty moves every present
    weight toward zero by about the same amount and holds many absent ones near zero, so that abs(mean) carries the
    penalty's ties; the least-squares W, solved without the penalty, ranks the connections of the sparse 10 % network
    better, but its intervals are too narrow there to list connections by (docs/confidence.md).
    """
    fits = [one_fits] if isinstance(one_fits, EdgeConfidence) else list(one_fits)
    if not fits:
        raise CircuitGNNError("combined_confidence needs at least one one-fit confidence")
    if test_on not in ("fit", "least_squares"):
        raise CircuitGNNError(f"test_on must be 'fit' or 'least_squares', got {test_on!r}")
    if centre not in ("fit", "least_squares"):
        raise CircuitGNNError(f"centre must be 'fit' or 'least_squares', got {centre!r}")
    for name, value in (("test_on", test_on), ("centre", centre)):
        if value == "least_squares" and len(fits) < 2:
            raise CircuitGNNError(f"{name}='least_squares' needs the one fits of at least 2 members (their spread), got {len(fits)}")
    for one in fits:
        if ensemble.mean.shape != one.mean.shape:
            raise CircuitGNNError(f"the ensemble's W is {ensemble.mean.shape} and the one fit's {one.mean.shape}: not the same network")
        if not np.isfinite(ensemble.dof) or np.isfinite(one.dof):
            raise CircuitGNNError(f"expected an ensemble's confidence and one fits', got {ensemble.method} and {one.method}")
    if ensemble.scales is not None:  # each member's one fit in the units its W was aligned to
        if len(fits) > len(ensemble.scales):
            raise CircuitGNNError(f"{len(fits)} one fits for an ensemble of {len(ensemble.scales)} members: one per member at most")
        fits = [_divided(one, c) for one, c in zip(fits, ensemble.scales, strict=False)]
    if centre == "least_squares" or test_on == "least_squares":
        squares = ensemble_confidence([one.mean for one in fits], ensemble.level)
        assert squares.scales is not None
        on_squares = _combined(
            squares,
            [_divided(one, c) for one, c in zip(fits, squares.scales, strict=True)],
            f"least squares of {len(fits)} members, combined",
            spread_has_data=False,
        )
        if centre == "least_squares":
            return on_squares
        return _combined(ensemble, fits, f"{ensemble.method} with least squares of {len(fits)} members", on_squares)
    return _combined(ensemble, fits, f"{ensemble.method} with least squares" + (f" of {len(fits)} members" if len(fits) > 1 else ""))


def _combined(
    ensemble: EdgeConfidence, fits: Sequence[EdgeConfidence], method: str, test: EdgeConfidence | None = None, spread_has_data: bool = True
) -> EdgeConfidence:
    """``ensemble``'s mean with se^2 = ls^2 + max(sd^2 - ls^2, 0) / K (:func:`combined_confidence`), the one fits
    already in its units; without ``spread_has_data`` (estimates that all read the same frames, so that the data's
    share is not in their spread), se^2 = ls^2 + sd^2 / K."""
    k = ensemble.dof + 1
    shared = np.mean([one.sd**2 for one in fits], axis=0)
    own = (np.maximum(ensemble.sd**2 - shared, 0.0) if spread_has_data else ensemble.sd**2) / k
    se = np.sqrt(shared + own)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(own > 0, se**4 / (own**2 / (k - 1)), np.inf)
    half = stats.t.ppf(0.5 + ensemble.level / 2, np.nan_to_num(nu, nan=np.inf)) * se
    return EdgeConfidence(
        ensemble.mean,
        se,
        ensemble.mean - half,
        ensemble.mean + half,
        ensemble.level,
        method,
        ensemble.seconds + sum(one.seconds for one in fits),
        ensemble.sign_agreement,
        test=test,
    )


def _divided(conf: EdgeConfidence, c: float) -> EdgeConfidence:
    return dataclasses.replace(conf, mean=conf.mean / c, sd=conf.sd / c, lower=conf.lower / c, upper=conf.upper / c)


def type_stability(labelings: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """(co-assignment matrix: the fraction of fits that put neurons i and j in one cluster, mean adjusted Rand index
    between every two fits' clusterings)."""
    from sklearn.metrics import adjusted_rand_score

    labels = [np.asarray(v) for v in labelings]
    if len(labels) < 2:
        raise CircuitGNNError(f"type stability needs at least 2 clusterings, got {len(labels)}")
    co = np.mean([v[:, None] == v[None, :] for v in labels], axis=0)
    ari = [adjusted_rand_score(labels[a], labels[b]) for a in range(len(labels)) for b in range(a + 1, len(labels))]
    return co, float(np.mean(ari))


def calibration(conf: EdgeConfidence, true_w: np.ndarray, gains: np.ndarray | None = None) -> dict[str, float]:
    """On simulated data: the fraction of connections whose interval covers the true weight, after one scale
    (the slope of the estimate against the truth, off the diagonal) aligns the two (for an ensemble also
    ``coverage_mean_interval``: that of the members' mean +- t sd / sqrt(K), which would hold if the members' errors were
    independent of each other); and, on sparse W, the
    edge-detection AUC of ranking by lfdr, lfsr and by |mean| / sd (moderated, and raw) beside ranking by |mean|, the coverage
    of absent and present connections apart, and the precision and recall of the list of :meth:`EdgeConfidence.confident`.
    ``gains``: the receivers' gains,
    which scale the rows of any W the data determine."""
    off = ~np.eye(true_w.shape[0], dtype=bool)
    aligned, s = _aligned_truth(conf, true_w, gains)
    covered = (conf.lower <= aligned) & (aligned <= conf.upper)
    out = {"level": conf.level, "coverage": float(covered[off].mean()), "scale": float(s)}
    if np.isfinite(conf.dof):  # an ensemble: also the interval of the members' mean, as if their errors were independent
        half = stats.t.ppf(0.5 + conf.level / 2, conf.dof) * conf.sd / np.sqrt(conf.dof + 1)
        out["coverage_mean_interval"] = float((np.abs(conf.mean - aligned) <= half)[off].mean())
    present = true_w[off] != 0
    if 0 < present.mean() < 1:
        out["auc_z"] = edge_auc(true_w, conf.z)
        out["auc_z_raw"] = edge_auc(true_w, conf.z_raw)
        ranks = {"lfdr": conf.lfdr, "lfsr": conf.lfsr}  # -log: ranked by the rate itself, without 1 - rate's ties
        out.update({f"auc_{k}": edge_auc(true_w, -np.log(np.clip(v, 1e-300, 1.0))) for k, v in ranks.items()})
        out["auc_abs_w"] = edge_auc(true_w, conf.mean)
        out["coverage_absent"] = float(covered[off][~present].mean())
        out["coverage_present"] = float(covered[off][present].mean())
        out |= _detection(conf, true_w != 0, off)
    return out


def _aligned_truth(conf: EdgeConfidence, true_w: np.ndarray, gains: np.ndarray | None) -> tuple[np.ndarray, float]:
    """The true W with the receivers' gains, times the one scale (the slope off the diagonal) that aligns it with
    ``conf.mean``, and that scale."""
    g = np.ones(true_w.shape[0]) if gains is None else np.asarray(gains, dtype=np.float64)
    truth = true_w * g[:, None]
    s = linear_fit(truth, conf.mean, off_diagonal=True).slope
    return s * truth, float(s)


def _detection(conf: EdgeConfidence, present: np.ndarray, off: np.ndarray) -> dict[str, float]:
    """How far to trust the list of :meth:`EdgeConfidence.confident`: its length, the share of truly present
    connections in it (precision), the share of present ones it finds (recall), and the share of absent ones that its
    lfdr promise (their mean: ``confident_promised_fdr``, to compare with 1 - precision)."""
    chosen = conf.nonzero()
    return {
        "confident_count": int(chosen.sum()),
        "confident_precision": float(present[chosen].mean()) if chosen.any() else float("nan"),
        "confident_recall": float(chosen[present & off].mean()),
        "confident_promised_fdr": float(conf.lfdr[chosen].mean()) if chosen.any() else float("nan"),
    }


@torch.no_grad()
def diagnostics(model: GNN, activity: Activity, xnorm: float, max_frames: int = 20000) -> dict[str, np.ndarray | float]:
    """Checks that need no ground truth, over up to ``max_frames`` evenly spaced training frames:

    - ``self_explained`` (N,): R^2 of each neuron's inferred coupling term sum_j W_ij psi*_j regressed on its own
      activity (1, z, z^2, z^3, tanh z; z the standardised x_i): near 1, the data cannot tell that neuron's
      couplings from its update function;
    - ``gram_condition``: the condition number of the senders' Gram matrix (large: some combinations of weights
      are barely excited);
    - ``excitation`` (N,): the fraction of psi*'s range over the model's activity range that each sender's
      recorded activity reaches (small: the nonlinearity is seen only near one point).
    """
    _check_model(model)
    frames = np.concatenate([np.arange(a, b) for a, b in activity.train_bounds()])
    frames = frames[np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(np.int64)]
    x_np = np.asarray(activity.x[frames], dtype=np.float32)
    x_np = x_np[np.isfinite(x_np).all(axis=1)]
    if len(x_np) < 10:
        raise CircuitGNNError(f"the diagnostics need at least 10 complete training frames, got {len(x_np)}")
    x = torch.as_tensor(x_np, device=model.a.device)
    step = model.frames_per_pass()
    f = torch.cat([model.psi_of_sender(x[s : s + step], model.a) for s in range(0, len(x), step)])
    m = (f @ model.connectivity().T).double().cpu().numpy()
    z = (x_np - x_np.mean(axis=0)) / (x_np.std(axis=0) + 1e-12)
    basis = np.stack([np.ones_like(z), z, z**2, z**3, np.tanh(z)], axis=-1).astype(np.float64)  # (T, N, 5)
    gram = np.einsum("tnk,tnl->nkl", basis, basis) + 1e-9 * np.eye(5)
    coef = np.linalg.solve(gram, np.einsum("tnk,tn->nk", basis, m)[..., None])[..., 0]
    resid = m - np.einsum("tnk,nk->tn", basis, coef)
    total = ((m - m.mean(axis=0)) ** 2).sum(axis=0)
    self_explained = np.where(total > 0, 1 - (resid**2).sum(axis=0) / np.maximum(total, 1e-300), np.nan)
    fd = f.double()
    eig = torch.linalg.eigvalsh(fd.T @ fd / len(fd)).cpu().numpy()
    grid = torch.linspace(-xnorm, xnorm, 200, device=model.a.device)[:, None].expand(200, model.n)
    full = model.psi_of_sender(grid.contiguous(), model.a)
    span = (full.max(dim=0).values - full.min(dim=0).values).clamp_min(1e-12)
    reached = (f.max(dim=0).values - f.min(dim=0).values) / span
    return {
        "self_explained": self_explained,
        "gram_condition": float(eig[-1] / max(eig[0], 1e-300)),
        "excitation": np.clip(reached.cpu().numpy().astype(np.float64), 0, 1),
    }


CONFIDENCE = "confidence.npz"
CONFIDENCE_SUMMARY = "confidence.json"


def coverage_curve(
    conf: EdgeConfidence | Callable[[float], EdgeConfidence],
    true_w: np.ndarray,
    gains: np.ndarray | None = None,
    levels: Sequence[float] = (),
) -> dict[str, list[float]]:
    """Nominal level against the fraction of true (scale-aligned) weights covered at each level (default 0.5 to
    0.99): the calibration plot of simulated data. ``conf``: a confidence whose intervals at each level are taken as
    mean +- z sd (normal, as least squares'), or a function that builds the confidence at a level, whose own
    intervals are scored (an ensemble's Student t intervals, the combined ones)."""
    levels = list(levels) or [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    make = None if isinstance(conf, EdgeConfidence) else conf
    first = make(levels[0]) if make is not None else conf
    assert isinstance(first, EdgeConfidence)
    off = ~np.eye(true_w.shape[0], dtype=bool)
    aligned = _aligned_truth(first, true_w, gains)[0]
    if make is None:
        dev = np.abs(first.mean - aligned)[off] / first.sd[off]
        return {"level": levels, "coverage": [float(np.mean(dev <= stats.norm.ppf(0.5 + q / 2))) for q in levels]}
    built = [first] + [make(q) for q in levels[1:]]
    return {"level": levels, "coverage": [float(((c.lower <= aligned) & (aligned <= c.upper))[off].mean()) for c in built]}


@torch.no_grad()
def _additive_input(run: Any, activity: Activity) -> np.ndarray | None:
    """The additive input of a trained run at every frame of its dataset: the recorded one (``external_input``
    known, acting additively) or the learned low-rank one; None for a run without an input or with a learned field
    (refused by :func:`least_squares_confidence`)."""
    kind = run.config.model.external_input
    if kind == "known":
        if activity.input_mode != "additive" or activity.inputs is None:
            raise CircuitGNNError(
                f"per-edge intervals from one fit do not take a multiplicative input into account (the recorded input acts "
                f"{activity.input_mode!r}); fit an ensemble and read its prediction intervals instead"
            )
        return np.asarray(activity.inputs)
    if kind == "additive_lowrank" and run.input_model is not None:
        frames = torch.arange(activity.n_frames, device=run.model.a.device)
        return run.input_model(frames).cpu().numpy()
    return None


def run_confidence(run_dir: str | Path, level: float = 0.9, empirical_null: bool = False, own_degree: int | None = 3) -> dict[str, Any]:
    """One-fit intervals and diagnostics of a trained run on its dataset's training frames; writes ``RUN/confidence.npz``
    (mean, sd, lower, upper) and ``RUN/confidence.json`` (the confident connections, diagnostics, and on simulated
    data the calibration against the truth), and returns the summary. ``empirical_null``: widen the intervals by the
    bulk's width (:meth:`EdgeConfidence.with_empirical_null`; for sparse networks); ``own_degree``: as for
    :func:`least_squares_confidence`."""
    from circuitgnn.data.writer import save_npz_atomic, write_json_atomic
    from circuitgnn.train.run_folder import load_run, run_dataset

    run = load_run(run_dir)
    assert run.path is not None
    ds = run_dataset(run)
    activity = ds.activity()
    method = run.data.get("derivative") or "forward"  # the drift training used (forward differences for the other objectives)
    dxdt = np.asarray(ds.dxdt) if method == "recorded" and ds.dxdt is not None else activity.derivative(method)
    conf = least_squares_confidence(
        run.model, activity, run.xnorm, dxdt, level, extra=_additive_input(run, activity), own_degree=own_degree
    )
    if empirical_null:
        conf = conf.with_empirical_null()
    diag = diagnostics(run.model, activity, run.xnorm)
    summary: dict[str, Any] = {
        "method": conf.method,
        "own_degree": own_degree,
        "level": level,
        "seconds": conf.seconds,
        "null_width": conf.null_width,
        "n_confident": int(conf.nonzero().sum()),
        "confident": conf.confident(limit=200),
        "gram_condition": diag["gram_condition"],
        "self_explained_median": float(np.nanmedian(diag["self_explained"])),
        "excitation_median": float(np.median(diag["excitation"])),
    }
    truth = ds.truth
    if truth is not None:
        gains = truth.gains
        summary["calibration"] = calibration(conf, truth.connectivity, gains)
        summary["coverage_curve"] = coverage_curve(conf, truth.connectivity, gains)
    save_npz_atomic(
        run.path / CONFIDENCE, mean=conf.mean, sd=conf.sd, lower=conf.lower, upper=conf.upper,
        self_explained=diag["self_explained"], excitation=diag["excitation"],
    )  # fmt: skip
    write_json_atomic(run.path / CONFIDENCE_SUMMARY, summary)
    return summary
