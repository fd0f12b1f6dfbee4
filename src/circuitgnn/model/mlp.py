"""Small fully connected networks for phi* and psi*."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus}


class MLP(nn.Module):
    """``layers`` linear layers in -> hidden -> ... -> out, the activation after all but the last.

    Initialisation as in the paper (spec 3.3): PyTorch's default for the first
    layer, N(0, 0.1^2) weights and zero biases for the following ones, so the
    output starts small.
    """

    def __init__(self, n_in: int, hidden: int, layers: int, n_out: int = 1, activation: str = "relu"):
        super().__init__()
        if layers < 1:
            raise ValueError(f"an MLP needs at least 1 layer, got {layers}")
        sizes = [n_in] + [hidden] * (layers - 1) + [n_out]
        mods: list[nn.Module] = []
        for k in range(layers):
            lin = nn.Linear(sizes[k], sizes[k + 1])
            if k > 0:
                nn.init.normal_(lin.weight, std=0.1)
                nn.init.zeros_(lin.bias)
            mods.append(lin)
            if k < layers - 1:
                mods.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
