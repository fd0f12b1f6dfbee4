"""One experiment: the sections of every layer and the checks that span sections."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from circuitgnn.config.analysis import AnalysisConfig
from circuitgnn.config.base import StrictModel
from circuitgnn.config.model import ModelConfig
from circuitgnn.config.simulation import SimulationConfig
from circuitgnn.config.training import TrainingConfig


class ExperimentConfig(StrictModel):
    """One experiment: a name, a description and its sections."""

    name: str = Field("experiment", description="short name, used in folder names and reports")
    description: str = Field("", description="one line on what the experiment shows")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig, description="ground-truth simulation")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the GNN")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="optimisation")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig, description="evaluation extras")

    @model_validator(mode="after")
    def _shrink_needs_dense_w(self) -> ExperimentConfig:
        if self.training.regularization.w_shrink.value > 0 and self.model.low_rank is not None:
            raise ValueError("training.regularization.w_shrink acts on a dense W: it cannot be combined with model.low_rank")
        return self

    @model_validator(mode="after")
    def _stop_at_ari_needs_unfrozen_epochs(self) -> ExperimentConfig:
        cc = self.training.clustering
        if self.training.extensions.stop_clustering_at_ari is not None and cc.every_epochs <= cc.freeze_epochs:
            # with no unfrozen epoch between two clusterings the embeddings cannot move, so the next
            # partition repeats the last one whatever the data say, and clustering would stop at once
            raise ValueError(
                f"training.extensions.stop_clustering_at_ari needs clustering.every_epochs ({cc.every_epochs}) > freeze_epochs ({cc.freeze_epochs})"
            )
        return self

    @model_validator(mode="after")
    def _exact_solves_need_a_linear_w(self) -> ExperimentConfig:
        m, reg, ext = self.model, self.training.regularization, self.training.extensions
        pair = {"model.psi_input x_j,a_i,a_j": m.psi_input == "x_j,a_i,a_j"}
        clashes = {
            "model.low_rank": m.low_rank is not None,
            "model.connectivity_mask": m.connectivity_mask is not None,
            f"model.external_input {m.external_input}": m.external_input != "none",
        }
        penalties = {"training.regularization.w_l1": reg.w_l1.value > 0, "training.regularization.w_shrink": reg.w_shrink.value > 0}
        objective = {f"training.objective {self.training.objective}": self.training.objective != "derivative"}
        for name, used, needs in (
            ("w_solve", ext.w_solve, pair | clashes | penalties),
            ("warm_start", ext.warm_start, clashes | objective),
        ):
            found = [setting for setting, clash in needs.items() if clash]
            if used is not None and found:
                unpenalised = ", unpenalised" if name == "w_solve" else ""
                sender = " and a sender-only psi*" if name == "w_solve" else " and psi*"
                raise ValueError(
                    f"training.extensions.{name} needs a dense{unpenalised} W{sender} without input"
                    f"{', fitted on dx/dt' if name == 'warm_start' else ''}: remove {', '.join(found)}"
                )
        return self

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError(f"name must be non-empty without spaces or slashes, got {v!r}")
        return v
