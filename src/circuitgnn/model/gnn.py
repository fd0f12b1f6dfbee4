"""The interpretable message-passing GNN (paper section 3).

    dx_i/dt = phi*(x_i, a_i) + Omega_i(t) * sum_{j != i} W_ij psi*(inputs_ij) + e_i(t)

with ``W[i, j]`` the weight from sender j to receiver i, learned per-neuron
embeddings ``a_i`` and small MLPs ``phi*`` (update) and ``psi*`` (transfer).

``psi_input`` chooses the inputs of psi*:

* ``x_j``          : psi*(x_j)
* ``x_j,a_j``      : psi*(x_j, a_j)
* ``x_j,a_i,a_j``  : psi*(x_j, a_i, a_j)

The first two depend on the sender only, so psi* is evaluated once per neuron
and frame and the message passing is one dense product ``Psi @ W.T`` over the
batch: never per edge. The pair form is by default a sum of ``pair_rank``
products of a receiver and a sender part (:mod:`circuitgnn.model.pair`), so its
messages are ``pair_rank`` dense products. With ``pair_rank: null`` it is one
MLP on every pair (the paper's), evaluated in chunks of ``pair_chunk``
receivers, so memory stays near ``batch * pair_chunk * N * hidden * 4`` bytes
per layer (about 16 MB for batch 1, chunk 64, N = 1000, hidden 64) while time
grows as N^2.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from circuitgnn.config import ModelConfig
from circuitgnn.model.mlp import MLP
from circuitgnn.model.pair import PairTransfer


def neuron_function(mlp: nn.Module, x: torch.Tensor, a: torch.Tensor | None) -> torch.Tensor:
    """An MLP of each neuron's activity x (..., N), and of its embedding a (N, d) when given: (..., N)."""
    if a is None:
        return mlp(x.unsqueeze(-1)).squeeze(-1)
    return mlp(torch.cat([x.unsqueeze(-1), a.expand(*x.shape, a.shape[-1])], dim=-1)).squeeze(-1)


