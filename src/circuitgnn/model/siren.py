"""Implicit neural representations of an unknown external input (paper section 3.6).

* :class:`Siren`: a sine-activated MLP (Sitzmann et al. 2020) with its initialisation.
* :class:`StimulusField`: Omega*(x, y, t) = Siren(x, y, t)^2 on the driven neurons' grid
  coordinates, 1 on the others; multiplies the summed input as in Fig. 3.
* :class:`LowRankInput`: an additive unknown input e*(t) = U[t] V, one rank-r factorisation over
  the frames, for recordings whose unknown inputs are not on a grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from circuitgnn.config import ModelConfig
from circuitgnn.simulate.neurons import grid_coordinates


class SineLayer(nn.Module):
    """sin(omega_0 (W z + b)) with the SIREN initialisation."""

    def __init__(self, n_in: int, n_out: int, omega_0: float, first: bool):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(n_in, n_out)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / omega_0
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(z))


class Siren(nn.Module):
    """``n_in`` -> sine layer -> ``hidden_layers`` sine layers -> linear -> ``n_out``."""

    def __init__(self, n_in: int, hidden: int, hidden_layers: int, n_out: int = 1, omega_0: float = 30.0):
        super().__init__()
        layers: list[nn.Module] = [SineLayer(n_in, hidden, omega_0, first=True)]
        layers += [SineLayer(hidden, hidden, omega_0, first=False) for _ in range(hidden_layers)]
        last = nn.Linear(hidden, n_out)
        bound = math.sqrt(6.0 / hidden) / omega_0
        nn.init.uniform_(last.weight, -bound, bound)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class StimulusField(nn.Module):
    """Omega*_i(t) for all neurons: Siren(x_i, y_i, t)^2 for the driven ones, 1 for the others.

    ``coords`` (n_driven, 2) are the driven neurons' grid coordinates in [0, 1]^2; t is the
    frame index divided by the number of frames, in [0, 1].
    """

    def __init__(self, coords: torch.Tensor, n_neurons: int, hidden: int, hidden_layers: int, omega_0: float):
        super().__init__()
        self.n_neurons = n_neurons
        self.register_buffer("coords", torch.as_tensor(coords, dtype=torch.float32))
        self.siren = Siren(3, hidden, hidden_layers, 1, omega_0)

    @property
    def n_driven(self) -> int:
        return int(self.coords.shape[0])

    def driven_values(self, t: torch.Tensor) -> torch.Tensor:
        """Omega* of the driven neurons at times t (B,): (B, n_driven)."""
        b, m = t.shape[0], self.n_driven
        z = torch.cat([self.coords.expand(b, m, 2), t[:, None, None].expand(b, m, 1)], dim=-1)
        return self.siren(z).squeeze(-1) ** 2

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        rest = torch.ones(t.shape[0], self.n_neurons - self.n_driven, device=t.device)
        return torch.cat([self.driven_values(t), rest], dim=1)


class LowRankInput(nn.Module):
    """Additive unknown input e*[k] = U[k] V for frame k: (n_frames, rank) x (rank, n_neurons)."""

    def __init__(self, n_frames: int, n_neurons: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        self.U = nn.Parameter(torch.randn(n_frames, rank, generator=generator) * 0.01)
        self.V = nn.Parameter(torch.randn(rank, n_neurons, generator=generator) * 0.01)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.U[frames] @ self.V


def make_input_model(
    cfg: ModelConfig, n_frames: int, n_neurons: int, grid_size: int, generator: torch.Generator | None
) -> nn.Module | None:
    """The learned external input that ``cfg.external_input`` asks for, or None (none, or a known input)."""
    if cfg.external_input == "field":
        coords = torch.as_tensor(grid_coordinates(grid_size), dtype=torch.float32)
        return StimulusField(coords, n_neurons, cfg.siren_hidden, cfg.siren_layers, cfg.siren_omega0)
    if cfg.external_input == "additive_lowrank":
        return LowRankInput(n_frames, n_neurons, cfg.input_rank, generator)
    return None
