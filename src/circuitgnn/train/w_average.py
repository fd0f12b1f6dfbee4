"""An exponential average of W over the last iterations (``training.extensions.w_average``).

Adam moves every weight by about its learning rate at each step, whatever the size of its gradient, so near the end of
training W jitters around the value the data determine, and the jitter differs from one seed to another. Averaging W over
the last iterations (Polyak-Ruppert averaging) removes most of it; the fit then ends with W set to the average.
Where the data are noisy the jitter can be the largest part of W's error (docs/confidence.md).
"""

from __future__ import annotations

from typing import Any

import torch


class WAverage:
    """Exponentially weighted mean of W: an iteration's W loses half its weight after ``half_life`` more iterations.

    The mean is normalised by the total weight (as Adam corrects its moments), so it is unbiased from the first update.
    """

    def __init__(self, half_life: int, like: torch.Tensor):
        self.decay = 0.5 ** (1.0 / half_life)
        self.total = torch.zeros_like(like)
        self.weight = 0.0

    def update(self, w: torch.Tensor) -> None:
        self.total.mul_(self.decay).add_(w, alpha=1.0 - self.decay)
        self.weight = self.weight * self.decay + (1.0 - self.decay)

    def reset(self) -> None:
        """Forget every W seen so far (W has jumped, e.g. to an exact solve: the W before it is no estimate any more)."""
        self.total.zero_()
        self.weight = 0.0

    def value(self) -> torch.Tensor | None:
        """The averaged W, or None before the first update."""
        return None if self.weight == 0.0 else self.total / self.weight

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total.detach().cpu(), "weight": self.weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total.copy_(state["total"])
        self.weight = float(state["weight"])
