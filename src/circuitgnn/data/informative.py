"""Whether activity carries what training needs: motion (not a fixed point), a bounded spread, and as many
independent directions as neurons (otherwise the data do not determine W).

>>> report = check_informative(x, segments=(0,), source="session1.nwb")   # refuses a fixed point, warns on the rest

The rank threshold matches where a regression told the true functions stops recovering W: on the Fig. 2
network (N = 1000) 5,000 consecutive frames span 778 directions at this tolerance and W is lost, 10,000 span
all 1,000 and W is recovered to R^2 1.0000 (see ``docs/recordings.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from circuitgnn.errors import DatasetError

STILL = 1e-5  # a frame whose largest change from the previous one is below this x the typical std has not moved
STILL_SHARE = 0.5  # more of the frames than this sitting still: a fixed point, refused
GROWTH = 1e3  # std of a segment's last tenth over its first tenth: the activity grows without bound
RANK_TOLERANCE = 1e-7  # singular values below this x the largest count as zero (float32 rounding sits near 1e-9)
RANK_WORK = 2e11  # at most this many multiply-adds (frames x neurons^2) for the rank; beyond, a subset of neurons
DUPLICATE = 1e-10  # 1 - |correlation| below this: two columns carry the same activity up to scale


@dataclass(frozen=True)
class Informativeness:
    """What :func:`check_informative` measured.

    ``still_share``: fraction of frames that did not move; ``growth``: the largest ratio, over segments, of the
    activity's spread in the last tenth to the first; ``rank``: independent directions of the complete frames among
    ``rank_neurons`` neurons (all of them unless the data were too large); ``duplicates``: pairs of columns that
    carry the same activity up to scale.
    """

    still_share: float
    growth: float
    rank: int
    rank_neurons: int
    n_neurons: int
    duplicates: list[tuple[int, int]] = field(default_factory=list)

    @property
    def full_rank(self) -> bool:
        return self.rank >= self.rank_neurons

    def as_dict(self) -> dict[str, object]:
        return {
            "still_share": self.still_share,
            "growth": self.growth,
            "rank": self.rank,
            "rank_neurons": self.rank_neurons,
            "duplicates": [list(p) for p in self.duplicates],
        }


def _still_frames(x: np.ndarray, starts: Sequence[int], typical: float) -> np.ndarray:
    """Per frame, whether it is within ``STILL`` x ``typical`` of the previous frame (first frames of segments: no)."""
    change = np.full(x.shape[0], np.inf)
    step = 4096
    for a in range(1, x.shape[0], step):
        block = np.asarray(x[a - 1 : a + step], dtype=np.float64)
        d = np.abs(np.diff(block, axis=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames with a missing value count as moving
            change[a : a + step] = np.where(np.isnan(d).any(axis=1), np.inf, np.nanmax(d, axis=1))
    change[list(starts)] = np.inf
    return change <= STILL * typical


def _growth(x: np.ndarray, bounds: Sequence[tuple[int, int]]) -> tuple[float, int]:
    """The largest ratio of the activity's spread (median over neurons of the std) between a segment's last and
    first tenth, and that segment's index."""
    worst, where = 1.0, 0
    for k, (a, b) in enumerate(bounds):
        tenth = (b - a) // 10
        if tenth < 10:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            first = float(np.nanmedian(np.nanstd(np.asarray(x[a : a + tenth], dtype=np.float64), axis=0)))
            last = float(np.nanmedian(np.nanstd(np.asarray(x[b - tenth : b], dtype=np.float64), axis=0)))
        ratio = last / first if first > 0 else (np.inf if last > 0 else 1.0)
        if ratio > worst:
            worst, where = ratio, k
    return worst, where


def rank_shortfall(rank: int, among: str) -> str:
    """What an activity rank below the number of neurons means, e.g. ``among`` = "of 40 neurons in 20 frames"."""
    return (
        f"the activity spans only {rank} independent directions {among}: the data do not determine every connection "
        "(W is known only up to the missing directions)"
    )


