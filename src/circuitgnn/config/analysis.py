"""Settings of the analyze layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitgnn.config.base import StrictModel


class AnalysisConfig(StrictModel):
    """What `circuitgnn evaluate` computes besides the standard metrics."""

    symbolic: bool = Field(True, description="fit closed-form formulas to the learned phi* and psi* (symbolic.json)")
    symbolic_backend: Literal["grammar", "pysr"] = Field(
        "grammar", description="grammar: offline search over rate-model expressions; pysr: PySR (needs pysr and Julia)"
    )
