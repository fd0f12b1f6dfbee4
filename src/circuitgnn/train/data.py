"""Random batches of frames from a dataset, in memory when it fits, memory-mapped otherwise."""

from __future__ import annotations

import numpy as np
import torch

from circuitgnn.data.dataset import Dataset
from circuitgnn.errors import DatasetError

_SCAN_ROWS = 4096


def check_finite(dataset: Dataset, names: list[str]) -> None:
    """Raise :class:`DatasetError` naming the file and first frame holding NaN or inf."""
    for name in names:
        arr = dataset.arrays[name]
        for start in range(0, arr.shape[0], _SCAN_ROWS):
            block = np.asarray(arr[start : start + _SCAN_ROWS])
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                frame = start + int(np.argmin(ok))
                raise DatasetError(f"{dataset.path / (name + '.npy')} holds NaN or inf at frame {frame}: training needs finite data")


def activity_scale(dataset: Dataset, max_frames: int = 2000) -> float:
    """xnorm = 1.5 x the std of the activity, over evenly spaced frames (spec 5.0)."""
    step = max(1, dataset.n_frames // max_frames)
    sample = np.asarray(dataset.x[::step], dtype=np.float64)
    return float(1.5 * sample.std())


class FrameSource:
    """Serves (x, dx/dt[, input]) for given frame indices as tensors on ``device``.

    The arrays are copied to the device when they take less than ``max_resident_bytes``
    (random access to RAM is faster), and read from the memory map otherwise.
    """

    def __init__(self, dataset: Dataset, names: list[str], device: torch.device, max_resident_bytes: float = 4e9):
        self.names = names
        self.device = device
        arrays = [dataset.arrays[n] for n in names]
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
