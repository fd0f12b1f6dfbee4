"""The functions and W by variable projection: a fast fit of dx_i/dt = phi_i(x_i) + sum_j W_ij psi(x_j).

psi (shared) and every phi_i are cubic B-splines in a coordinate that maps the activity's quantiles to
equally spaced points, so knots sit where the data are; each phi_i also has a linear term (its decay). For fixed psi coefficients theta the model is linear
in W and in the phi_i coefficients: both are solved exactly (one Gram matrix of the senders' psi values
serves every receiver; each receiver's phi basis is eliminated by a small Schur complement). theta (a dozen
numbers) is then moved by damped Gauss-Newton on the residual of that exact solve, with the Jacobian
projected off each receiver's own regressors (Kaufman's variable projection), so that a step accounts for
how W and phi follow psi. The offset and the scale of psi are invisible to the data (phi's constant and W
absorb them): during the steps psi(median activity) = 0 and psi's plateau (its median over [0.8, 1] x 1.5 std
of the activity, the GNN's activity scale) = 1; at the end the offset is the one that leaves phi_i(0) = 0 in
the least-squares sense (no drift at rest, the GNN's phi_zero convention).

psi is shared, so its steps are taken on a random subset of receivers: a step then costs two products of
size frames x N x (subset x basis) instead of N^2 ones, and only the final solve touches every receiver (in
chunks of receivers). Products run in ``dtype`` on blocks of frames and are summed in float64 (the senders'
Gram matrix of noise-free activity has condition numbers near 1e5); where float32 products are not accurate
enough on the frames given (a solve's residual, read off the normal equations, falls below the data's), the fit
is done again in float64.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.linalg.lapack import dpotrf, dpotri

from circuitgnn.errors import CircuitGNNError

_BLOCK = 1024  # frames per block of the products
_CHUNK = 512  # receivers per part of the final solve
_STEP_BYTES = 256 * 2**20  # the most a Gauss-Newton step's part of a block holds of every sender's whole psi basis
_KEPT_VALUES = 2**25  # frames x neurons up to which the psi coordinates are kept (200 MB)


def _cubic_weights(f: torch.Tensor) -> torch.Tensor:
    """The 4 non-zero uniform cubic B-spline values (..., 4) at positions ``f`` in [0, 1] within an interval."""
    f2, f3 = f * f, f * f * f
    return torch.stack([(1 - f) ** 3, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], dim=-1) / 6


class SplineBasis:
    """A uniform cubic B-spline basis of ``n_splines`` functions in the coordinate u(x) that maps the quantiles
    of ``sample`` to equally spaced points; values outside the sample's range are clamped to it. ``linear``: one
    more function, x itself. u(x) is piecewise linear with a kink at every knot, so a function linear in x (a
    decay term -c x) is not a cubic spline in u; its misfit, small beside phi, is not small beside a weak coupling
    term, and W absorbs it (docs/training.md, "Extensions": the sparse family's spline fit).
    ``n_basis``: the number of functions, ``n_splines + linear``."""

    def __init__(self, sample: np.ndarray | torch.Tensor, n_splines: int, linear: bool = False):
        if not isinstance(n_splines, int) or n_splines < 4:
            raise CircuitGNNError(f"a cubic spline basis needs at least 4 functions, got {n_splines!r}")
        values = torch.as_tensor(sample).detach().reshape(-1)
        # quantiles of a large sample: a strided subset is as good, and taken first no float64 copy of it all is made
        values = values[:: values.numel() // 1_000_000 + 1].cpu().double()
        values = values[torch.isfinite(values)]
        if values.numel() == 0:
            raise CircuitGNNError("a spline basis needs at least one finite activity value")
        knots = torch.quantile(values, torch.linspace(0, 1, n_splines - 2, dtype=torch.float64))
        self.knots = knots + 1e-9 * torch.arange(len(knots), dtype=torch.float64)  # strictly increasing
        self.n_splines, self.linear = n_splines, linear
        self.n_basis = n_splines + int(linear)

    def coordinate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first basis index (int64), the position within that interval in [0, 1] (float64)) at ``x``. The 4 non-zero
        basis values follow from the position (:func:`_cubic_weights`), so a stored coordinate takes 6 bytes (int16,
        float32) where the 4 values would take 16 more."""
        knots = self.knots.to(device=x.device, dtype=torch.float64)
        xd = x.double().clamp(knots[0], knots[-1])
        first = (torch.searchsorted(knots, xd.contiguous(), right=True) - 1).clamp(0, self.n_splines - 4)  # the interval
        return first, ((xd - knots[first]) / (knots[first + 1] - knots[first])).clamp(0.0, 1.0)

    def __call__(self, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The basis at ``x`` (any shape): (*x.shape, n_basis)."""
        return self.dense(self.coordinate(x), dtype)

    def dense(self, coordinate: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The basis (..., n_basis) from a :meth:`coordinate`."""
        first, position = coordinate
        out = torch.zeros(*first.shape, self.n_basis, dtype=dtype, device=first.device)
        out.scatter_(-1, first.long().unsqueeze(-1) + torch.arange(4, device=first.device), _cubic_weights(position.to(dtype)))
        if self.linear:
            out[..., -1] = self._value(first, position, dtype)
        return out

    def _value(self, first: torch.Tensor, position: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x (clamped to the knots' range) from its coordinate."""
        knots = self.knots.to(device=first.device, dtype=dtype)
        first = first.long()
        return knots[first] + position.to(dtype) * (knots[first + 1] - knots[first])

    def combine(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor], coefficients: torch.Tensor) -> torch.Tensor:
        """sum_k coefficients[k] B_k(x) at ``x`` (any shape, or its :meth:`coordinate`), in the coefficients' dtype;
        per neuron for ``coefficients`` (N, n_basis) and ``x`` (..., N)."""
        first, position = self.coordinate(x) if isinstance(x, torch.Tensor) else x
        index = first.long().unsqueeze(-1) + torch.arange(4, device=first.device)
        coefficients = coefficients.to(first.device)
        weights = _cubic_weights(position.to(coefficients.dtype))  # the result has the coefficients' precision
        linear = self._value(first, position, coefficients.dtype) * coefficients[..., -1] if self.linear else 0.0
        if coefficients.dim() == 1:
            return (coefficients[index] * weights).sum(-1) + linear
        rows = torch.arange(coefficients.shape[0], device=first.device).expand_as(first).unsqueeze(-1)
        return (coefficients[rows, index] * weights).sum(-1) + linear


@dataclass
class FunctionFit:
    """The result of :func:`fit_functions`.

    ``connectivity`` (N, N): W with receivers in rows, its diagonal at zero (each neuron's own psi term is
    folded into its update function); ``phi_coefficients`` (N, n_phi) and ``self_weights`` (N,): phi_i(x) =
    phi_basis(x) . phi_coefficients[i] + self_weights[i] psi_ii(x); ``psi_coefficients``: (n_psi,) for one shared
    psi, or (K, K, n_psi) with ``groups`` (N,): psi_ij is row [groups[i], groups[j]], the transfer between the
    receiver's and the sender's group.
    """

    connectivity: torch.Tensor
    phi_coefficients: torch.Tensor
    self_weights: torch.Tensor
    psi_coefficients: torch.Tensor
    psi_basis: SplineBasis
    phi_basis: SplineBasis
    history: list[float] = field(default_factory=list)  # mean squared residual (subset of receivers) after each step
    products: torch.dtype = torch.float64  # the precision the products ran in (float32 asked may have become float64)
    groups: torch.Tensor | None = None

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        """The shared psi at activity ``x`` (any shape); a grouped fit has no shared psi (see :meth:`transfer`)."""
        if self.groups is not None:
            raise CircuitGNNError("a fit with one psi per pair of groups has no shared psi: use transfer(x, group)")
        return self.psi_basis.combine(x, self.psi_coefficients)

    def transfer(self, x: torch.Tensor, group: int = 0) -> torch.Tensor:
        """psi of every sender at its activity ``x`` (..., N) as a receiver of ``group`` sees it."""
        if self.groups is None:
            return self.psi(x)
        return self.psi_basis.combine(x, self.psi_coefficients[group][self.groups.to(x.device)])

    def pair_plateaus(self, xnorm: float, n_points: int = 100) -> torch.Tensor:
        """Each psi's median over [0.8 xnorm, xnorm], (K, K) for (receiver's group, sender's group); (1, 1) when shared."""
        grid = torch.linspace(0.8 * xnorm, xnorm, n_points, dtype=torch.float64)
        rows = self.psi_coefficients.reshape(-1, self.psi_coefficients.shape[-1]).cpu()
        k = 1 if self.groups is None else len(self.psi_coefficients)
        return torch.stack([self.psi_basis.combine(grid, row).median() for row in rows]).reshape(k, k)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """Each neuron's update function at its activity ``x`` (..., N)."""
        if self.groups is None:
            own = self.psi(x)
        else:
            groups = self.groups.to(x.device)
            own = self.psi_basis.combine(x, self.psi_coefficients[groups, groups])
        return self.phi_basis.combine(x, self.phi_coefficients) + self.self_weights.to(x.device) * own

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The drift at states ``x`` (T, N)."""
        w = self.connectivity.to(x.device)
        if self.groups is None:
            return self.phi(x) + self.psi(x) @ w.T
        out = self.phi(x)
        for group in range(len(self.psi_coefficients)):
            rows = (self.groups == group).nonzero().squeeze(1).to(x.device)
            out[..., rows] += self.transfer(x, group) @ w[rows].T
        return out


def _ridge_inverse(gram: torch.Tensor, ridge: float) -> torch.Tensor:
    """(G + ridge mean(diag G) I)^-1, the ridge raised 100-fold up to 1e-2 while G + ridge is not positive definite
    (a sender whose signal another's repeats, or rounding).

    On the CPU the inverse is computed in ``gram``'s own memory (at N = 8,000 each N x N array is 512 MB): LAPACK's
    Cholesky factorisation and inversion work on one triangle, the other keeps G, from which a failed
    factorisation starts again, and is then overwritten by the inverse's mirror image. Elsewhere (a GPU's
    memory is not the limit) ``gram`` is left to the caller and a new array returned.
    """
    scale = float(gram.diagonal().mean()) + 1e-300
    diagonal = gram.diagonal().clone()
    in_place = gram.device.type == "cpu" and gram.dtype == torch.float64 and gram.is_contiguous()
    while True:
        gram.diagonal().copy_(diagonal + ridge * scale)
        if in_place:
            # row-major G read as column-major is G itself (symmetric); LAPACK's lower triangle of that view is the
            # row-major upper one, where the factor and then the inverse go
            view = gram.numpy().T
            _, info = dpotrf(view, lower=1, clean=0, overwrite_a=1)
            if info == 0:
                _, info = dpotri(view, lower=1, overwrite_c=1)
                if info != 0:  # a factor with a positive diagonal is invertible: not reached
                    raise CircuitGNNError(f"inverting the senders' Gram matrix failed (LAPACK dpotri: {info})")
                _mirror_lower(gram.T)  # the inverse's upper triangle onto its lower one
                return gram
            _mirror_lower(gram)  # G again where the factorisation wrote
        else:
            chol, status = torch.linalg.cholesky_ex(gram)
            if int(status) == 0:
                return torch.cholesky_inverse(chol)
        if ridge >= 1e-2:
            raise CircuitGNNError("the senders' signals are linearly dependent over these frames (a neuron that never varies?)")
        ridge = max(100 * ridge, 1e-10)


def _mirror_lower(a: torch.Tensor, rows: int = 1024) -> None:
    """Copy the strict lower triangle of the square ``a`` onto its upper one, in blocks of rows (no N x N temporary;
    ``a`` may be a transposed view)."""
    n = len(a)
    for i in range(0, n, rows):
        j = min(i + rows, n)
        a[i:j, j:] = a[j:, i:j].T
        square = a[i:j, i:j]
        square.copy_(square.tril() + square.tril(-1).T)


@dataclass
class _Solved:
    """W and the phi coefficients of a set of receivers for one psi, with what a Gauss-Newton step reuses."""

    w: torch.Tensor  # (S, N)
    c: torch.Tensor  # (S, P)
    loss: float
    inverse: torch.Tensor  # (G + ridge)^-1, (N, N)
    cross: torch.Tensor  # (N, S, P): sum_t psi_j u_k(x_i)
    schur: torch.Tensor  # (S, P, P)
    losses: torch.Tensor  # (S,) each receiver's mean squared residual


Coordinate = tuple[torch.Tensor, torch.Tensor]


def _coefficients(theta: torch.Tensor, senders: torch.Tensor | None) -> torch.Tensor:
    """psi's coefficients as :meth:`SplineBasis.combine` takes them: ``theta`` (M,) when every sender shares psi,
    else one row per sender (N, M) from ``theta`` (H, M) and each sender's group ``senders`` (N,)."""
    return theta if senders is None else theta[senders]


@dataclass
class _Block:
    """A block of frames and their drift, (t, N) float32 each (views of the caller's arrays where they are
    float32): the products run in float32 and are summed in float64. ``psi`` and ``phi``: the frames' spline
    coordinates in each basis (6 bytes per value each) when the fit is small enough to keep them; a large fit
    computes them per pass (at N = 8,000 and 20,000 frames they would take 1.9 GB; computing them adds about a
    tenth to a pass)."""

    x: torch.Tensor
    y: torch.Tensor
    psi: Coordinate | None
    phi: Coordinate | None

    def psi_coordinate(self, basis: SplineBasis) -> Coordinate:
        return self.psi if self.psi is not None else basis.coordinate(self.x)

    def phi_basis(self, basis: SplineBasis, receivers: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The phi basis at the activity of ``receivers``: (t, S, P)."""
        if self.phi is None:
            return basis(self.x[:, receivers], dtype)
        return basis.dense((self.phi[0][:, receivers], self.phi[1][:, receivers]), dtype)


def _prepare(x: torch.Tensor, y: torch.Tensor, psi_basis: SplineBasis, phi_basis: SplineBasis) -> list[_Block]:
    keep = x.numel() <= _KEPT_VALUES

    def coordinate(basis: SplineBasis, xs: torch.Tensor) -> Coordinate | None:
        if not keep:
            return None
        first, position = basis.coordinate(xs)
        return first.to(torch.int16), position.float()

    return [
        _Block(
            x[a : a + _BLOCK].float(),
            y[a : a + _BLOCK].float(),
            coordinate(psi_basis, x[a : a + _BLOCK]),
            coordinate(phi_basis, x[a : a + _BLOCK]),
        )
        for a in range(0, len(x), _BLOCK)
    ]


class _LostPrecision(Exception):
    """Internal: float32 products lost a solve's residual (the normal equations' against the data's)."""


# the most the data's residual may exceed the normal equations' (which also count the ridge's penalty, so exceed the
# data's when the products are exact), relatively, in float32
_LOSS_AGREEMENT = 0.2


def _direct_loss(
    blocks: list[_Block],
    receivers: torch.Tensor,
    theta: torch.Tensor,
    psi_basis: SplineBasis,
    phi_basis: SplineBasis,
    solved: _Solved,
    senders: torch.Tensor | None = None,
) -> float:
    """The mean squared residual of ``receivers`` for a solve, computed from the frames in float64.

    :func:`_solve` reads its residual off the normal equations (y.y - w.(Psi^T y) - ...), for free; when the
    senders' Gram matrix is ill-conditioned (few frames of a long trajectory's worth of information), rounding in
    float32 products leaves a W far off and that residual wrong by orders of magnitude (issue 21: 10,000 frames of
    the Fig. 2 network, 1e-4 against 1.5e-2). This one is the check.
    """
    total, count = 0.0, 0
    coefficients = _coefficients(theta, senders).double()
    for block in blocks:
        f = psi_basis.combine(block.psi_coordinate(psi_basis), coefficients)
        u = block.phi_basis(phi_basis, receivers, torch.float64)
        r = block.y[:, receivers].double() - f @ solved.w.T - torch.einsum("tik,ik->ti", u, solved.c)
        total, count = total + float((r * r).sum()), count + r.numel()
    return total / count


_PRODUCT_EPS = {torch.float32: 1e-6, torch.float64: 0.0}  # the least relative ridge that products in this precision allow


def _gram_inverse(
    blocks: list[_Block], theta: torch.Tensor, psi_basis: SplineBasis, ridge: float, dtype: torch.dtype, senders: torch.Tensor | None = None
) -> torch.Tensor:
    """(G + ridge)^-1 for the senders' Gram matrix G of psi values with coefficients ``theta``."""
    n = blocks[0].y.shape[1]
    gram = torch.zeros(n, n, dtype=torch.float64, device=blocks[0].y.device)
    coefficients = _coefficients(theta, senders).to(dtype)
    for block in blocks:
        f = psi_basis.combine(block.psi_coordinate(psi_basis), coefficients)
        gram += f.T @ f
    return _ridge_inverse(gram, max(ridge, _PRODUCT_EPS[dtype]))


def _solve(
    blocks: list[_Block],
    receivers: torch.Tensor,
    theta: torch.Tensor,
    psi_basis: SplineBasis,
    phi_basis: SplineBasis,
    ridge: float,
    dtype: torch.dtype,
    inverse: torch.Tensor | None = None,
    senders: torch.Tensor | None = None,
) -> _Solved:
    """The exact W rows and phi coefficients of ``receivers`` for psi's coefficients ``theta`` (``inverse``: the
    Gram inverse when already known for this theta; ``senders``: each sender's group when ``theta`` holds one psi
    per group, (H, M))."""
    n, s, p = blocks[0].y.shape[1], len(receivers), phi_basis.n_basis
    kw: dict[str, Any] = {"dtype": torch.float64, "device": blocks[0].y.device}
    gram = torch.zeros(n, n, **kw) if inverse is None else None
    target, cross = torch.zeros(n, s, **kw), torch.zeros(n, s * p, **kw)
    bb, bt, yy, frames = torch.zeros(s, p, p, **kw), torch.zeros(s, p, **kw), torch.zeros(s, **kw), 0
    coefficients = _coefficients(theta, senders).to(dtype)
    for block in blocks:
        f = psi_basis.combine(block.psi_coordinate(psi_basis), coefficients)
        u = block.phi_basis(phi_basis, receivers, dtype)  # (t, S, P)
        yb = block.y[:, receivers].to(dtype)
        if gram is not None:
            gram += f.T @ f
        target += f.T @ yb
        cross += f.T @ u.reshape(len(f), s * p)
        bb += torch.einsum("tik,til->ikl", u, u)
        bt += torch.einsum("tik,ti->ik", u, yb)
        yy += (yb.double() ** 2).sum(0)
        frames += len(f)
    if gram is not None:
        inverse = _ridge_inverse(gram, max(ridge, _PRODUCT_EPS[dtype]))
        del gram  # on the CPU the inverse's own memory; elsewhere spent
    assert inverse is not None
    cross = cross.reshape(n, s, p)
    a_target = inverse @ target  # (N, S)
    a_cross = (inverse @ cross.reshape(n, s * p)).reshape(n, s, p)
    schur = bb - torch.einsum("jik,jil->ikl", cross, a_cross)
    schur = schur + 1e-12 * schur.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None] * torch.eye(p, **kw)
    rhs = bt - torch.einsum("jik,ji->ik", cross, a_target)
    c = torch.linalg.solve(schur, rhs.unsqueeze(-1)).squeeze(-1)  # (S, P)
    w = (a_target - torch.einsum("jik,ik->ji", a_cross, c)).T  # (S, N)
    explained = (w.T * target).sum(0) + (c * bt).sum(1)
    loss = max(0.0, float(yy.sum()) - float(explained.sum())) / (frames * s)
    return _Solved(w, c, loss, inverse, cross, schur, (yy - explained).clamp_min(0.0) / frames)


def _solve_in_parts(
    blocks: list[_Block],
    receivers: torch.Tensor,
    theta: torch.Tensor,
    psi_basis: SplineBasis,
    phi_basis: SplineBasis,
    ridge: float,
    dtype: torch.dtype,
    senders: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, _Solved]]:
    """The exact solve of ``receivers`` for one ``theta`` in parts of ``_CHUNK`` receivers, all sharing one Gram inverse
    (memory near N x chunk x n_phi float64 numbers whatever N): (the part's receivers, its solve) for each part."""
    inverse = _gram_inverse(blocks, theta, psi_basis, ridge, dtype, senders)
    for a in range(0, len(receivers), _CHUNK):
        rows = receivers[a : a + _CHUNK]
        yield rows, _solve(blocks, rows, theta, psi_basis, phi_basis, ridge, dtype, inverse, senders)


def _gauss_newton(
    blocks: list[_Block],
    receivers: torch.Tensor,
    theta: torch.Tensor,
    psi_basis: SplineBasis,
    phi_basis: SplineBasis,
    solved: _Solved,
    dtype: torch.dtype,
    senders: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J^T J, J^T r) of the projected residual of ``receivers`` with respect to psi's coefficients, flattened when
    ``theta`` holds one psi per group of senders (H, M) (``senders``: each sender's group)."""
    n, s, m, p = blocks[0].y.shape[1], len(receivers), psi_basis.n_basis, phi_basis.n_basis
    kw: dict[str, Any] = {"dtype": torch.float64, "device": blocks[0].y.device}
    members = [] if senders is None else [(senders == h).nonzero().squeeze(1) for h in range(len(theta))]
    mm = m * max(1, len(members))  # the coefficients' number
    vv, grad = torch.zeros(mm, mm, **kw), torch.zeros(mm, **kw)
    fv, uv = torch.zeros(n, mm * s, **kw), torch.zeros(p, mm, s, **kw)
    w_t, c = solved.w.T.to(dtype).contiguous(), solved.c.to(dtype)  # (N, S), (S, P)
    coefficients = _coefficients(theta, senders).to(dtype)
    frames = max(1, _STEP_BYTES // (2 * n * m * torch.finfo(dtype).bits // 8))  # the basis and its transposed copy
    for block in blocks:
        first, position = block.psi_coordinate(psi_basis)
        receiving = block.phi_basis(phi_basis, receivers, dtype)
        for a in range(0, len(block.x), frames):
            b = psi_basis.dense((first[a : a + frames], position[a : a + frames]), dtype).transpose(1, 2).contiguous()  # (t, M, N)
            t = len(b)
            if senders is None:
                f = coefficients @ b
                v = (b.reshape(t * m, n) @ w_t).reshape(t, m, s)  # messages with B_m as psi
            else:  # with B_m as the psi of one group of senders
                f = torch.einsum("jm,tmj->tj", coefficients, b)
                v = torch.cat([(b[:, :, j].reshape(t * m, len(j)) @ w_t[j]).reshape(t, m, s) for j in members], 1)
            u = receiving[a : a + frames]
            r = block.y[a : a + frames, receivers].to(dtype) - f @ w_t - torch.einsum("tik,ik->ti", u, c)
            flat = v.transpose(0, 1).reshape(mm, t * s)
            vv += flat @ flat.T
            grad += torch.einsum("tmi,ti->m", v, r)
            fv += f.T @ v.reshape(t, mm * s)
            uv += torch.einsum("tik,tmi->kmi", u, v)
    fv3 = fv.reshape(n, mm, s)
    afv = (solved.inverse @ fv).reshape(n, mm, s)
    shared = torch.einsum("jmi,jli->ml", fv3, afv)
    q = uv - torch.einsum("jik,jmi->kmi", solved.cross, afv)  # (P, M, S)
    own = torch.einsum("kmi,ikl->ml", q, torch.linalg.solve(solved.schur, q.permute(2, 0, 1)))
    return vv - shared - own, -grad


def fit_functions(
    x: torch.Tensor,
    y: torch.Tensor,
    n_psi: int = 12,
    n_phi: int = 8,
    iterations: int = 6,
    receivers: int = 256,
    widths: Sequence[float] = (0.1, 0.3, 1.0),
    ridge: float = 1e-8,
    tolerance: float = 1e-4,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    deadline: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    groups: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    by_receiver: bool = True,
) -> FunctionFit:
    """Fit W, psi and every phi_i to frames ``x`` (T, N) and their drift ``y`` (T, N) (see the module docstring).

    ``receivers``: how many receivers (chosen with ``seed``) the psi steps use; ``widths``: starting psi
    candidates tanh(x / (width std)), the one with the smallest residual is refined (a saturating start
    matters: a linear psi sits in a poor basin); ``start``: psi's coefficients (n_psi,) to start from instead (e.g.
    a shared fit's, for a grouped one); ``deadline`` (a ``time.perf_counter()`` value) and ``should_stop``
    (e.g. a Ctrl-C seen): no step starts after them. The final solve takes the receivers in chunks of
    ``_CHUNK``, so memory stays near N x chunk x n_phi float64 numbers whatever N. ``dtype``: the products'
    precision; float32 is checked on every solve of the psi steps and replaced by float64 where it loses the residual
    (``FunctionFit.products`` says which ran).

    ``groups`` (N,) labels 0 .. K-1: psi depends on the receiver's and the sender's group (K x K functions, the
    "transmitters and receptors" form). Each group of receivers has its own senders' Gram matrix and its own
    Gauss-Newton steps on its K functions (their offsets and scales are each invisible to the data, and each is
    normalised as the shared psi is), so the fit costs about K shared ones. ``by_receiver=False``: psi depends on the
    sender's group only (K functions that every receiver sees, the "transmitters" form: one Gram matrix and one set of
    Gauss-Newton steps on K x n_psi coefficients); ``psi_coefficients`` then repeats its K rows for every receiving
    group, so a :class:`FunctionFit` reads both forms alike.
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise CircuitGNNError(f"x and y must be (frames, neurons) arrays of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    n = x.shape[1]
    if len(x) < 10 or n < 2:
        raise CircuitGNNError(f"fitting the functions needs at least 10 frames and 2 neurons, got {tuple(x.shape)}")
    senders: torch.Tensor | None = None
    n_groups = 1
    if groups is not None:
        senders = torch.as_tensor(groups).to(device=x.device, dtype=torch.long)
        n_groups = int(senders.max()) + 1 if senders.numel() else 0
        if senders.shape != (n,) or int(senders.min()) < 0 or len(torch.unique(senders)) != n_groups:
            raise CircuitGNNError(
                f"groups must be (neurons,) = ({n},) labels 0 .. K-1 with every label used, got shape {tuple(senders.shape)}"
            )
    if start is not None and tuple(start.shape) != (n_psi,):
        raise CircuitGNNError(f"start must hold psi's {n_psi} coefficients, got shape {tuple(start.shape)}")
    psi_basis, phi_basis = SplineBasis(x, n_psi), SplineBasis(x, n_phi, linear=True)
    generator = torch.Generator().manual_seed(seed)
    pooled = x.detach().reshape(-1)[:: max(1, x.numel() // 1_000_000)].double()  # strided first: no copy of all of x
    median, scale = float(pooled.median()), float(pooled.std())
    kw: dict[str, Any] = {"dtype": torch.float64, "device": x.device}
    centre = psi_basis(torch.tensor([median], **kw))[0]
    top = psi_basis(torch.linspace(1.2 * scale, 1.5 * scale, 50, **kw))
    sample = pooled[:: max(1, len(pooled) // 20000)]
    sample_basis = psi_basis(sample)
    shape = (n_psi,) if senders is None else (n_groups, n_psi)  # one receiving group's coefficients

    def normalise(theta: torch.Tensor, centred: bool = True) -> torch.Tensor:
        rows = theta.reshape(-1, n_psi)
        if centred:  # B-splines sum to one: subtracting psi(median) shifts every coefficient
            rows = rows - (rows @ centre)[:, None]
        plateau = (rows @ top.T).median(dim=1).values
        # a robust size: a grouped fit's psi of a few senders can swing out where only their extreme frames are
        largest = torch.quantile((rows @ sample_basis.T).abs(), 0.99, dim=1)
        return (rows / torch.where(plateau.abs() > 0.1 * largest, plateau, largest.clamp_min(1e-12))[:, None]).reshape(shape)

    blocks = _prepare(x, y, psi_basis, phi_basis)
    receiving = [torch.arange(n, device=x.device)]
    if senders is not None and by_receiver:
        receiving = [(senders == g).nonzero().squeeze(1) for g in range(n_groups)]
    subsets = [
        rows[torch.randperm(len(rows), generator=generator)[: min(receivers, len(rows))].to(x.device)].sort().values for rows in receiving
    ]

    def solve(theta: torch.Tensor, rows: torch.Tensor) -> _Solved:
        found = _solve(blocks, rows, theta, psi_basis, phi_basis, ridge, dtype, senders=senders)
        if dtype != torch.float64:  # are products in this precision accurate on these frames? The residual says
            direct = _direct_loss(blocks, rows, theta, psi_basis, phi_basis, found, senders)
            if direct > (1 + _LOSS_AGREEMENT) * found.loss:
                raise _LostPrecision(f"{found.loss:.3g} against {direct:.3g}")
        return found

    def refine(subset: torch.Tensor) -> tuple[torch.Tensor, _Solved, list[float]]:
        """The best starting psi, then damped Gauss-Newton steps on it: (theta, its solve, the residuals)."""
        best: tuple[torch.Tensor, _Solved] | None = None
        if start is not None:
            candidates = [start.to(**kw)]
        else:  # least squares on the data's own values: every basis function has data under it (an even grid can miss some)
            normal = sample_basis.T @ sample_basis + 1e-9 * torch.eye(n_psi, **kw)
            candidates = [torch.linalg.solve(normal, sample_basis.T @ torch.tanh(sample / (width * scale))) for width in widths]
        for candidate in candidates:
            theta = normalise(candidate.expand(shape))
            found = solve(theta, subset)
            if best is None or found.loss < best[1].loss:
                best = (theta, found)
        assert best is not None
        theta, solved = best
        history = [solved.loss]
        damping = 1e-3
        for _ in range(iterations):
            if (deadline is not None and time.perf_counter() > deadline) or (should_stop is not None and should_stop()):
                break
            jtj, jtr = _gauss_newton(blocks, subset, theta, psi_basis, phi_basis, solved, dtype, senders)
            diagonal = torch.diag(jtj.diagonal() + 1e-12 * jtj.trace())
            for _ in range(4):  # Levenberg-Marquardt: raise the damping until the residual falls
                trial = normalise(theta + torch.linalg.solve(jtj + damping * diagonal, -jtr).reshape(shape))
                found = solve(trial, subset)
                if found.loss < solved.loss:
                    break
                damping *= 10
            else:
                break
            done = solved.loss - found.loss < tolerance * solved.loss
            theta, solved, damping = trial, found, max(damping / 3, 1e-9)
            history.append(solved.loss)
            if log is not None:
                log(f"function fit: step {len(history) - 1}, mean squared residual {solved.loss:.4g}")
            if done:
                break
        return theta, solved, history

    def at_rest(theta: torch.Tensor, subset: torch.Tensor, solved: _Solved) -> torch.Tensor:
        """theta with the offsets that leave phi_i(0) = 0 (no drift at rest, the GNN's phi_zero term) for the subset in
        the least-squares sense; shifting the psi of sender group h by b_h moves phi_i(0) by -b_h sum_{j in h, j != i} W_ij.
        0 outside the activity's range: the median."""
        rest = 0.0 if float(psi_basis.knots[0]) <= 0.0 <= float(psi_basis.knots[-1]) else median
        rows = theta.reshape(-1, n_psi)
        member = torch.ones(n, 1, **kw) if senders is None else torch.nn.functional.one_hot(senders, n_groups).to(**kw)
        index = torch.arange(len(subset), device=x.device)
        own = solved.w[index, subset]
        psi_rest = (psi_basis(torch.tensor([rest], **kw))[0] @ rows.T)[member[subset].argmax(1)]
        drift = solved.c @ phi_basis(torch.tensor([rest], **kw))[0] + own * psi_rest
        sums = solved.w @ member - own[:, None] * member[subset]  # the self term moves with psi
        if senders is None:
            shift = (drift * sums[:, 0]).sum(0, keepdim=True) / (sums * sums).sum().clamp_min(1e-300)
        else:
            shift = torch.linalg.lstsq(sums, drift.unsqueeze(1)).solution.squeeze(1)
        return normalise(rows + shift[:, None], centred=False)

    def fit_all() -> tuple[list[torch.Tensor], list[float]]:
        thetas, histories = [], []
        for subset in subsets:
            theta, solved, history = refine(subset)
            thetas.append(at_rest(theta, subset, solved))
            histories.append(history)
            del solved  # its Gram inverse (N x N) before the next one
        steps = max(len(h) for h in histories)
        weights = [len(subset) for subset in subsets]
        mean = [sum(wt * h[min(k, len(h) - 1)] for wt, h in zip(weights, histories, strict=True)) / sum(weights) for k in range(steps)]
        return thetas, mean

    try:
        thetas, history = fit_all()
    except _LostPrecision as lost:  # once more, in float64 (which is never checked)
        if log is not None:
            log(f"function fit: {dtype} products lose the residual ({lost}): again in float64")
        dtype = torch.float64
        thetas, history = fit_all()
    w = torch.empty(n, n, dtype=torch.float64, device=x.device)
    c = torch.empty(n, phi_basis.n_basis, dtype=torch.float64, device=x.device)
    for theta, members in zip(thetas, receiving, strict=True):
        for rows, part in _solve_in_parts(blocks, members, theta, psi_basis, phi_basis, ridge, dtype, senders):
            w[rows], c[rows] = part.w, part.c
    self_weights = w.diagonal().clone()
    w.fill_diagonal_(0.0)
    coefficients = thetas[0] if senders is None else torch.stack(thetas).expand(n_groups, -1, -1).clone()
    return FunctionFit(w, c, self_weights, coefficients, psi_basis, phi_basis, history, dtype, senders)


def receiver_losses(x: torch.Tensor, y: torch.Tensor, fit: FunctionFit, ridge: float = 1e-8) -> torch.Tensor:
    """Each receiver's mean squared residual (N, K) when it receives through the psi of each group of a grouped ``fit``
    (its W row and phi solved exactly for each), on frames ``x`` and drift ``y`` (T, N), in the fit's precision: the
    group a receiver's own data prefer."""
    if fit.groups is None:
        raise CircuitGNNError("receiver_losses needs a grouped fit (fit_functions with groups)")
    blocks = _prepare(x, y, fit.psi_basis, fit.phi_basis)
    senders = fit.groups.to(x.device)
    n, k = x.shape[1], len(fit.psi_coefficients)
    out = torch.empty(n, k, dtype=torch.float64)
    everyone = torch.arange(n, device=x.device)
    for group in range(k):
        theta = fit.psi_coefficients[group].to(x.device)
        for rows, part in _solve_in_parts(blocks, everyone, theta, fit.psi_basis, fit.phi_basis, ridge, fit.products, senders):
            out[rows.cpu(), group] = part.losses.cpu()
    return out
