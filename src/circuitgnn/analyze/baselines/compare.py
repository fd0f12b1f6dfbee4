"""`circuitgnn baselines`: the GNN beside what a user would pick instead, on the same frames and the same test states.

Every method is fitted on the dataset's training frames (its held-out frames are never read) and scored
the same way: W R^2 and slope against the true W (each divided by the receiver's known gain, as the GNN's
corrected W; correlation scores have no units, so only their R^2 is given), edge-detection AUC on sparse W (at least half the pairs unconnected),
forecast R^2 at 400 and 800 frames from one test state that training never saw (a new start of the true
network, settled, when the dataset has its ground truth; else the longest held-out recorded part), the
generalisation tests S5/S6 where the method allows (the GNN's learned functions on a new W), the time
to fit and the peak memory above the process's memory at the start of the fit.

Each method's result is written to ``OUT/methods/NAME.json`` as soon as it is done: an interrupted
comparison continues where it stopped (the GNN resumes from its run folder, ``OUT/gnn``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from circuitgnn.analyze.baselines.forecasters import GRUForecaster, TransformerForecaster
from circuitgnn.analyze.baselines.learned_functions import LearnedFunctionRegression
from circuitgnn.analyze.baselines.linear import (
    CorrelationConnectivity,
    KnownFunctionRegression,
    PartialCorrelationConnectivity,
    RidgeVAR,
    constant,
    identity,
)
from circuitgnn.analyze.evaluate import generalization_skipped, replay_unavailable
from circuitgnn.analyze.generalization import PAPER_TESTS, generalization_test
from circuitgnn.analyze.metrics import connectivity_score, edge_auc, linear_fit, type_scores
from circuitgnn.analyze.rollout import RolloutScore, rollout_model, score_rollout
from circuitgnn.config import ExperimentConfig, config_from_dict
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import write_json_atomic, write_text_atomic
from circuitgnn.device import environment, peak_memory_mb, reset_peak_memory, resident_memory_mb
from circuitgnn.errors import CircuitGNNError, DatasetError
from circuitgnn.model.gnn import GNN
from circuitgnn.simulate.neurons import TypeTable
from circuitgnn.simulate.replay import frame_trajectory, held_out_state, true_circuit
from circuitgnn.train.run_folder import load_run
from circuitgnn.train.trainer import Trainer

METHODS: dict[str, str] = {
    "gnn": "circuitgnn (GNN)",
    "known_functions": "regression told the true functions (upper bound)",
    "learned_functions": "learned-function regression (GLM)",
    "ridge_var": "ridge linear model (VAR)",
    "correlation": "correlation",
    "partial_correlation": "partial correlation (Ledoit-Wolf)",
    "gru": "GRU (GNN's parameter count)",
    "gru_10x": "GRU (10x)",
    "transformer": "transformer (GNN's parameter count)",
    "transformer_10x": "transformer (10x)",
}
HORIZONS = (400, 800)
CONTEXT = 32  # frames of history the forecasters read; every method starts its forecast at the same frame


@dataclass
class MethodResult:
    """One method's scores on one dataset; ``notes`` say why a metric is missing."""

    method: str
    label: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = float("nan")
    peak_memory_mb: float | None = None
    n_parameters: int | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Test:
    """The forecast test: frames of the reference trajectory; forecasts start at frame ``CONTEXT``."""

    frames: np.ndarray | None
    how: str


@contextmanager
def _peak_memory(result: MethodResult) -> Iterator[None]:
    """Peak resident memory (Linux: VmHWM, reset for the fit) above the memory at the start."""
    base = resident_memory_mb() if reset_peak_memory() else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    yield
    if base is not None:
        result.peak_memory_mb = max(0.0, peak_memory_mb() - base)
    if torch.cuda.is_available():
        result.notes["gpu_memory_mb"] = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"


