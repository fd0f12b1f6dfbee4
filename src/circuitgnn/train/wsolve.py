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

from circuitgnn.model.gnn import CircuitGNN


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
def solve_connectivity(
    model: CircuitGNN,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ridge: float = 1e-6,
) -> torch.Tensor:
    """The W (N, N) minimising sum over the frames of |phi*(x) + W psi*(x) - dx/dt|^2 with a zero diagonal.

    ``batches``: (x, dx/dt) pairs of shape (B, N), on the model's device. ``ridge`` is added to G's
    diagonal, relative to G's mean eigenvalue (it only matters when some senders never vary).
    Products and sums are taken in float64.
    """
    if model.psi_input == "x_j,a_i,a_j" or model.cfg.low_rank is not None or model.masked:
        raise ValueError("solve_connectivity needs a dense, unmasked W and a sender-only psi* (psi_input x_j or x_j,a_j)")
    n = model.n
    dev = model.a.device
    g = torch.zeros(n, n, dtype=torch.float64, device=dev)
    b = torch.zeros(n, n, dtype=torch.float64, device=dev)
    count = 0
    for x, y in batches:
        psi = model.psi_of_sender(x, model.a).double()  # float64 products: G's condition number can be ~1e5
        r = (y - model.phi_of(x, model.a)).double()
        g.addmm_(psi.T, psi)
        b.addmm_(psi.T, r)
        count += x.shape[0]
    if count == 0:
        raise ValueError("solve_connectivity needs at least one frame")
    g /= count
    b /= count
    g.diagonal().add_(ridge * float(torch.diagonal(g).mean()))
    chol, info = torch.linalg.cholesky_ex(g)
    del g
    if int(info) != 0:
        raise ValueError(f"the senders' psi* values are linearly dependent over these frames: raise the ridge (now {ridge:g})")
    h = torch.cholesky_inverse(chol)
    return _constrained_rows(h, b).to(model.W.dtype)
