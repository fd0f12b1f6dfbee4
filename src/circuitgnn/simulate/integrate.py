"""Time integration of a ground-truth circuit, streamed in chunks of frames.

Per step (paper 2.1): ``x <- x + dt * f(x, t) + noise_std * xi`` with
``xi ~ N(0, I)``; the noise is a per-step standard deviation, not scaled by dt.
``rk4`` replaces the Euler increment by the classical Runge-Kutta one and adds
the same per-step noise. Burn-in steps are integrated but not saved. For each
saved frame k we record the state x_k *before* the update and the exact
noise-free drift f(x_k, t_k), which is the training target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from circuitgnn.data.indicators import Indicator
from circuitgnn.errors import SimulationDiverged
from circuitgnn.simulate.neuron_models import Circuit
from circuitgnn.simulate.stimuli import Stimulus

_CHUNK_BYTES = 4 * 2**20  # size of one chunk of saved frames per array


@dataclass
class ActivityStats:
    """Running statistics of the saved activity, accumulated chunk by chunk."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    drift_sq: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def update(self, x: torch.Tensor, f: torch.Tensor) -> None:
        xd = x.double()
        self.count += x.numel()
        self.total += float(xd.sum())
        self.total_sq += float((xd * xd).sum())
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))
        self.drift_sq += float((f.double() ** 2).sum())

    def as_dict(self) -> dict[str, float]:
        mean = self.total / max(self.count, 1)
        var = max(self.total_sq / max(self.count, 1) - mean * mean, 0.0)
        return {
            "x_min": self.minimum,
            "x_max": self.maximum,
            "x_mean": mean,
            "x_std": float(np.sqrt(var)),
            "dxdt_rms": float(np.sqrt(self.drift_sq / max(self.count, 1))),
        }


def chunk_frames(n_neurons: int) -> int:
    """Frames per chunk: about 4 MiB of float32 per array."""
    return max(1, _CHUNK_BYTES // (4 * n_neurons))


class Integrator:
    """Integrates a :class:`Circuit` driven by a :class:`Stimulus`.

    ``run(x0, sink)`` calls ``sink(blocks)`` with consecutive chunks of saved
    frames (``{"x", "dxdt"[, "omega"]}``, numpy float32 (frames, N)) and
    returns the running activity statistics. With an ``indicator``, each chunk also holds its
    fluorescence at the saved frames (``"fluorescence"``), the calcium following the activity at every
    integration step from rest at the start of burn-in. Non-finite values stop the run
    with :class:`SimulationDiverged` naming the first bad frame; no chunk that
    contains it is handed to the sink.
    """

    def __init__(
        self,
        circuit: Circuit,
        stimulus: Stimulus,
        dt: float,
        noise_std: float,
        method: str,
        generator: torch.Generator,
        indicator: Indicator | None = None,
    ):
        self.circuit = circuit
        self.stimulus = stimulus
        self.dt = dt
        self.noise_std = noise_std
        self.method = method
        self.generator = generator
        self.device = circuit.device
        self.n = circuit.n_neurons
        self.indicator = indicator
        self._calcium: tuple[torch.Tensor, torch.Tensor] | None = None

    def _follow(self, x: torch.Tensor) -> None:
        """Advance the indicator one integration step, the activity ``x`` (before the step) held over it."""
        if self.indicator is None:
            return
        if self._calcium is None:
            self._calcium = self.indicator.initial_state(x)
        self._calcium = self.indicator.step(self._calcium, x, self.dt)

    def _f(self, x: torch.Tensor, step: float) -> torch.Tensor:
        omega, extra = self.stimulus.inputs(step)
        return self.circuit.drift(x, omega, extra)

    def _increment(self, x: torch.Tensor, f: torch.Tensor, step: int) -> torch.Tensor:
        """dt times the deterministic update, given f = f(x, t_step)."""
        if self.method == "euler":
            return self.dt * f
        h = self.dt
        k2 = self._f(x + 0.5 * h * f, step + 0.5)
        k3 = self._f(x + 0.5 * h * k2, step + 0.5)
        k4 = self._f(x + h * k3, step + 1)
        return (h / 6.0) * (f + 2 * k2 + 2 * k3 + k4)

    def _noise(self, n_steps: int) -> torch.Tensor | None:
        if self.noise_std == 0:
            return None
        z = torch.randn((n_steps, self.n), generator=self.generator, device=self.device)
        return z.mul_(self.noise_std)

    def burn_in(self, x: torch.Tensor, n_steps: int, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Integrate ``n_steps`` unsaved steps ending just before saved frame 0."""
        c = chunk_frames(self.n)
        for start in range(-n_steps, 0, c):
            stop = min(start + c, 0)
            noise = self._noise(stop - start)
            for k, step in enumerate(range(start, stop)):
                self._follow(x)
                x = x + self._increment(x, self._f(x, step), step)
                if noise is not None:
                    x = x + noise[k]
            if not bool(torch.isfinite(x).all()):
                raise SimulationDiverged(
                    f"the activity became NaN or infinite during burn-in, before step {stop - 1} "
                    f"(t = {(stop - 1) * self.dt:g}); reduce the gain, the weights' scale or dt"
                )
            if progress is not None:
                progress(stop - start)
        return x

    def run(
        self,
        x: torch.Tensor,
        n_frames: int,
        sink: Callable[[dict[str, np.ndarray]], None],
        progress: Callable[[int], None] | None = None,
        every: int = 1,
    ) -> ActivityStats:
        """Integrate ``n_frames * every`` steps from ``x``, saving the state (and drift, input) of every ``every``-th step."""
        stats = ActivityStats()
        c = chunk_frames(self.n)
        record_input = self.stimulus.active
        for start in range(0, n_frames, c):
            m = min(c, n_frames - start)
            xb = torch.empty((m, self.n), device=self.device)
            fb = torch.empty((m, self.n), device=self.device)
            ob = torch.empty((m, self.n), device=self.device) if record_input else None
            fl = torch.empty((m, self.n), device=self.device) if self.indicator is not None else None
            noise = self._noise(m * every)
            for k in range(m):
                for sub in range(every):
                    step = (start + k) * every + sub
                    omega, extra = self.stimulus.inputs(step)
                    f = self.circuit.drift(x, omega, extra)
                    if sub == 0:
                        xb[k] = x
                        fb[k] = f
                        if ob is not None:
                            ob[k] = omega if omega is not None else extra
                        if fl is not None:
                            assert self.indicator is not None
                            if self._calcium is None:
                                self._calcium = self.indicator.initial_state(x)
                            fl[k] = self.indicator.fluorescence(self._calcium[1])
                    self._follow(x)
                    x = x + self._increment(x, f, step)
                    if noise is not None:
                        x = x + noise[k * every + sub]
            finite = torch.isfinite(xb).all(dim=1) & torch.isfinite(fb).all(dim=1)
            if fl is not None:
                finite &= torch.isfinite(fl).all(dim=1)
            if not bool(finite.all()):
                bad = start + int(torch.argmin(finite.to(torch.int8)))
                raise SimulationDiverged(
                    f"the activity became NaN or infinite at saved frame {bad} (t = {bad * every * self.dt:g}); "
                    "nothing was published. Reduce the gain, the weights' scale, the noise or dt"
                )
            stats.update(xb, fb)
            blocks = {"x": xb.cpu().numpy(), "dxdt": fb.cpu().numpy()}
            if ob is not None:
                blocks["omega"] = ob.cpu().numpy()
            if fl is not None:
                blocks["fluorescence"] = fl.cpu().numpy()
            sink(blocks)
            if progress is not None:
                progress(m)
        return stats