def activity_rank(x: np.ndarray, seed: int = 0) -> tuple[int, int, list[tuple[int, int]]]:
    """The number of independent directions of ``x``'s complete frames (centred), among how many neurons, and the
    pairs of columns that are copies of each other up to scale.

    Computed from the float64 covariance, in blocks of frames; when frames x neurons^2 exceeds ``RANK_WORK`` a
    random subset of neurons is used (a subset that lacks directions shows the whole lacks them too).
    """
    t, n = x.shape
    m = min(n, max(2, int(np.sqrt(RANK_WORK / max(t, 1)))))
    cols = np.arange(n) if m == n else np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
    cov = np.zeros((m, m))
    total = np.zeros(m)
    count = 0
    for a in range(0, t, 8192):
        block = np.asarray(x[a : a + 8192], dtype=np.float64)[:, cols]
        block = block[np.isfinite(block).all(axis=1)]
        cov += block.T @ block
        total += block.sum(axis=0)
        count += block.shape[0]
    if count < 2:
        return 0, m, []
    mean = total / count
    cov -= count * np.outer(mean, mean)
    eig = np.linalg.eigvalsh(cov)
    top = max(float(eig[-1]), 0.0)
    rank = int((np.sqrt(np.clip(eig, 0.0, None)) > RANK_TOLERANCE * np.sqrt(top)).sum()) if top > 0 else 0
    duplicates: list[tuple[int, int]] = []
    if rank < m:
        sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
        corr = np.abs(cov / sd[:, None] / sd[None, :])
        i, j = np.nonzero(np.triu(corr > 1.0 - DUPLICATE, k=1))
        duplicates = [(int(cols[a]), int(cols[b])) for a, b in zip(i, j, strict=True)]
    return rank, m, duplicates


def check_informative(
    x: np.ndarray,
    segments: Sequence[int] = (0,),
    source: str = "x",
    names: Sequence[str] | None = None,
    *,
    refuse: bool = True,
    override: str = "",
) -> Informativeness:
    """Measure whether ``x`` (frames x neurons, NaN missing) can teach a model anything, and say what to change.

    A fixed point (more than half of the frames do not move) raises :class:`DatasetError` when ``refuse``, else it is
    a warning; activity that grows without bound within a segment, fewer independent directions than neurons and
    duplicated columns are warnings naming what to do. ``source`` names the data in messages, ``override`` says in the
    refusal how to use the data anyway.
    """
    t, n = x.shape
    starts = sorted({int(s) for s in segments} | {0})
    bounds = list(zip(starts, [*starts[1:], t], strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = float(np.nanmedian(np.nanstd(np.asarray(x[:: max(1, t // 20000)], dtype=np.float64), axis=0)))
    still = _still_frames(x, starts, typical) if typical > 0 else np.ones(t, dtype=bool)
    share = float(still.mean())
    growth, grown = _growth(x, bounds)
    rank, m, duplicates = activity_rank(x)
    found = Informativeness(share, growth, rank, m, n, duplicates)

    def label(i: int) -> str:
        return f"{i} ({names[i]})" if names is not None else str(i)

    if share > STILL_SHARE:
        first = int(np.argmax(still)) - 1  # the frame the still ones repeat
        message = (
            f"{source}: the activity does not move in {100 * share:.0f} % of its frames (from frame {first} on, it sits at a "
            "fixed point): there are no dynamics to learn from. Keep only the frames where the circuit is active, or "
            "record it driven (a stimulus, noise)"
        )
        if refuse:
            raise DatasetError(message + (f"; {override}" if override else ""))
        warnings.warn(message, UserWarning, stacklevel=2)
    elif share > 0.1:
        warnings.warn(
            f"{source}: {100 * share:.0f} % of the frames do not move (a fixed point for part of the recording); they add "
            "nothing but weight to the fit: consider cutting them",
            UserWarning,
            stacklevel=2,
        )
    if growth > GROWTH:
        warnings.warn(
            f"{source}: the activity's spread grows {growth:.3g} times from the first to the last tenth of segment {grown} "
            "(an exploding network, or a drifting baseline): detrend it or keep the frames before it grows",
            UserWarning,
            stacklevel=2,
        )
    if duplicates:
        pairs = ", ".join(f"{label(i)} and {label(j)}" for i, j in duplicates[:10])
        more = f" and {len(duplicates) - 10} more pairs" if len(duplicates) > 10 else ""
        warnings.warn(
            f"{source}: neurons {pairs}{more} carry the same activity up to scale (a duplicated ROI or channel?): their "
            "outgoing connections cannot be told apart; keep one of each pair",
            UserWarning,
            stacklevel=2,
        )
    if rank < m:
        among = f"of {m} randomly chosen neurons" if m < n else f"of its {n} neurons"
        warnings.warn(
            f"{source}: {rank_shortfall(rank, f'{among} ({t} frames)')}. Record more frames, or more varied activity "
            "(several sessions, stimuli), or fit fewer neurons",
            UserWarning,
            stacklevel=2,
        )
    return found