def forecast_test(ds: Dataset, steps: int, seed: int = 1) -> _Test:
    """The reference trajectory every method forecasts: CONTEXT frames of history, then ``steps`` frames."""
    if ds.stimulus_mode != "none":
        return _Test(None, "the network is driven by a stimulus the baselines do not see: forecasts are not compared")
    if replay_unavailable(ds) is None:
        circuit = true_circuit(ds)
        x0 = held_out_state(circuit, ds.dt / ds.every, seed)
        frames = frame_trajectory(circuit, x0, CONTEXT + steps, ds)
        return _Test(frames, "from a held-out state of the true network (new random start, settled), against its noise-free trajectory")
    start, stop = max(ds.activity().heldout_bounds(), key=lambda b: b[1] - b[0])
    frames = np.asarray(ds.x[start:stop])
    if len(frames) < CONTEXT + HORIZONS[0] + 1 or not np.isfinite(frames).all():
        return _Test(None, f"the held-out frames ({start} to {stop - 1}) hold no {CONTEXT + HORIZONS[0] + 1} complete frames")
    return _Test(frames[: CONTEXT + steps + 1], f"from held-out recorded frame {start + CONTEXT}, against the recording")


def _forecast_metrics(pred: np.ndarray, test: _Test, out: MethodResult) -> None:
    assert test.frames is not None
    true = test.frames[CONTEXT:]
    score: RolloutScore = score_rollout(pred[: len(true)], true)
    for h in HORIZONS:
        if h <= score.horizons[-1]:
            out.metrics[f"forecast_r2_{h}"] = score.at(h)[0]


SPARSE = 0.5  # edge detection is scored when at least this fraction of the off-diagonal pairs is unconnected


def _sparse(w: np.ndarray) -> bool:
    off = ~np.eye(w.shape[0], dtype=bool)
    return bool(np.mean(w[off] == 0) >= SPARSE)


def _w_metrics(ds: Dataset, w: np.ndarray, out: MethodResult, units: bool) -> None:
    """W R^2 (and, for weights in the model's units, the slope after dividing by the receiver's gain) and edge AUC."""
    truth = ds.truth
    if truth is None:
        out.notes["W"] = "the dataset has no ground truth"
        return
    fit = linear_fit(truth.connectivity, w / truth.gains[:, None] if units else w, off_diagonal=True)
    out.metrics["W_r2"] = fit.r2
    if units:
        out.metrics["W_slope"] = fit.slope
    out.metrics["W_edge_auc"] = edge_auc(truth.connectivity, w)


def _known_functions(ds: Dataset) -> tuple[KnownFunctionRegression | None, str]:
    """The regression told the dataset's true psi and phi basis, or None with the reason it does not apply."""
    truth = ds.truth
    if truth is None:
        return None, "the dataset has no ground truth to take the functions from"
    if ds.stimulus_mode != "none":
        return None, "the stimulus multiplies each receiver's messages: no shared Gram matrix (not implemented)"
    signal = truth.functions["signal"]
    if signal == "tanh":  # W's diagonal takes each neuron's self_coupling * tanh(x_i)
        return KnownFunctionRegression(np.tanh, (identity, constant)), "psi = tanh; phi in the basis (x, 1) with W's diagonal"
    if signal == "sender":
        p = TypeTable.from_json(truth.functions["types"]).per_neuron(truth.types)
        threshold, width = np.asarray(p["threshold"]), np.asarray(p["width"])

        def psi(x: np.ndarray) -> np.ndarray:
            return np.tanh((x - threshold) / width)

        return KnownFunctionRegression(psi, (identity, np.tanh, constant)), "psi_j = tanh((x - h_j) / w_j); phi in the basis (x, tanh x, 1)"
    return None, "psi depends on the receiver (pair form): no shared Gram matrix (not implemented)"


def gnn_config(ds: Dataset, minutes: float, seed: int | None = None) -> ExperimentConfig:
    """The dataset's own experiment config (the paper's settings for a simulated dataset; defaults otherwise),
    trained for ``minutes``."""
    data = ds.meta.get("config")
    config = config_from_dict(dict(data), source=f"{ds.path}/meta.json") if isinstance(data, dict) else ExperimentConfig()
    config.training.max_minutes = minutes
    if seed is not None:
        config.training.seed = seed
    return config