class GNN(nn.Module):
    """The GNN for ``n_neurons`` neurons; ``mask`` (N, N) marks entries of W allowed to be non-zero."""

    def __init__(self, cfg: ModelConfig, n_neurons: int, mask: np.ndarray | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.n = n = n_neurons
        d = cfg.embedding_dim
        self.psi_input = cfg.psi_input
        n_psi_in = {"x_j": 1, "x_j,a_j": 1 + d, "x_j,a_i,a_j": 1 + 2 * d}[cfg.psi_input]
        self.phi = MLP(1 + d, cfg.hidden, cfg.phi_layers, activation=cfg.activation)
        self.psi: nn.Module
        if cfg.psi_input == "x_j,a_i,a_j" and cfg.pair_rank is not None:
            self.psi = PairTransfer(d, cfg.hidden, cfg.psi_layers, cfg.pair_rank, activation=cfg.activation)
        else:
            self.psi = MLP(n_psi_in, cfg.hidden, cfg.psi_layers, activation=cfg.activation)
        if cfg.fixed_embedding:
            self.register_buffer("a", torch.ones(n, d))
        else:
            self.a = nn.Parameter(torch.ones(n, d))

        self.masked = mask is not None
        if cfg.low_rank is not None:
            if self.masked:
                raise ValueError("model.connectivity_mask cannot be combined with model.low_rank")
            r = cfg.low_rank
            self.L = nn.Parameter(torch.randn(n, r, generator=generator) * (cfg.w_init_std**0.5 / r**0.25))
            self.R = nn.Parameter(torch.randn(r, n, generator=generator) * (cfg.w_init_std**0.5 / r**0.25))
            return
        w = torch.randn(n, n, generator=generator) * cfg.w_init_std
        w.fill_diagonal_(0.0)
        if self.masked:
            allowed = torch.as_tensor(np.asarray(mask) != 0, dtype=torch.float32)
            allowed.fill_diagonal_(0.0)
            self.register_buffer("allowed", allowed, persistent=False)
            w *= allowed
        self.W = nn.Parameter(w)
        # Zeroing the gradient of the diagonal (and of masked entries) keeps them exactly at 0 under Adam
        # without multiplying W by a mask at every step, which would cost as much as the product itself.
        self.W.register_post_accumulate_grad_hook(self._mask_gradient)

    def _mask_gradient(self, w: torch.Tensor) -> None:
        assert w.grad is not None
        if self.masked:
            w.grad.mul_(self.allowed)
        else:
            w.grad.fill_diagonal_(0.0)

    @torch.no_grad()
    def shrink_w(self, threshold: float, keep_norm: bool = False) -> None:
        """Proximal L1 step on the dense W: soft-threshold every entry by ``threshold`` (exact zeros).

        With ``keep_norm`` the result is rescaled to the Frobenius norm W had before the step, so the
        step moves weight from the small entries to the large ones without shrinking W as a whole.
        """
        before = torch.linalg.vector_norm(self.W) if keep_norm else None
        self.W.copy_(torch.nn.functional.softshrink(self.W, threshold))
        if before is not None:  # no host sync on the hot path: an all-zero W stays zero whatever the factor
            self.W.mul_(before / torch.linalg.vector_norm(self.W).clamp_min(torch.finfo(self.W.dtype).tiny))

    # ----------------------------------------------------------------- pieces
    def frames_per_pass(self) -> int:
        """How many frames to evaluate at once when running the model over many: the MLPs' widest activation
        (frames x N x hidden float32) near 4 MiB on a CPU, near 256 MiB on a GPU. On a CPU, larger blocks can come
        as fresh pages from the system at every allocation, whose zeroing costs more than the arithmetic: the MLPs
        of a 1000-neuron model ran 4 to 6 times faster 16 frames at a time than 2,048 (benchmarks/chunk_size.py)."""
        target = (256 if self.a.device.type == "cuda" else 4) << 20
        return max(1, target // (4 * self.n * self.cfg.hidden))

    def connectivity(self) -> torch.Tensor:
        """The learned W (N, N) with the diagonal and masked entries at zero."""
        if self.cfg.low_rank is None:
            return self.W
        return (self.L @ self.R).fill_diagonal_(0.0)

    def phi_of(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """phi*(x, a) for x of shape (..., N) and a of shape (N, d) (broadcast)."""
        return neuron_function(self.phi, x, a)

    def psi_of_sender(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """psi* for the sender-only forms, x (..., N) -> (..., N)."""
        return neuron_function(self.psi, x, None if self.psi_input == "x_j" else a)

    def psi_of_pair(self, x: torch.Tensor, a_receiver: torch.Tensor, a_sender: torch.Tensor) -> torch.Tensor:
        """psi*(x_j, a_i, a_j) for x (..., N_j), a_receiver (N_i, d), a_sender (N_j, d) -> (..., N_i, N_j)."""
        if isinstance(self.psi, PairTransfer):
            return self.psi.pairs(x, a_receiver, a_sender)
        shape = (*x.shape[:-1], a_receiver.shape[0], x.shape[-1])
        z = torch.cat(
            [
                x.unsqueeze(-2).expand(shape).unsqueeze(-1),
                a_receiver[:, None, :].expand(*shape, a_receiver.shape[-1]),
                a_sender[None, :, :].expand(*shape, a_sender.shape[-1]),
            ],
            dim=-1,
        )
        return self.psi(z).squeeze(-1)

    def psi_of_own_type(self, x: torch.Tensor) -> torch.Tensor:
        """psi* of each sender j at activity x (..., N), with the receiver's embedding taken equal to the
        sender's for the pair form (a_i = a_j, as the paper's regulariser and normalisation do)."""
        if self.psi_input != "x_j,a_i,a_j":
            return self.psi_of_sender(x, self.a)
        a_pair = torch.cat([self.a, self.a], dim=-1)
        return self.psi(torch.cat([x.unsqueeze(-1), a_pair.expand(*x.shape, -1)], dim=-1)).squeeze(-1)

    def messages(self, x: torch.Tensor) -> torch.Tensor:
        """M_i = sum_{j != i} W_ij psi*_ij for a batch x of shape (B, N)."""
        if self.psi_input != "x_j,a_i,a_j":
            psi = self.psi_of_sender(x, self.a)  # (B, N), one value per sender
            if self.cfg.low_rank is not None:  # (L R - diag(L R)) without forming the N x N matrix
                return (psi @ self.R.T) @ self.L.T - psi * (self.L * self.R.T).sum(-1)
            return psi @ self.W.T  # row i of W weights the senders of neuron i
        w = self.connectivity()
        if isinstance(self.psi, PairTransfer):
            return self.psi.messages(x, self.a, w)
        out = []
        c = self.cfg.pair_chunk
        for start in range(0, self.n, c):
            stop = min(start + c, self.n)
            psi = self.psi_of_pair(x, self.a[start:stop], self.a)  # (B, c, N)
            out.append((psi * w[start:stop]).sum(-1))
        return torch.cat(out, dim=-1)

    def forward(self, x: torch.Tensor, omega: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted dx/dt (B, N) for states x (B, N), multiplicative input ``omega`` and additive ``extra``."""
        m = self.messages(x)
        if omega is not None:
            m = m * omega
        out = self.phi_of(x, self.a) + m
        if extra is not None:
            out = out + extra
        return out
