"""External inputs: the stimulus movie Omega over a grid of neurons, and additive inputs (paper 2.6).

Layout: neuron ``r * G + c`` (for ``r, c < G``) sees pixel ``(r, c)`` of the movie,
row-major; neurons ``G^2 .. N-1`` are not driven (Omega = 1, additive input = 0).
Saved frame k shows movie frame ``floor(k / n_frames * n_movie_frames)``, so
each movie frame is held for ``n_frames / n_movie_frames`` steps. During burn-in
every stimulus is off: Omega = ``burn_in_value`` for all neurons (paper: 0) and
the additive input is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, map_coordinates

from circuitgnn.config import StimulusConfig
from circuitgnn.errors import ConfigError


def _sample_image() -> np.ndarray:
    """A grayscale photograph shipped inside matplotlib (no download), float in [0, 1]."""
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def _smooth_path(rng: np.random.Generator, t: np.ndarray, n_waves: int = 3) -> np.ndarray:
    """A smooth random curve in [-1, 1] over t in [0, 1]: a sum of slow sinusoids with random phases."""
    freqs = rng.uniform(0.5, 3.0, size=n_waves)
    phases = rng.uniform(0, 2 * np.pi, size=n_waves)
    amps = rng.uniform(0.5, 1.0, size=n_waves)
    curve = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)
    return curve / amps.sum()


def image_pan_movie(n_frames: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    """A camera panning and zooming over a photograph, seen through a grid x grid sensor.

    The window stays inside the photograph, and each frame is low-pass filtered at its sampling
    step before it is sampled (a Gaussian of sigma = step / 2, as a camera's optics and pixel area
    do), so the movie holds the photograph's content at the grid's resolution rather than aliased
    pixel noise that flickers from frame to frame as the window moves.
    """
    img = _sample_image()
    h, w = img.shape
    t = np.linspace(0, 1, n_frames)
    zoom = 1.75 + 0.75 * _smooth_path(rng, t)  # zoom in [1, 2.5]: window side = 0.9 min(h, w) / zoom
    side = min(h, w) / zoom * 0.9
    cy = h / 2 + (h - side) / 2 * 0.95 * _smooth_path(rng, t)
    cx = w / 2 + (w - side) / 2 * 0.95 * _smooth_path(rng, t)
    lin = np.linspace(-0.5, 0.5, grid)
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    movie = np.empty((n_frames, grid, grid))
    for k in range(n_frames):
        step = side[k] / max(grid - 1, 1)
        smooth = gaussian_filter(img, sigma=step / 2, mode="nearest")
        coords = np.stack([cy[k] + gy * side[k], cx[k] + gx * side[k]])
        movie[k] = map_coordinates(smooth, coords, order=1, mode="nearest")
    return movie


def drifting_grating_movie(n_frames: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Sinusoidal gratings drifting across the grid; orientation and spatial frequency change every 32 frames."""
    lin = np.linspace(0, 1, grid)
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    movie = np.empty((n_frames, grid, grid))
    phase = 0.0
    for k in range(n_frames):
        if k % 32 == 0:
            theta = rng.uniform(0, np.pi)
            freq = rng.uniform(1.0, 3.0)
            speed = rng.uniform(0.1, 0.4) * rng.choice([-1, 1])
        phase += 2 * np.pi * speed
        movie[k] = np.sin(2 * np.pi * freq * (np.cos(theta) * gx + np.sin(theta) * gy) + phase)
    return movie


def moving_blobs_movie(n_frames: int, grid: int, rng: np.random.Generator, n_blobs: int = 5) -> np.ndarray:
    """Gaussian blobs of random size and sign moving in straight lines and bouncing off the borders."""
    lin = np.linspace(0, 1, grid)
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    pos = rng.uniform(0.1, 0.9, size=(n_blobs, 2))
    vel = rng.uniform(-0.02, 0.02, size=(n_blobs, 2))
    sigma = rng.uniform(0.08, 0.2, size=n_blobs)
    amp = rng.uniform(0.5, 1.0, size=n_blobs) * rng.choice([-1, 1], size=n_blobs)
    movie = np.empty((n_frames, grid, grid))
    for k in range(n_frames):
        d2 = (gy[None] - pos[:, 0, None, None]) ** 2 + (gx[None] - pos[:, 1, None, None]) ** 2
        movie[k] = (amp[:, None, None] * np.exp(-d2 / (2 * sigma[:, None, None] ** 2))).sum(0)
        pos += vel
        out = (pos < 0) | (pos > 1)
        vel[out] *= -1
        pos = np.clip(pos, 0, 1)
    return movie


