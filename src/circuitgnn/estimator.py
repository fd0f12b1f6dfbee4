"""The estimator: fit the interpretable GNN to an activity array, then use the fitted model.

>>> from circuitgnn import CircuitGNN
>>> est = CircuitGNN(training={"n_epochs": 4}).fit(x, dt=0.01)        # x: (frames, neurons)
>>> est.connectivity_, est.types_, est.equations()                      # W, neuron types, formulas

As in scikit-learn, settings go to the constructor, :meth:`CircuitGNN.fit` takes the data and
returns the estimator, and what was learned ends in ``_``. Arrays may be numpy arrays, memory maps
or torch tensors. A dataset folder (``circuitgnn simulate``) and a run folder (checkpoints, resume)
are one way in and out (:meth:`CircuitGNN.fit_dataset`, ``run_dir=``, :meth:`CircuitGNN.load`),
never the only one.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sympy
import torch

from circuitgnn.analyze.confidence import EdgeConfidence, diagnostics, least_squares_confidence
from circuitgnn.analyze.rollout import rollout_model
from circuitgnn.analyze.symbolic import formula_scope, symbolic_formulas
from circuitgnn.config import ExperimentConfig, ModelConfig, StrictModel, TrainingConfig, config_from_dict, format_validation_error
from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.data.activity import Activity, InputMode, ScaleMethod, as_float32_frames, check_dt
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.deconvolve import deconvolve_activity
from circuitgnn.data.derivatives import estimate_derivative
from circuitgnn.data.importer import DEFAULT_HOLDOUT
from circuitgnn.data.indicators import indicator_config
from circuitgnn.data.readers import Recording
from circuitgnn.device import pick_device
from circuitgnn.errors import CircuitGNNError, ConfigError, DatasetError
from circuitgnn.model.gnn import GNN
from circuitgnn.model.siren import make_input_model
from circuitgnn.train.clustering import kmeans_silhouette
from circuitgnn.train.run_folder import TrainedRun, load_run, save_atomic
from circuitgnn.train.trainer import Scorer, Trainer

FORMAT = "circuitgnn-estimator"
FORMAT_VERSION = 1


class NotFittedError(CircuitGNNError, AttributeError):
    """A method that needs a fitted model was called before :meth:`CircuitGNN.fit`."""


def validate_section(value: Any, cls: type[StrictModel], name: str) -> Any:
    """A config section from a user: None (the defaults), an instance (copied) or a dict of its fields (validated,
    the wrong field named as ``name.field``)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value.model_copy(deep=True)
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a {cls.__name__} or a dict of its fields, got {type(value).__name__}")
    from pydantic import ValidationError

    try:
        return cls.model_validate(value)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"({name}=...)").replace("\n  ", f"\n  {name}.")) from None