def _run_gnn(ds: Dataset, folder: Path, config: ExperimentConfig, test: _Test, steps: int, progress: bool, out: MethodResult) -> None:
    run_dir = folder / "gnn"
    resume = (run_dir / "run.json").is_file()
    with _peak_memory(out):
        run = Trainer(config, ds, run_dir, resume=resume, progress=progress).fit()
    loaded = load_run(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    out.seconds = float(info["train_seconds"])
    model = run.model.eval()
    out.n_parameters = sum(p.numel() for p in model.parameters())
    truth = ds.truth
    if truth is not None:
        score = connectivity_score(model, truth.connectivity, truth.gains, run.xnorm)
        out.metrics["W_r2"], out.metrics["W_slope"] = score.corrected.r2, score.corrected.slope
        out.metrics["W_edge_auc"] = edge_auc(truth.connectivity, model.connectivity().detach().cpu().numpy())
        if isinstance(model.a, torch.nn.Parameter):
            types = type_scores(model.a.detach().cpu().numpy(), truth.types, config.training.clustering.max_types)
            out.metrics["type_accuracy"] = types["types_kmeans_accuracy"]
        why = generalization_skipped(loaded, ds)
        if why is None:
            for name, filling, fractions in PAPER_TESTS:
                g = generalization_test(loaded, ds, score.raw.slope, filling, fractions, steps)
                if HORIZONS[-1] <= g.horizons[-1]:
                    out.metrics[f"generalization_{name}_r2_{HORIZONS[-1]}"] = g.at(HORIZONS[-1])[0]
        else:
            out.notes["generalization"] = why
    else:
        out.notes["W"] = "the dataset has no ground truth"
    if test.frames is not None:
        substeps, integrator = config.training.frame_integration()
        pred = rollout_model(model, test.frames[CONTEXT], steps, ds.dt, None, "none", substeps, integrator)
        _forecast_metrics(pred, test, out)


def _run_method(
    name: str, ds: Dataset, folder: Path, config: ExperimentConfig, test: _Test, steps: int, minutes: float, seed: int, progress: bool
) -> MethodResult:
    out = MethodResult(name, METHODS[name])
    if name == "gnn":
        _run_gnn(ds, folder, config, test, steps, progress, out)
        return out
    regression: KnownFunctionRegression | LearnedFunctionRegression | RidgeVAR | None = None
    if name == "known_functions":
        regression, how = _known_functions(ds)
        out.notes["method"] = how
        if regression is None:
            return out
    elif name == "learned_functions":
        regression = LearnedFunctionRegression(max_frames=10000, iterations=6, max_minutes=minutes)
    elif name == "ridge_var":
        regression = RidgeVAR()
    x, dxdt, starts = ds.training_frames()
    if name in ("correlation", "partial_correlation"):
        est = CorrelationConnectivity() if name == "correlation" else PartialCorrelationConnectivity()
        with _peak_memory(out):
            est.fit(x)
        out.seconds = est.fit_seconds_
        _w_metrics(ds, est.connectivity_, out, units=False)
        out.notes["forecast"] = "no dynamics: a connectivity score only"
        return out
    if regression is not None:
        with _peak_memory(out):
            regression.fit(x, ds.dt, dxdt, starts)
        out.seconds = regression.fit_seconds_
        out.n_parameters = int(regression.connectivity_.size + regression.coefficients_.size)
        _w_metrics(ds, regression.connectivity_, out, units=True)
        if test.frames is not None:
            _forecast_metrics(regression.simulate(test.frames[CONTEXT], steps, ds.dt, config.training.frame_integration()[0]), test, out)
        return out
    budget = sum(p.numel() for p in GNN(config.model, ds.n_neurons).parameters()) * (10 if name.endswith("_10x") else 1)
    cls: Callable[..., GRUForecaster | TransformerForecaster] = GRUForecaster if name.startswith("gru") else TransformerForecaster
    net = cls(n_parameters=budget, context=CONTEXT, minutes=minutes, seed=seed, device=config.training.device, progress=progress)
    with _peak_memory(out):
        net.fit(x, ds.dt, starts)
    out.seconds = net.fit_seconds_
    out.n_parameters = net.n_parameters_
    out.notes["method"] = f"width {net.hidden_}, {net.iterations_:,} iterations of {net.batch_size} windows of {CONTEXT} frames"
    if test.frames is not None:
        _forecast_metrics(net.simulate(test.frames[: CONTEXT + 1], steps), test, out)
    out.notes.setdefault("W", "a forecaster: no connectivity")
    return out


def check_methods(methods: Sequence[str] | None) -> list[str]:
    """The methods asked for, in the table's order; unknown names are refused with the known ones."""
    if methods is None:
        return list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CircuitGNNError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    return [m for m in METHODS if m in methods]


def compare_methods(
    dataset: str | Path | Dataset,
    out: str | Path,
    minutes: float = 5.0,
    methods: Sequence[str] | None = None,
    steps: int = 800,
    seed: int = 0,
    config: ExperimentConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[MethodResult]:
    """Fit and score every method on one dataset (see the module docstring); results go to ``out``.

    ``minutes`` is the training budget of each trained method (the GNN, each forecaster, and the
    learned-function regression's Gauss-Newton steps); the closed-form methods take what they take. ``config``: the GNN's settings (default: the dataset's own).
    """
    names = check_methods(methods)
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not minutes > 0:
        raise CircuitGNNError(f"minutes must be a positive number, got {minutes!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < HORIZONS[0]:
        raise CircuitGNNError(f"steps (the forecast's length) must be an integer >= {HORIZONS[0]}, got {steps!r}")
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if ds.signal == "fluorescence":
        raise DatasetError(f"{ds.path} holds fluorescence: deconvolve it first (`circuitgnn deconvolve {ds.path} --out ...`)")
    folder = Path(out)
    record = folder / "methods"
    if folder.exists() and any(folder.iterdir()) and not record.is_dir():
        raise FileExistsError(f"{folder} exists and is not a comparison's folder: choose another output folder")
    key = {"x_sha256": ds.activity().x_fingerprint(), "minutes": minutes, "steps": steps, "seed": seed}
    done = {f.stem: json.loads(f.read_text()) for f in record.glob("*.json")} if record.is_dir() else {}
    other = sorted(n for n, saved in done.items() if saved.get("key") != key)
    if other and not overwrite:
        raise FileExistsError(
            f"{folder} holds results of another dataset or settings ({', '.join(other)}): pass overwrite=True (--overwrite) to replace them"
        )
    if overwrite and folder.exists():
        shutil.rmtree(folder)
        done = {}
    record.mkdir(parents=True, exist_ok=True)
    config = config or gnn_config(ds, minutes, seed)
    test = forecast_test(ds, steps)
    results = []
    for name in names:
        if name in done:
            results.append(MethodResult(**{**done[name]["result"], "label": METHODS[name]}))  # labels are shown as named now
            continue
        if progress:
            print(f"[{ds.path.name}] {METHODS[name]} ...", flush=True)
        result = _run_method(name, ds, folder, config, test, steps, minutes, seed, progress)
        if test.frames is None:
            result.notes.setdefault("forecast", test.how)
        write_json_atomic(record / f"{name}.json", {"key": key, "machine": machine(), "result": asdict(result)})
        results.append(result)
    if ds.truth is None or not _sparse(ds.truth.connectivity):  # edge detection is scored on sparse W only
        for r in results:
            r.metrics.pop("W_edge_auc", None)
    write_json_atomic(
        folder / "baselines.json", {"dataset": str(ds.path), "forecast": test.how, "key": key, "results": [asdict(r) for r in results]}
    )
    return results


_COLUMNS: tuple[tuple[str, str, str], ...] = (  # (metric, header, better: higher / lower)
    ("W_r2", "W R^2", "higher"),
    ("W_slope", "W slope", "none"),
    ("W_edge_auc", "edge AUC", "higher"),
    ("forecast_r2_400", "forecast R^2 @400", "higher"),
    ("forecast_r2_800", "forecast R^2 @800", "higher"),
    ("generalization_S5_r2_800", "S5 R^2 @800", "higher"),
    ("generalization_S6_r2_800", "S6 R^2 @800", "higher"),
    ("type_accuracy", "types", "higher"),
)


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


TIE = 0.01  # score differences below this are not called a loss


def _losses(gnn: MethodResult, results: Sequence[MethodResult], shown: Sequence[tuple[str, str, str]]) -> list[str]:
    """Where another method (not the upper bound told the true functions) beats the GNN by more than ``TIE``: the best
    such method on each score, and the fastest and leanest fit."""
    rivals = [r for r in results if r.method not in ("gnn", "known_functions")]
    out = []
    for metric, header, better in shown:
        scored = [r for r in rivals if metric in r.metrics and np.isfinite(r.metrics[metric])]
        if better == "higher" and metric in gnn.metrics and scored:
            best = max(scored, key=lambda r: r.metrics[metric])
            if best.metrics[metric] > gnn.metrics[metric] + TIE:
                out.append(f"{header} ({best.label}: {best.metrics[metric]:.3f} against {gnn.metrics[metric]:.3f})")
    for what, get, unit in (("fit time", lambda r: r.seconds, "s"), ("peak memory", lambda r: r.peak_memory_mb, "MB")):
        mine = get(gnn)
        found = [(get(r), r) for r in rivals if get(r) is not None and np.isfinite(get(r))]
        if mine is not None and found:
            value, best = min(found, key=lambda vr: vr[0])
            if value < mine:
                out.append(f"{what} ({best.label}: {value:.0f} {unit} against {mine:.0f} {unit})")
    return out


def format_table(name: str, results: Sequence[MethodResult], how: str = "") -> str:
    """A markdown table of one dataset's results, with the metrics on which the GNN loses named below it."""
    shown = [c for c in _COLUMNS if any(c[0] in r.metrics for r in results)]
    header = ["method", *[h for _, h, _ in shown], "parameters", "fit (s)", "peak memory (MB)"]
    lines = [f"**{name}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.label, *[_cell(r.metrics.get(m)) for m, _, _ in shown]]
        cells += ["–" if r.n_parameters is None else f"{r.n_parameters:,}", _cell(r.seconds, 1), _cell(r.peak_memory_mb, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    gnn = next((r for r in results if r.method == "gnn"), None)
    if gnn is not None:
        losses = _losses(gnn, results, shown)
        lines += ["", "The GNN loses on: " + "; ".join(losses) + "." if losses else "The GNN loses on no metric."]
    if how:
        lines += ["", f"Forecasts: {how}."]
    return "\n".join(lines)


BASELINES_BEGIN = "<!-- baselines:begin (generated by `circuitgnn baselines ... --readme README.md`; do not edit) -->"
BASELINES_END = "<!-- baselines:end -->"


def machine() -> str:
    """The machine the numbers came from: the GPU, or the CPU model, cores and torch threads."""
    env = environment()
    if "cuda_device" in env:
        return env["cuda_device"]
    return f"{env['cpu_model']}, {env['cpu_count']} cores, {env['torch_threads']} torch thread(s)"


def summary_table(sections: Sequence[tuple[str, Sequence[MethodResult], Dataset]]) -> str:
    """One line per dataset: the GNN's W R^2 and forecast beside the best other method's and the upper bound's."""
    lines = [
        "| dataset | W R^2: GNN | best other | told the true functions (upper bound) | forecast R^2 @400: GNN | best other |",
        "|---|---|---|---|---|---|",
    ]

    def best(results: Sequence[MethodResult], metric: str) -> str:
        found = [r for r in results if r.method not in ("gnn", "known_functions") and metric in r.metrics]
        if not found:
            return "–"
        top = max(found, key=lambda r: r.metrics[metric])
        return f"{top.metrics[metric]:.3f} ({top.label})"

    for name, results, _ in sections:
        by = {r.method: r for r in results}
        gnn, upper = by.get("gnn"), by.get("known_functions")
        lines.append(
            f"| {name} | {_cell(gnn.metrics.get('W_r2') if gnn else None)} | {best(results, 'W_r2')} | "
            f"{_cell(upper.metrics.get('W_r2') if upper else None)} | {_cell(gnn.metrics.get('forecast_r2_400') if gnn else None)} | "
            f"{best(results, 'forecast_r2_400')} |"
        )
    return "\n".join(lines)


def write_report(
    folder: str | Path, sections: Sequence[tuple[str, Sequence[MethodResult], Dataset]], here: str, path: Path | None = None
) -> Path:
    """Write the tables (to ``path``, default ``FOLDER/baselines.md``): one per dataset, with the machine, the budgets and
    how forecasts were scored; ``here`` names this machine for results that do not record theirs."""
    machines = sorted(
        {json.loads(f.read_text()).get("machine", here) for n, _, _ in sections for f in (Path(folder) / n / "methods").glob("*.json")}
    )
    parts = [
        f"Every number from `circuitgnn baselines` on {' and '.join(machines) or here}. Trained methods get the same "
        "wall-clock budget; the regression told the true functions is an upper bound, not a rival."
    ]
    for name, results, ds in sections:
        saved = json.loads((Path(folder) / name / "baselines.json").read_text())
        key = saved["key"]
        parts.append(
            format_table(
                f"{name}: N = {ds.n_neurons:,}, {ds.n_frames:,} frames; trained methods {key['minutes']:g} min each",
                results,
                saved["forecast"],
            )
        )
    path = path or Path(folder) / "baselines.md"
    write_text_atomic(path, "\n\n".join(parts) + "\n")
    return path