def load_movie(path: Path, grid_size: int) -> np.ndarray:
    """Read a user movie of shape (frames, grid_size, grid_size) from .npy or a multi-page .tif."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"stimulus.path: movie file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        movie = np.load(path, allow_pickle=False)
    elif suffix in (".tif", ".tiff"):
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            movie = np.stack([np.asarray(page, dtype=np.float64) for page in ImageSequence.Iterator(im)])
    else:
        raise ConfigError(f"stimulus.path: {path} must be a .npy or .tif file")
    expected = f"(frames, {grid_size}, {grid_size}) = (frames, stimulus.grid_size, stimulus.grid_size)"
    if movie.ndim != 3 or movie.shape[1:] != (grid_size, grid_size):
        raise ConfigError(f"stimulus.path: movie {path} has shape {movie.shape}, expected {expected}")
    if not np.issubdtype(movie.dtype, np.number) or not np.all(np.isfinite(movie)):
        raise ConfigError(f"stimulus.path: movie {path} must contain finite numbers")
    return movie.astype(np.float64)


def make_movie(cfg: StimulusConfig, rng: np.random.Generator) -> np.ndarray:
    """The stimulus movie (float32, (frames, G, G)) for a grid source, rescaled to ``value_range`` if asked."""
    g = cfg.grid_size
    if cfg.source == "file":
        assert cfg.path is not None  # guaranteed by the config validator
        movie = load_movie(cfg.path, g)
    elif cfg.source == "image_pan":
        movie = image_pan_movie(cfg.n_movie_frames, g, rng)
    elif cfg.source == "drifting_grating":
        movie = drifting_grating_movie(cfg.n_movie_frames, g, rng)
    elif cfg.source == "moving_blobs":
        movie = moving_blobs_movie(cfg.n_movie_frames, g, rng)
    else:
        raise ValueError(f"stimulus.source {cfg.source!r} is not a movie")
    if cfg.normalize:
        lo, hi = cfg.value_range
        span = movie.max() - movie.min()
        movie = lo + (hi - lo) * ((movie - movie.min()) / span if span > 0 else np.full_like(movie, 0.5))
    return movie.astype(np.float32)


class Stimulus:
    """Time-dependent inputs of the simulation, on the simulation's device.

    ``inputs(step)`` returns ``(omega, extra)`` for a saved-frame index ``step``
    (negative during burn-in, fractional inside an RK4 step): the multiplicative
    field and the additive input, each (N,) or None.
    """

    def __init__(self, cfg: StimulusConfig, n_neurons: int, n_frames: int, dt: float, rng: np.random.Generator, device: torch.device):
        self.mode = cfg.mode
        self.source = cfg.source
        self.n_frames = n_frames
        self.dt = dt
        self.n_driven = cfg.n_driven
        self.movie: np.ndarray | None = None
        self.amplitudes: np.ndarray | None = None
        self._off_omega = torch.full((n_neurons,), cfg.burn_in_value, dtype=torch.float32, device=device)
        if self.mode == "none":
            return
        if self.source == "oscillation":
            self.amplitudes = rng.uniform(-cfg.amplitude, cfg.amplitude, size=self.n_driven).astype(np.float32)
            amp = torch.zeros(n_neurons, dtype=torch.float32, device=device)
            amp[: self.n_driven] = torch.as_tensor(self.amplitudes, device=device)
            self._amp = amp
            self._omega_t = 2 * np.pi * cfg.frequency
            return
        self.movie = make_movie(cfg, rng)
        rest = 1.0 if self.mode == "multiplicative" else 0.0
        fields = torch.full((self.movie.shape[0], n_neurons), rest, dtype=torch.float32, device=device)
        fields[:, : self.n_driven] = torch.as_tensor(self.movie.reshape(self.movie.shape[0], -1), device=device)
        self._fields = fields

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def movie_frame(self, step: float) -> int:
        """Index of the movie frame shown at saved frame ``step`` (>= 0)."""
        n_movie = self._fields.shape[0]
        return min(int(np.floor(step / self.n_frames * n_movie)), n_movie - 1)

    def inputs(self, step: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.mode == "none":
            return None, None
        if step < 0:
            return (self._off_omega, None) if self.mode == "multiplicative" else (None, None)
        if self.source == "oscillation":
            return None, self._amp * float(np.cos(self._omega_t * step * self.dt))
        field = self._fields[self.movie_frame(step)]
        return (field, None) if self.mode == "multiplicative" else (None, field)

    def saved_value(self, step: int, n_neurons: int, device: torch.device) -> torch.Tensor:
        """The input recorded for saved frame ``step`` (Omega or e), shape (N,)."""
        omega, extra = self.inputs(step)
        value = omega if omega is not None else extra
        if value is None:
            return torch.zeros(n_neurons, device=device)
        return value
