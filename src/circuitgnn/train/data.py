"""Random batches of frames from an :class:`~circuitgnn.data.activity.Activity`, on the training device."""

from __future__ import annotations

import numpy as np
import torch


def activity_scale(x: np.ndarray, max_frames: int = 2000) -> float:
    """xnorm = 1.5 x the std of the activity ``x`` (T, N), over evenly spaced frames (spec 5.0)."""
    step = max(1, x.shape[0] // max_frames)
    sample = np.asarray(x[::step], dtype=np.float64)
    return float(1.5 * sample.std())


class FrameSource:
    """Serves the rows ``idx`` of several (T, N) arrays as tensors on ``device``.

    The arrays are copied to the device when they take less than ``max_resident_bytes``
    (random access to RAM is faster), and read from their memory maps otherwise.
    """

    def __init__(self, arrays: list[np.ndarray], device: torch.device, max_resident_bytes: float = 4e9):
        self.device = device
        self.resident = sum(a.nbytes for a in arrays) <= max_resident_bytes
        if self.resident:
            self._tensors = [torch.from_numpy(np.array(a)).to(device) for a in arrays]
        else:
            self._arrays = arrays

    def batch(self, idx: torch.Tensor) -> list[torch.Tensor]:
        if self.resident:
            return [t[idx.to(self.device)] for t in self._tensors]
        rows = idx.cpu().numpy()
        return [torch.from_numpy(np.asarray(a[rows])).to(self.device) for a in self._arrays]