class CircuitGNN:
    """Recover connectivity, neuron types and functions from activity with an interpretable GNN.

    The model is ``dx_i/dt = phi*(x_i, a_i) + Omega_i(t) sum_{j != i} W_ij psi*(x_j[, a_i, a_j])``
    with a learned connectivity ``W``, per-neuron embeddings ``a_i`` and two small MLPs.

    Parameters
    ----------
    model
        The GNN's settings: a :class:`~circuitgnn.config.ModelConfig` or a dict of its fields
        (``circuitgnn config-help`` lists them); None for the defaults.
    training
        The optimisation's settings: a :class:`~circuitgnn.config.TrainingConfig` or a dict
        (epochs, learning rates, regularisers, clustering, seed, device); None for the defaults.
        None or a dict that does not name ``extensions.warm_start`` also starts training from the
        exact spline fit of the same model wherever it applies (``{"extensions": {"warm_start": None}}``
        turns it off); a TrainingConfig is taken as it is.
    progress
        Show a progress bar while fitting.

    Attributes
    ----------
    connectivity_ : numpy.ndarray
        The learned W, (N, N); ``W[i, j]`` is the weight from neuron j to neuron i. Its scale is
        shared with psi* (only ``W psi*`` is determined by the data).
    embeddings_ : numpy.ndarray
        The learned embeddings a_i, (N, d).
    types_ : numpy.ndarray
        The neuron types found without labels (K-means on the embeddings, K by silhouette), (N,).
    n_types_ : int
        The number of types found.
    neurons_ : numpy.ndarray
        The columns of the fitted ``x`` that the model describes (neurons without signal are left
        out); ``connectivity_[i, j]`` is the weight from column ``neurons_[j]`` to ``neurons_[i]``.
    history_ : list of dict
        One entry per log line: iteration, epoch, loss terms, learning rates, time.
    xnorm_ : float
        The activity scale (1.5 x the std of ``x``) that sets the range of the learned functions.
    model_ : GNN
        The fitted torch module, for users who want to go further.
    """

    def __init__(
        self,
        model: ModelConfig | dict[str, Any] | None = None,
        training: TrainingConfig | dict[str, Any] | None = None,
        *,
        progress: bool = True,
    ):
        m = validate_section(model, ModelConfig, "model")
        t = validate_section(training, TrainingConfig, "training")
        try:
            self.config = ExperimentConfig(name="estimator", model=m, training=t)
        except Exception as err:  # the checks that span sections (e.g. w_solve against the model)
            raise ConfigError(f"invalid settings: {err}") from None
        self.progress = progress
        self._requested = self.config  # what the user asked for; a fit may add the warm start (see _training_config)
        extensions = training.get("extensions") if isinstance(training, dict) else None
        named = isinstance(training, TrainingConfig) or (
            "warm_start" in extensions if isinstance(extensions, dict) else "warm_start" in getattr(extensions, "model_fields_set", ())
        )
        self._warm_start_by_default = not named

    @property
    def model(self) -> ModelConfig:
        return self.config.model

    @property
    def training(self) -> TrainingConfig:
        return self.config.training

    def __repr__(self) -> str:
        fitted = f", fitted on N = {self.n_neurons_}" if hasattr(self, "model_") else ""
        return f"CircuitGNN(psi_input={self.model.psi_input!r}, epochs={self.training.n_epochs}{fitted})"

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x: Any,
        dt: float | None = None,
        dxdt: Any | None = None,
        inputs: Any | None = None,
        *,
        input_mode: Literal["multiplicative", "additive"] = "multiplicative",
        grid_size: int = 0,
        segments: Sequence[int] | None = None,
        holdout: float | None = None,
        scale: ScaleMethod | None = None,
        names: Sequence[str] | None = None,
        indicator: IndicatorConfig | dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        scorer: Scorer | None = None,
    ) -> CircuitGNN:
        """Fit the model to activity ``x`` (frames, neurons) sampled every ``dt``; returns ``self``.

        ``x`` may also be a :class:`~circuitgnn.data.readers.Recording` (from
        :func:`~circuitgnn.read_recording`): its dt, segments and neuron names are used, 10 % of each
        segment is held out and the activity scale is robust, unless the arguments say otherwise.

        Parameters
        ----------
        x
            Activity, (T, N): numpy array, memory map or torch tensor. NaN marks a missing value
            (left out of the loss, never filled in); neurons with no value or constant activity are
            left out with a warning (``neurons_`` lists the columns kept).
        dt
            Time between frames.
        dxdt
            The time derivative of ``x``, (T, N), when known. Otherwise ``training.derivative`` says how
            to estimate it (forward differences by default, which suit clean, finely sampled activity;
            ``spline`` or ``savgol`` for noisy recordings), or ``training.objective: rollout`` needs none.
        inputs
            A known external input of each frame, (T, N), acting as ``input_mode`` says; used when
            ``model.external_input`` is ``known``.
        input_mode
            ``multiplicative`` (scales the summed synaptic input) or ``additive``.
        grid_size
            Side of the stimulus grid of the first ``grid_size**2`` neurons, for
            ``model.external_input = "field"``.
        segments
            Start frame of each segment when ``x`` joins several recordings (sessions, trials):
            no derivative, batch or rollout crosses a boundary.
        holdout
            Fraction of each segment's last frames that training never reads (to score forecasts on);
            default 0 (0.1 for a recording).
        scale
            How the activity scale is estimated: ``std`` (the paper; the default for arrays) or ``robust``
            (percentiles per segment; the default for a recording).
        names
            Optional neuron names, used in messages.
        indicator
            When ``x`` is the fluorescence of a calcium indicator: the indicator (``tau`` and, where they
            apply, ``rise``, ``transform``, ``saturation``, ``hill``, ``scale``, ``baseline``; see
            :class:`~circuitgnn.config.indicator.IndicatorConfig`). The activity and its dx/dt are then
            deconvolved from ``x`` first (:func:`~circuitgnn.data.deconvolve.deconvolve_activity`), and
            ``training.objective: fluorescence`` can fit the fluorescence itself.
        run_dir
            A folder for checkpoints, the log and ``run.json``; with it, an interrupted fit can
            continue with ``resume=True``. Without it, nothing is written.
        resume, overwrite
            Continue the run in ``run_dir``, or replace it.
        scorer
            Called at each log line with (model, input_model, xnorm); its numbers go to the log.
        """
        if isinstance(x, Recording):
            rec = x
            if rec.inputs is not None and inputs is None and rec.inputs.shape[1] == rec.x.shape[1]:
                inputs = rec.inputs
            x, dt = rec.x, rec.dt if dt is None else dt
            segments = rec.segments if segments is None else segments
            holdout = DEFAULT_HOLDOUT if holdout is None else holdout
            scale = scale or "robust"
            names = list(rec.names) if names is None and rec.names is not None else names
        if dt is None:
            raise DatasetError("dt (the time between frames) is needed: fit(x, dt=...)")
        data = Activity.from_arrays(
            x,
            dt,
            dxdt,
            inputs,
            input_mode,
            grid_size,
            segments=(0,) if segments is None else segments,
            holdout=0.0 if holdout is None else holdout,
            scale=scale or "std",
            names=names,
        )
        if indicator is not None:
            if dxdt is not None:
                raise DatasetError(
                    "dxdt cannot be given with an indicator: x is then fluorescence, and its activity's dx/dt is deconvolved"
                )
            config = indicator if isinstance(indicator, IndicatorConfig) else indicator_config(indicator, "fit(indicator=...)")
            data = deconvolve_activity(data, config)
        return self._fit(data, run_dir, resume, overwrite, scorer)

    def fit_dataset(
        self, dataset: Dataset | str | Path, *, run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False
    ) -> CircuitGNN:
        """Fit to a dataset folder's activity (memory-mapped); its ground truth, if any, is not read."""
        ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        return self._fit(ds.activity(), run_dir, resume, overwrite, None)

    def _training_config(self, data: Activity) -> ExperimentConfig:
        """The settings to train with: unless they name ``training.extensions.warm_start``, the warm start is on where it
        applies (the derivative objective on data without missing values, a model it can start)."""
        requested = self._requested
        if not self._warm_start_by_default or data.missing:
            return requested
        raw = requested.model_dump(mode="json")
        raw["training"]["extensions"]["warm_start"] = {}
        try:
            return ExperimentConfig.model_validate(raw)
        except ValueError:  # settings it cannot start: another objective, low rank, a mask or an input
            return requested

    def _fit(self, data: Activity, run_dir: str | Path | None, resume: bool, overwrite: bool, scorer: Scorer | None) -> CircuitGNN:
        self.config = self._training_config(data)
        trainer = Trainer(self.config, data, run_dir, resume=resume, overwrite=overwrite, progress=self.progress, scorer=scorer)
        run = trainer.fit()
        self._set_fitted(run, data.n_frames, data.dt, data.grid_size, data.input_mode)
        return self

    def _set_fitted(
        self, run: TrainedRun, n_frames: int, dt: float, grid_size: int, input_mode: InputMode, types: np.ndarray | None = None
    ) -> None:
        """Set the fitted attributes from a trained model; ``types`` (a saved clustering) spares the K-means."""
        self.model_: GNN = run.model.eval()
        self.input_model_ = run.input_model.eval() if run.input_model is not None else None
        self.xnorm_ = float(run.xnorm)
        self.history_ = list(run.log)
        self.run_dir_ = run.path
        self.n_neurons_ = self.model_.n
        kept = run.data.get("neurons")
        self.neurons_ = np.arange(self.n_neurons_) if kept is None else np.asarray(kept, dtype=np.int64)
        self.n_frames_ = int(n_frames)
        self.dt_ = float(dt)
        self.grid_size_ = int(grid_size)
        self.input_mode_: InputMode = input_mode
        self.connectivity_ = self.model_.connectivity().detach().cpu().numpy().copy()
        self.embeddings_ = self.model_.a.detach().cpu().numpy().copy()
        if types is not None:
            self.types_ = np.asarray(types, dtype=np.int64)
        elif isinstance(self.model_.a, torch.nn.Parameter):
            self.types_ = kmeans_silhouette(self.embeddings_, self.training.clustering.max_types, seed=0).labels
        else:
            self.types_ = np.zeros(self.n_neurons_, dtype=np.int64)
        self.n_types_ = int(self.types_.max()) + 1

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this CircuitGNN is not fitted yet: call fit(x, dt) first (or CircuitGNN.load(path))")

    # -------------------------------------------------------- the functions
    @property
    def device_(self) -> torch.device:
        self._check_fitted()
        return self.model_.a.device

    def _tensor(self, x: Any, name: str) -> torch.Tensor:
        with warnings.catch_warnings():  # a read-only array (a dataset's memory map) is shared, never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.as_tensor(np.ascontiguousarray(as_float32_frames(x, name, self.n_neurons_)), device=self.device_)

    @torch.no_grad()
    def phi_(self, x: Any) -> np.ndarray:
        """The learned update function of every neuron, phi*(x_i, a_i), at activity ``x`` (T, N) -> (T, N)."""
        self._check_fitted()
        return self.model_.phi_of(self._tensor(x, "x"), self.model_.a).cpu().numpy()

    @torch.no_grad()
    def psi_(self, x: Any) -> np.ndarray:
        """The learned signal each neuron sends, psi*(x_j[, a_j]), at activity ``x`` (T, N) -> (T, N)
        (for the pair form, with the receiver's embedding taken equal to the sender's)."""
        self._check_fitted()
        return self.model_.psi_of_own_type(self._tensor(x, "x")).cpu().numpy()

    def _input_terms(self, frames: np.ndarray | None, inputs: Any | None, t: int) -> tuple[np.ndarray | None, str]:
        """(input array (t, N) or None, mode) for t frames: a known input given by the caller, or the learned one."""
        kind = self.model.external_input
        if kind == "known":
            if inputs is None:
                raise CircuitGNNError("the model was fitted with a known input: pass inputs=(frames, neurons)")
            arr = as_float32_frames(inputs, "inputs", self.n_neurons_)
            if arr.shape[0] < t:
                raise CircuitGNNError(f"inputs has {arr.shape[0]} frames, {t} are needed")
            return arr[:t], self.input_mode_
        if self.input_model_ is None:
            return None, "none"
        if frames is None:
            raise CircuitGNNError(
                "the model learned an input over the training recording's frames: pass frames= (the indices of these "
                "states in that recording)"
            )
        frames = np.asarray(frames)
        if frames.ndim != 1 or len(frames) != t or not np.issubdtype(frames.dtype, np.integer):
            raise CircuitGNNError(f"frames must be {t} integer indices (one per state), got shape {frames.shape} {frames.dtype}")
        if t and (frames.min() < 0 or frames.max() >= self.n_frames_):
            raise CircuitGNNError(
                f"frames must lie in 0 .. {self.n_frames_ - 1} (the training recording), got {frames.min()} .. {frames.max()}"
            )
        idx = torch.as_tensor(frames, device=self.device_)
        with torch.no_grad():
            if kind == "field":
                return self.input_model_(idx.float() / self.n_frames_).cpu().numpy(), "multiplicative"
            return self.input_model_(idx).cpu().numpy(), "additive"

    @torch.no_grad()
    def predict(self, x: Any, inputs: Any | None = None, frames: Any | None = None) -> np.ndarray:
        """The drift dx/dt the model predicts at states ``x`` (T, N) -> (T, N).

        ``inputs``: the known input at those states (a model fitted with one); ``frames``: the
        states' indices in the training recording (a model that learned an input over it).
        """
        self._check_fitted()
        xt = self._tensor(x, "x")
        inp, mode = self._input_terms(None if frames is None else np.asarray(frames), inputs, xt.shape[0])
        out = np.empty(tuple(xt.shape), dtype=np.float32)
        step = self.model_.frames_per_pass()
        for s in range(0, xt.shape[0], step):
            part = torch.as_tensor(inp[s : s + step], device=self.device_) if inp is not None else None
            omega, extra = (part, None) if mode == "multiplicative" else (None, part)
            out[s : s + step] = self.model_(xt[s : s + step], omega, extra).cpu().numpy()
        return out

    def simulate(self, x0: Any, n_steps: int, dt: float | None = None, inputs: Any | None = None, start_frame: int = 0) -> np.ndarray:
        """Roll the model out from state ``x0`` (N,) for ``n_steps`` explicit Euler steps of ``dt``
        (default: the fitted data's) without noise; returns (n_steps + 1, N).

        ``inputs`` (n_steps, N): the known input of each step; a learned input is taken from the
        training recording from ``start_frame`` on.
        """
        self._check_fitted()
        if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 1:
            raise CircuitGNNError(f"n_steps must be a positive integer, got {n_steps!r}")
        x0a = np.asarray(x0.detach().cpu().numpy() if isinstance(x0, torch.Tensor) else x0, dtype=np.float32)
        if x0a.shape != (self.n_neurons_,):
            raise CircuitGNNError(f"x0 must be one state of shape ({self.n_neurons_},), got {x0a.shape}")
        n_steps = int(n_steps)
        frames = np.arange(start_frame, start_frame + n_steps) if self.input_model_ is not None else None
        inp, mode = self._input_terms(frames, inputs, n_steps)
        substeps, integrator = self.training.frame_integration()
        return rollout_model(self.model_, x0a, n_steps, self.dt_ if dt is None else float(dt), inp, mode, substeps, integrator)

    def score(
        self, x: Any, dt: float | None = None, dxdt: Any | None = None, inputs: Any | None = None, frames: Any | None = None
    ) -> float:
        """R^2 of the predicted drift against ``dxdt`` over all entries; without ``dxdt``, it is estimated from ``x`` as
        ``training.derivative`` says (forward differences for ``auto`` and ``recorded``). Frames with a missing
        value, and missing targets, are left out. ``x`` holds the fitted neurons' columns (``neurons_``)."""
        self._check_fitted()
        xa = as_float32_frames(x, "x", self.n_neurons_)
        if dt is not None:
            check_dt(dt)
        target = (
            estimate_derivative(xa, self.dt_ if dt is None else float(dt), self._derivative_method())  # type: ignore[arg-type]
            if dxdt is None
            else as_float32_frames(dxdt, "dxdt", self.n_neurons_)
        )
        if target.shape[0] != xa.shape[0]:
            raise CircuitGNNError(f"dxdt has {target.shape[0]} frames but x has {xa.shape[0]}")
        complete = np.isfinite(xa).all(axis=1)  # states with a missing value are not predicted
        pred = self.predict(
            xa[complete],
            inputs if inputs is None else as_float32_frames(inputs, "inputs")[complete],
            None if frames is None else np.asarray(frames)[complete],
        ).astype(np.float64)
        y = np.asarray(target, dtype=np.float64)[complete]
        seen = np.isfinite(y)
        y, pred = y[seen], pred[seen]
        ss_tot = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
        return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")

    def _activity(self, x: Any, segments: Sequence[int] | None) -> Activity:
        """The fitted neurons' frames ``x`` as an :class:`Activity` (NaN: missing values)."""
        xa = as_float32_frames(x, "x", self.n_neurons_)
        return Activity(xa, None, self.dt_, segments=(0,) if segments is None else tuple(int(s) for s in segments), missing=True)

    def _derivative_method(self) -> str:
        """How dx/dt is estimated from frames: ``training.derivative``, forward differences for ``auto`` and ``recorded``."""
        return self.training.derivative if self.training.derivative not in ("auto", "recorded") else "forward"

    def _drift(self, data: Activity, dxdt: Any | None) -> np.ndarray:
        """dx/dt of ``data``: the given one, or estimated as training did."""
        if dxdt is not None:
            da = as_float32_frames(dxdt, "dxdt", self.n_neurons_)
            if da.shape[0] != data.n_frames:
                raise CircuitGNNError(f"dxdt has {da.shape[0]} frames but x has {data.n_frames}")
            return da
        return data.derivative(self._derivative_method())  # type: ignore[arg-type]

    def edge_confidence(
        self,
        x: Any,
        dxdt: Any | None = None,
        *,
        segments: Sequence[int] | None = None,
        level: float = 0.9,
        inputs: Any | None = None,
        frames: Any | None = None,
        own_degree: int | None = 3,
    ) -> EdgeConfidence:
        """Per-connection intervals from this one fit: least-squares W given the learned psi* and phi*, each receiver's
        row solved with its own terms (psi*(x_i) and a polynomial of degree ``own_degree`` in its activity, which correct
        phi*; None: phi* as learned), with standard errors corrected for the frames' autocorrelation
        (:func:`~circuitgnn.analyze.confidence.least_squares_confidence`).

        ``x`` (and ``dxdt``, when known): the fitted neurons' frames, e.g. the training data. The result's ``mean``,
        ``lower``, ``upper`` are W with psi*'s scale moved in (W_ij * plateau_j); ``p_nonzero`` is each weight's
        posterior probability of being non-zero (empirical-Bayes shrinkage); ``confident()`` lists the connections
        probably non-zero (lfdr < 0.05), the most probable first. For the error of the learned functions themselves, fit an
        ensemble (:class:`~circuitgnn.ensemble.CircuitGNNEnsemble`).

        A model fitted with an additive input needs its values at these frames, as :meth:`predict`: ``inputs`` for a
        known one, ``frames`` (their indices in the training recording) for a learned one. A multiplicative input
        (a known one in that mode, or ``external_input='field'``) is refused.
        """
        self._check_fitted()
        data = self._activity(x, segments)
        inp, mode = self._input_terms(None if frames is None else np.asarray(frames), inputs, data.n_frames)
        if mode == "multiplicative":
            raise CircuitGNNError(
                "per-edge intervals from one fit do not take a multiplicative input into account; fit an ensemble and read "
                "its prediction intervals instead"
            )
        return least_squares_confidence(self.model_, data, self.xnorm_, self._drift(data, dxdt), level, extra=inp, own_degree=own_degree)

    def diagnostics(self, x: Any) -> dict[str, Any]:
        """Checks of the fit that need no ground truth (:func:`~circuitgnn.analyze.confidence.diagnostics`): per neuron,
        how much of its coupling term its own activity explains; the senders' Gram condition number; how much of
        psi*'s range each sender's activity reaches."""
        self._check_fitted()
        return diagnostics(self.model_, self._activity(x, None), self.xnorm_)

    def equations(self, precision: int = 3, backend: str = "grammar") -> list[str]:
        """Closed-form formulas of the learned phi* (per type) and psi* (per type, or one for all), as text."""
        self._check_fitted()
        found = self.formulas(backend)
        out = []
        for kind in ("phi", "psi"):
            for e in found[kind]:
                text = str(sympy.sympify(e["formula"]).evalf(precision))
                out.append(f"{kind}*[{formula_scope(e)}](x) = {text}")
        return out

    def formulas(self, backend: str = "grammar") -> dict[str, Any]:
        """The symbolic fits behind :meth:`equations`, with their errors (see :func:`~circuitgnn.analyze.symbolic.symbolic_formulas`)."""
        self._check_fitted()
        return symbolic_formulas(self.model_, self.xnorm_, self.training.clustering.max_types, None, backend)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to one file (atomically); :meth:`load` reads it back."""
        self._check_fitted()
        path = Path(path)
        if path.is_dir():
            raise CircuitGNNError(f"{path} is a folder: give a file name, e.g. {path / 'model.pt'}")
        save_atomic(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "config": self.config.model_dump(mode="json"),
                "model": self.model_.state_dict(),
                "input_model": self.input_model_.state_dict() if self.input_model_ is not None else None,
                "fitted": {
                    "xnorm": self.xnorm_,
                    "n_neurons": self.n_neurons_,
                    "n_frames": self.n_frames_,
                    "dt": self.dt_,
                    "grid_size": self.grid_size_,
                    "input_mode": self.input_mode_,
                    "types": self.types_.tolist(),
                    "neurons": self.neurons_.tolist(),
                },
                "history": self.history_,
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> CircuitGNN:
        """A fitted estimator from a file written by :meth:`save`, or from a run folder (``circuitgnn train``)."""
        path = Path(path)
        dev = pick_device(device)
        if path.is_dir():
            return cls._from_run(path, dev)
        if not path.is_file():
            raise CircuitGNNError(f"no saved model at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise CircuitGNNError(f"{path} is not a readable circuitgnn model ({err})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CircuitGNNError(f"{path} is not a model saved by CircuitGNN.save (a run folder's checkpoint? load the folder)")
        if state.get("format_version", 0) > FORMAT_VERSION:
            raise CircuitGNNError(f"{path} was saved by a newer circuitgnn (format {state['format_version']}): upgrade to read it")
        config = config_from_dict(state["config"], source=str(path))
        est = cls(config.model, config.training, progress=False)
        f = state["fitted"]
        model = GNN(config.model, f["n_neurons"])
        model.load_state_dict(state["model"])
        input_model = make_input_model(config.model, f["n_frames"], f["n_neurons"], f["grid_size"], None)
        if input_model is not None:
            input_model.load_state_dict(state["input_model"])
            input_model.to(dev)
        run = TrainedRun(None, config, model.to(dev), f["xnorm"], state["history"], input_model, dict(f))
        est._set_fitted(run, f["n_frames"], f["dt"], f["grid_size"], f["input_mode"], np.asarray(f["types"]))
        return est

    @classmethod
    def _from_run(cls, path: Path, device: torch.device) -> CircuitGNN:
        run = load_run(path, str(device))
        d = run.data
        if "dt" not in d:  # checkpoints before the estimator: the dataset folder has the rest
            ds = Dataset(d["path"]).activity()
            d = {**d, "dt": ds.dt, "grid_size": ds.grid_size, "input_mode": ds.input_mode}
        est = cls(run.config.model, run.config.training, progress=False)
        est._set_fitted(run, d["n_frames"], d["dt"], d["grid_size"], d.get("input_mode", "none"))
        return est


__all__ = ["CircuitGNN", "NotFittedError"]
