"""Exact least-squares W given the current phi* and psi* (variable projection, one block at a time).

With phi* and sender-only psi* held fixed, the model is linear in W:

    dx_i/dt - phi*(x_i, a_i) = sum_{j != i} W_ij psi*_j(t)

so the W that minimises the prediction error over a set of frames solves one linear system, shared by
all rows: G W_i = b_i with G = <psi* psi*^T> (N x N) and b_i = <psi* r_i>, plus the constraint W_ii = 0.
Gradient steps converge slowly on it when activity is low-dimensional: noise-free recordings give G a
condition number near 3e5 (Supp. 13), so Adam leaves W's weakly excited directions unlearned for a long
time, and phi* and psi* bend to make up for them. One solve costs two N x N products per frame chunk
and one N x N inverse.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from circuitgnn.model.gnn import GNN


def _constrained_rows(h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows W_i = argmin w^T G w - 2 w^T b_i subject to w_i = 0, for all i at once; ``h`` = G^-1
    (overwritten), ``b`` = (N, N) with b_i as column i.

    The unconstrained solution h b_i moves along h e_i until its i-th entry is 0 (a Lagrange multiplier).
    """
    free = h @ b
    mult = torch.diagonal(free) / torch.diagonal(h)
    free.sub_(h.mul_(mult[None, :]))  # h is spent: no further N x N temporaries (N = 8000: 512 MB each)
    return free.T.fill_diagonal_(0.0)


@torch.no_grad()
def gram_sums(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, B) = frame means of (f f^T, f r^T) in float64, over (features f, residuals r) pairs of shape (B, N).

    Float64 products: G's condition number can be ~1e5 (noise-free data).
    """
    g: torch.Tensor | None = None
    b: torch.Tensor | None = None
    count = 0
    for f, r in pairs:
        f, r = f.double(), r.double()
        if g is None or b is None:
            g = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
            b = torch.zeros_like(g)
        g.addmm_(f.T, f)
        b.addmm_(f.T, r)
        count += f.shape[0]
    if g is None or b is None or count == 0:
        raise ValueError("the least-squares W needs at least one frame")
    return g / count, b / count


def constrained_solve(g: torch.Tensor, b: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """The W (N, N) with zero diagonal whose row i minimises w^T G w - 2 w^T b_i; ``g`` is overwritten.

    ``ridge`` is added to G's diagonal, relative to its mean eigenvalue (it only matters when some
    senders never vary).
    """
    g.diagonal().add_(ridge * float(torch.diagonal(g).mean()))
    chol, info = torch.linalg.cholesky_ex(g)
    del g
    if int(info) != 0:
        raise ValueError(f"the senders' psi* values are linearly dependent over these frames: raise the ridge (now {ridge:g})")
    return _constrained_rows(torch.cholesky_inverse(chol), b)


@torch.no_grad()
def solve_connectivity(
    model: GNN,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ridge: float = 1e-6,
) -> torch.Tensor:
    """The W (N, N) minimising sum over the frames of |phi*(x) + W psi*(x) - dx/dt|^2 with a zero diagonal.

    ``batches``: (x, dx/dt) pairs of shape (B, N), on the model's device; see :func:`constrained_solve`
    for ``ridge``.
    """
    if model.psi_input == "x_j,a_i,a_j" or model.cfg.low_rank is not None or model.masked:
        raise ValueError("solve_connectivity needs a dense, unmasked W and a sender-only psi* (psi_input x_j or x_j,a_j)")
    pairs = ((model.psi_of_sender(x, model.a), y - model.phi_of(x, model.a)) for x, y in batches)
    g, b = gram_sums(pairs)
    return constrained_solve(g, b, ridge).to(model.W.dtype)
