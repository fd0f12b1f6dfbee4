"""Settings of a calcium indicator: how a neuron's activity becomes the fluorescence a microscope records.

The indicator model (:mod:`circuitgnn.data.indicators`) is, for each neuron,

    r' = (f(x) - r) / rise,   c' = (r - c) / tau      (r = f(x) when rise is 0: one exponential)
    F = scale * c^n / (c^n + K^n) + baseline          (F = scale * c + baseline without saturation)

with f the identity, softplus or ReLU. The simulator uses it to write calcium recordings; the
deconvolution and the fluorescence objective of training invert or follow it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from circuitgnn.config.base import StrictModel


class IndicatorConfig(StrictModel):
    """A calcium indicator: decay (and optional rise) time constant, transform, saturation, scale, baseline."""

    tau: float = Field(0.5, gt=0, allow_inf_nan=False, description="decay time constant of the calcium, in time units")
    rise: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="rise time constant (a second exponential before the decay); 0 = instantaneous rise"
    )
    transform: Literal["identity", "softplus", "relu"] = Field(
        "identity", description="f, what of the activity enters the calcium: identity, softplus or relu"
    )
    saturation: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="calcium K of half-saturation (Hill F = c^n / (c^n + K^n)); null = linear"
    )
    hill: float = Field(1.0, gt=0, allow_inf_nan=False, description="Hill exponent n of the saturation")
    scale: float = Field(1.0, gt=0, allow_inf_nan=False, description="fluorescence per unit of calcium (or at full saturation)")
    baseline: float = Field(0.0, allow_inf_nan=False, description="fluorescence at zero calcium")

    @model_validator(mode="after")
    def _check(self) -> IndicatorConfig:
        if self.rise >= self.tau:
            raise ValueError(f"indicator.rise ({self.rise:g}) must be shorter than indicator.tau ({self.tau:g})")
        if self.saturation is not None and self.transform == "identity":
            raise ValueError("indicator.saturation needs a calcium that is never negative: set indicator.transform to softplus or relu")
        return self
