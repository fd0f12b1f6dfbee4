"""Black-box forecasters a user would pick instead of the GNN: a GRU and a small causal transformer.

Each reads a window of past frames and predicts the next frame's change; trained on the next step
(teacher forcing) for a time budget, then rolled out on its own predictions. Both give forecasts
only: no connectivity, no types, no functions. Their size is set by ``hidden`` or by a parameter
budget (``n_parameters``), so that they can be compared with the GNN at its parameter count.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from circuitgnn.analyze.baselines.linear import _check_dt
from circuitgnn.data.activity import as_float32_frames
from circuitgnn.data.derivatives import segment_bounds
from circuitgnn.device import pick_device
from circuitgnn.errors import CircuitGNNError


class _GRUNet(nn.Module):
    def __init__(self, n: int, hidden: int, context: int):
        super().__init__()
        self.gru = nn.GRU(n, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, L, N) -> (B, L, N) next-step change
        return self.head(self.gru(z)[0])


class _TransformerNet(nn.Module):
    def __init__(self, n: int, hidden: int, context: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(n, hidden)
        self.position = nn.Parameter(torch.zeros(context, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, n)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        length = z.shape[1]
        h = self.embed(z) + self.position[:length]
        return self.head(self.body(h, mask=self.mask[:length, :length], is_causal=True))


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


class _SequenceForecaster:
    _kind: str
    _step: int  # hidden sizes are multiples of this (a transformer's heads must divide its width)

    def __init__(
        self,
        hidden: int | None = None,
        n_parameters: int | None = None,
        context: int = 32,
        batch_size: int = 16,
        lr: float = 1e-3,
        minutes: float = 5.0,
        max_iterations: int | None = None,
        seed: int = 0,
        device: str | None = None,
        progress: bool = True,
    ):
        if (hidden is None) == (n_parameters is None):
            raise CircuitGNNError("give exactly one of hidden (the width) or n_parameters (a parameter budget)")
        for name, value in (("hidden", hidden), ("n_parameters", n_parameters), ("context", context), ("batch_size", batch_size)):
            if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
                raise CircuitGNNError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(minutes, numbers.Real) or not minutes > 0:
            raise CircuitGNNError(f"minutes must be a positive number, got {minutes!r}")
        self.hidden, self.n_parameters, self.context, self.batch_size = hidden, n_parameters, int(context), int(batch_size)
        self.lr, self.minutes, self.max_iterations, self.seed = float(lr), float(minutes), max_iterations, int(seed)
        self.device, self.progress = device, progress

    def _net(self, n: int, hidden: int) -> nn.Module:
        return (_GRUNet if self._kind == "gru" else _TransformerNet)(n, hidden, self.context)

    def _width(self, n: int) -> int:
        """The hidden size: given, or the largest whose parameter count stays within the budget."""
        if self.hidden is not None:
            return int(self.hidden)
        assert self.n_parameters is not None
        if _count(self._net(n, self._step)) > self.n_parameters:
            raise CircuitGNNError(f"n_parameters {self.n_parameters:,} is below the smallest {self._kind} for {n} neurons")
        high = 1
        while _count(self._net(n, 2 * high * self._step)) <= self.n_parameters:
            high *= 2
        low, high = high, 2 * high - 1
        while low < high:  # the largest multiple of _step within the budget
            mid = (low + high + 1) // 2
            low, high = (mid, high) if _count(self._net(n, mid * self._step)) <= self.n_parameters else (low, mid - 1)
        return low * self._step

    def fit(self, x: np.ndarray, dt: float, segments: Sequence[int] = (0,)) -> _SequenceForecaster:
        """Train on activity ``x`` (T, N) sampled every ``dt``; windows never cross a segment start or a missing value."""
        start_time = time.perf_counter()
        self.dt_ = _check_dt(dt)
        xa = as_float32_frames(x, "x")
        n = xa.shape[1]
        complete = np.isfinite(xa).all(axis=1)
        starts = []
        for a, b in segment_bounds(xa.shape[0], segments):
            bad = np.concatenate([[0], np.cumsum(~complete[a:b])])  # missing frames before each position
            s = np.arange(a, b - self.context)
            starts.append(s[bad[s - a + self.context + 1] == bad[s - a]])
        windows = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        if len(windows) == 0:
            raise CircuitGNNError(f"x has no {self.context + 1} consecutive complete frames within a segment to train on")
        rows = xa[complete]
        self.mean_ = rows.mean(axis=0)
        self.std_ = rows.std(axis=0) + 1e-6
        step_std = np.nanstd(np.diff(xa, axis=0), axis=0)
        self.step_scale_ = float(np.median(step_std / self.std_)) or 1.0
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        dev = pick_device(self.device)
        self.n_neurons_ = n
        self.hidden_ = self._width(n)
        self.net_ = self._net(n, self.hidden_).to(dev)
        self.n_parameters_ = _count(self.net_)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        z_all = (xa - self.mean_) / self.std_  # memory-mapped data stay mapped: windows are read per batch
        offsets = np.arange(self.context + 1)
        deadline = start_time + 60 * self.minutes
        self.history_: list[float] = []
        bar = tqdm(desc=f"{self._kind} ({self.n_parameters_:,} parameters)", unit="it", disable=not self.progress, leave=False)
        it = 0
        while time.perf_counter() < deadline and (self.max_iterations is None or it < self.max_iterations):
            pick = windows[rng.integers(0, len(windows), self.batch_size)]
            z = torch.as_tensor(np.asarray(z_all[pick[:, None] + offsets], dtype=np.float32), device=dev)
            pred = self.net_(z[:, :-1]) * self.step_scale_
            loss = ((pred - (z[:, 1:] - z[:, :-1])) ** 2).mean() / self.step_scale_**2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            if it % 50 == 0:
                value = loss.item()
                self.history_.append(value)
                bar.set_postfix(loss=f"{value:.3g}")
            bar.update()
        bar.close()
        self.iterations_ = it
        self.net_.eval()
        self.fit_seconds_ = time.perf_counter() - start_time
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise CircuitGNNError(f"this {type(self).__name__} is not fitted yet: call fit(x, dt) first")

    @torch.no_grad()
    def _next(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised next frame after each window of ``z`` (B, L, N): (B, N)."""
        return z[:, -1] + self.net_(z)[:, -1] * self.step_scale_

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """dx/dt at each frame of the sequence ``x`` (T, N), as (next frame - frame) / dt, each frame's next
        predicted from it and up to ``context - 1`` frames before it (the first frame's: NaN)."""
        self._check_fitted()
        xa = as_float32_frames(x, "x", self.n_neurons_)
        dev = next(self.net_.parameters()).device
        z = torch.as_tensor((xa - self.mean_) / self.std_, device=dev)
        nxt = torch.full(z.shape, float("nan"), device=dev)
        for t in range(1, min(self.context - 1, len(z))):  # a shorter history than the context at the start
            nxt[t] = self._next(z[None, : t + 1])[0]
        windows = z.unfold(0, self.context, 1).permute(0, 2, 1)  # (T - C + 1, C, N): window k ends at frame k + C - 1
        for k in range(0, len(windows), 256):
            nxt[k + self.context - 1 : k + self.context - 1 + 256] = self._next(windows[k : k + 256])
        out = ((nxt.cpu().numpy() * self.std_ + self.mean_) - xa) / self.dt_
        out[0] = np.nan
        return out.astype(np.float32)

    @torch.no_grad()
    def simulate(self, history: np.ndarray, n_steps: int) -> np.ndarray:
        """Forecast ``n_steps`` frames after ``history`` ((L, N) recent frames, or one state (N,)), feeding each
        prediction back: returns (n_steps + 1, N), the last frame of ``history`` first."""
        self._check_fitted()
        h = np.asarray(history, dtype=np.float32)
        h = h[None, :] if h.ndim == 1 else h
        if h.ndim != 2 or h.shape[1] != self.n_neurons_ or not np.isfinite(h).all():
            raise CircuitGNNError(f"history must be finite frames of shape (L, {self.n_neurons_}), got {h.shape}")
        dev = next(self.net_.parameters()).device
        z = torch.as_tensor((h[-self.context :] - self.mean_) / self.std_, device=dev)[None]
        out = np.empty((n_steps + 1, self.n_neurons_), dtype=np.float32)
        out[0] = h[-1]
        for k in range(n_steps):
            nxt = self._next(z)
            out[k + 1] = nxt[0].cpu().numpy() * self.std_ + self.mean_
            z = torch.cat([z, nxt[:, None]], dim=1)[:, -self.context :]
        return out


class GRUForecaster(_SequenceForecaster):
    """A gated recurrent network over the whole population: frame -> hidden state -> the next frame's change."""

    _kind, _step = "gru", 1


class TransformerForecaster(_SequenceForecaster):
    """A small causal transformer (2 layers, 4 heads) over the last ``context`` frames -> the next frame's change."""

    _kind, _step = "transformer", 4
