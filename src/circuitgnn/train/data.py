"""Random batches of frames from an :class:`~circuitgnn.data.activity.Activity`, on the training device."""

from __future__ import annotations

import numpy as np
import torch


def activity_scale(x: np.ndarray, method: str = "std", bounds: list[tuple[int, int]] | None = None, max_frames: int = 2000) -> float:
    """xnorm, the activity scale that sets the range of the learned functions (spec 5.0), over evenly spaced frames.

    ``std``: 1.5 x the std of ``x`` (T, N) (the paper), over the frames of ``bounds`` when given. ``robust``: for each (start, stop) of ``bounds``
    (each recording), half the distance between the 16th and 84th percentiles of its values (the std of
    a Gaussian, unmoved by outliers), then 1.5 x the median over recordings. Missing values (NaN) are ignored.
    """
    if method == "std":
        if bounds is None or bounds == [(0, x.shape[0])]:
            step = max(1, x.shape[0] // max_frames)
            sample = np.asarray(x[::step], dtype=np.float64)
        else:  # the training frames only
            step = max(1, sum(b - a for a, b in bounds) // max_frames)
            sample = np.concatenate([np.asarray(x[a:b:step], dtype=np.float64) for a, b in bounds])
        return float(1.5 * (np.nanstd(sample) if np.isnan(sample).any() else sample.std()))
    spreads = []
    for a, b in bounds or [(0, x.shape[0])]:
        step = max(1, (b - a) // max_frames)
        lo, hi = np.nanpercentile(np.asarray(x[a:b:step], dtype=np.float64), [16, 84])
        spreads.append((hi - lo) / 2)
    return float(1.5 * np.median(spreads))


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
