"""Settings of the model layer: the GNN's functions, embeddings, W and learned inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from circuitgnn.config.base import StrictModel


class ModelConfig(StrictModel):
    """The interpretable GNN: dx_i/dt = phi*(x_i, a_i) + Omega_i(t) * sum_{j != i} W_ij psi*(inputs)."""

    psi_input: Literal["x_j", "x_j,a_j", "x_j,a_i,a_j"] = Field(
        "x_j", description="inputs of psi*: sender activity only (Fig. 2), with the sender's embedding (transmitters), or both embeddings"
    )
    embedding_dim: int = Field(2, ge=1, description="dimension of the learned per-neuron embedding a_i")
    fixed_embedding: bool = Field(False, description="one shared, fixed embedding for all neurons (the paper's Supp. 3 ablation)")
    hidden: int = Field(64, ge=1, description="width of the hidden layers of phi* and psi*")
    phi_layers: int = Field(3, ge=1, description="number of linear layers of phi*")
    psi_layers: int = Field(3, ge=1, description="number of linear layers of psi*")
    activation: Literal["relu", "tanh", "silu", "gelu", "softplus"] = Field("relu", description="activation of the hidden layers")
    w_init_std: float = Field(
        0.01, ge=0, description="std of the initial W; the paper's 1.0 is far above the true scale and slows recovery"
    )
    low_rank: int | None = Field(None, ge=1, description="learn W = L R of this rank instead of a dense matrix (for large N)")
    connectivity_mask: Path | None = Field(
        None, description=".npy (N, N) of 0/1: entries known to be zero are masked out of W (prior knowledge)"
    )
    external_input: Literal["none", "known", "field", "additive_lowrank"] = Field(
        "none",
        description="known: the dataset's recorded input (omega.npy) as Omega or e; field: learn a hidden Omega*(x, y, t) "
        "= SIREN^2 on the dataset's stimulus grid (Fig. 3); additive_lowrank: learn an additive e*(t) = U V",
    )
    siren_hidden: int = Field(128, ge=1, description="external_input field: width of the SIREN")
    siren_layers: int = Field(5, ge=0, description="external_input field: hidden sine layers after the first")
    siren_omega0: float = Field(30.0, gt=0, description="external_input field: frequency omega_0 of the sine layers")
    input_rank: int = Field(8, ge=1, description="external_input additive_lowrank: rank r of e*(t) = U[t] V")
    pair_rank: int | None = Field(
        8,
        ge=1,
        description="psi_input x_j,a_i,a_j: psi* = sum_r u_r(a_i) v_r(x_j, a_j) with this many terms (a few dense products "
        "per step, circuitgnn.model.pair); null: one MLP on every pair (the paper's; N^2 evaluations per frame)",
    )
    pair_chunk: int = Field(
        64, ge=1, description="psi_input x_j,a_i,a_j: receivers per chunk; memory ~ batch x chunk x N x hidden x 4 bytes"
    )
