"""Calcium indicators: from a neuron's activity x to the fluorescence F a microscope records, and back.

For each neuron (see :class:`~circuitgnn.config.indicator.IndicatorConfig`)::

    r' = (f(x) - r) / rise,   c' = (r - c) / tau        (r = f(x) when rise = 0)
    F  = scale * h(c) + baseline,   h(c) = c^n / (c^n + K^n)  or  h(c) = c without saturation

The forward model (:meth:`Indicator.step`) is exact for an input f(x) held constant over the step
(zero-order hold), so the simulator and the fluorescence objective share one discretisation. The
inverse (:meth:`Indicator.calcium`, :meth:`Indicator.drive`) is what deconvolution applies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.config.io import format_validation_error
from circuitgnn.errors import ConfigError, DatasetError

_EPS = 1e-6  # how close to 0 or to full saturation an inverted value may come


class Indicator:
    """One indicator model (all neurons share it); ``state`` is the pair (r, c) of (…, N) tensors."""

    def __init__(self, config: IndicatorConfig):
        self.cfg = config

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None, source: str) -> Indicator:
        """The indicator described in a dataset's meta.json (``indicator``), naming the file when it is absent or wrong."""
        if not meta:
            raise DatasetError(f"{source} names no calcium indicator (meta.json 'indicator'): give one (tau, ...)")
        if not isinstance(meta, dict):
            raise DatasetError(f"{source}: the indicator must be a mapping of its parameters (tau, ...), got {meta!r}")
        try:
            return cls(indicator_config(meta, source))
        except ConfigError as err:
            raise DatasetError(str(err)) from None

    # ----------------------------------------------------------- forward
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): what of the activity drives the calcium."""
        kind = self.cfg.transform
        if kind == "softplus":
            return torch.nn.functional.softplus(x)
        if kind == "relu":
            return torch.relu(x)
        return x

    def fluorescence(self, c: torch.Tensor) -> torch.Tensor:
        """F of calcium c."""
        cfg = self.cfg
        if cfg.saturation is None:
            return cfg.scale * c + cfg.baseline
        cn = c.clamp(min=0) ** cfg.hill
        return cfg.scale * cn / (cn + cfg.saturation**cfg.hill) + cfg.baseline

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The indicator at rest for activity x held forever: r = c = f(x)."""
        u = self.transform(x)
        return u, u.clone()

    def step(self, state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, h: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The indicator ``h`` later, f(x) held over the step: the exact solution of the linear ODEs."""
        r, c = state
        u = self.transform(x)
        decay = math.exp(-h / self.cfg.tau)
        if self.cfg.rise == 0:
            return u, u + (c - u) * decay
        tr, td = self.cfg.rise, self.cfg.tau
        # with r~ = r - u and c~ = c - u: r~(h) = r~ e^(-h/tr), c~(h) = A e^(-h/tr) + (c~ - A) e^(-h/td), A = r~ tr / (tr - td)
        rise_decay = math.exp(-h / tr)
        rt, ct = r - u, c - u
        a = rt * (tr / (tr - td))
        return u + rt * rise_decay, u + a * rise_decay + (ct - a) * decay

    # ----------------------------------------------------------- inverse
    def calcium(self, f: np.ndarray) -> np.ndarray:
        """c of fluorescence F: the inverse of :meth:`fluorescence`, values beyond saturation clipped just inside it."""
        cfg = self.cfg
        y = (np.asarray(f, dtype=np.float64) - cfg.baseline) / cfg.scale
        if cfg.saturation is None:
            return y
        y = np.clip(y, _EPS, 1 - _EPS)
        return cfg.saturation * (y / (1 - y)) ** (1 / cfg.hill)

    def drive(self, c: np.ndarray, dc: np.ndarray, d2c: np.ndarray) -> np.ndarray:
        """f(x) from the calcium and its first two time derivatives: u = c + (rise + tau) c' + rise tau c''."""
        cfg = self.cfg
        return c + (cfg.rise + cfg.tau) * dc + cfg.rise * cfg.tau * d2c

    def activity(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x = f^-1(u) and dx/du. ReLU's negative part is unobservable: there x = u, the identity's answer."""
        if self.cfg.transform != "softplus":
            return u, np.ones_like(u)
        v = np.maximum(u, _EPS)
        return v + np.log(-np.expm1(-v)), 1.0 / -np.expm1(-v)

    def describe(self) -> str:
        """One line for reports: the model and its parameters."""
        c = self.cfg
        parts = [f"tau {c.tau:g}", *([f"rise {c.rise:g}"] if c.rise else []), f"f = {c.transform}"]
        if c.saturation is not None:
            parts.append(f"saturation K {c.saturation:g}, Hill n {c.hill:g}")
        parts.append(
            f"F = {c.scale:g} x (calcium) + {c.baseline:g}" if c.saturation is None else f"scale {c.scale:g}, baseline {c.baseline:g}"
        )
        return ", ".join(parts)


def indicator_config(base: dict[str, Any] | None, source: str, **changes: Any) -> IndicatorConfig:
    """The indicator ``base`` (e.g. a recording's, or none) with ``changes`` (None values ignored); a named error when invalid."""
    settings = {**(base or {}), **{k: v for k, v in changes.items() if v is not None}}
    try:
        return IndicatorConfig(**settings)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"{source} (indicator)")) from None
