"""`circuitgnn ensemble`: K fits of a dataset folder, what they agree on, written beside their run folders.

    circuitgnn ensemble CONFIG DATASET --out runs/ensemble --members 4 --jobs 2 --combined

``OUT/member_k`` holds member k's run (resumable: the same command continues an interrupted ensemble);
``OUT/ensemble.json`` the settings a later call must match; ``OUT/confidence.npz`` the per-connection mean, sd,
interval, sign agreement, the members' type co-assignment and overall scales; ``OUT/confidence.json`` the summary
(members, type stability, confident connections, and on simulated data the calibration against the truth), which
:func:`circuitgnn.report.ensemble_html.build_ensemble_report` turns into ``OUT/report.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from circuitgnn.analyze.confidence import (
    CONFIDENCE,
    CONFIDENCE_SUMMARY,
    EdgeConfidence,
    calibration,
    check_level,
    combined_confidence,
    coverage_curve,
    ensemble_confidence,
    plateau_aligned,
)
from circuitgnn.config import ExperimentConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import save_npz_atomic, write_json_atomic
from circuitgnn.ensemble import CircuitGNNEnsemble
from circuitgnn.errors import CircuitGNNError
from circuitgnn.estimator import CircuitGNN

SETTINGS = "ensemble.json"
BUDGET = {"device", "max_iterations", "max_minutes"}  # may change between calls: where and how far the members train


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse a folder that holds something other than this ensemble, before any member trains."""
    if out.exists() and not out.is_dir():
        raise CircuitGNNError(f"{out} exists and is not a folder")
    path = out / SETTINGS
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CircuitGNNError(f"{path} is not readable JSON ({err}): remove the folder or choose another --out") from None
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise CircuitGNNError(
                f"{out} holds an ensemble with other settings ({', '.join(changed)}): continue it with the same command, "
                "or choose another --out"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise CircuitGNNError(f"{out} is not empty and holds no ensemble ({SETTINGS} missing): choose another --out")


def run_ensemble(
    config: ExperimentConfig,
    data: str | Path,
    out: str | Path,
    *,
    members: int = 4,
    n_jobs: int = 1,
    bootstrap: bool = True,
    combined: bool = False,
    centre: Literal["fit", "least_squares"] = "least_squares",
    level: float = 0.9,
    empirical_null: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or continue) an ensemble of ``members`` fits of ``config`` on the dataset folder ``data`` into ``out``
    and write what they agree on (module docstring); returns the summary. A later call on the same folder must have
    the same settings except the device and the members' budget (``training.max_iterations``, ``max_minutes``): a
    larger budget continues every member to it.

    The intervals written are the ensemble's prediction intervals (:func:`ensemble_confidence`) or, with
    ``combined``, those with the data's share counted once (:func:`combined_confidence`, one least-squares pass per
    member), around the members' least-squares W (``centre="least_squares"``, each receiver's row solved with its own
    terms) or their trained W (``"fit"``); ``empirical_null`` widens them for a sparse network
    (:meth:`EdgeConfidence.with_empirical_null`)."""
    level = check_level(level)
    if centre not in ("fit", "least_squares"):
        raise CircuitGNNError(f"centre must be 'fit' or 'least_squares', got {centre!r}")
    ds = Dataset(data)
    out = Path(out)
    settings = {
        "dataset": str(Path(data).resolve()),
        "members": members,
        "bootstrap": bootstrap,
        "model": config.model.model_dump(mode="json"),
        "training": config.training.model_dump(mode="json", exclude=BUDGET),
    }
    ens = CircuitGNNEnsemble(
        members, bootstrap=bootstrap, model=config.model, training=config.training, level=level, n_jobs=n_jobs, progress=progress
    )
    _check_settings(out, settings)
    activity = ds.activity()
    mode: Literal["multiplicative", "additive"] = "additive" if activity.input_mode == "additive" else "multiplicative"
    if config.model.external_input == "known" and activity.inputs is None:
        raise CircuitGNNError(f"{data} has no recorded input (omega.npy), which model.external_input 'known' needs")
    if combined:
        ens.check_combined(activity.input_mode)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SETTINGS, settings)
    x, dxdt, segments = ds.training_frames()
    recorded = dxdt if config.training.derivative in ("auto", "recorded") else None
    inputs = ds.training_inputs() if config.model.external_input == "known" else None
    ens.fit(
        x, ds.dt, recorded, inputs, input_mode=mode, grid_size=activity.grid_size, segments=segments,
        scale=activity.scale, folder=out,
    )  # fmt: skip
    weights = [plateau_aligned(m.model_, m.xnorm_) for m in ens.members_]
    ones = ens.one_fits(x, recorded, inputs=inputs, segments=segments) if combined else []

    def at(q: float) -> EdgeConfidence:
        built = ensemble_confidence(weights, q)
        built = combined_confidence(built, ones, centre=centre) if combined else built
        return built.with_empirical_null() if empirical_null else built

    conf = at(level)
    scales = np.asarray(ens.confidence_.scales)
    agree = np.asarray(conf.sign_agreement if conf.sign_agreement is not None else ens.confidence_.sign_agreement)
    summary: dict[str, Any] = {
        "method": conf.method,
        "level": level,
        "members": [_member(k, m, float(c)) for k, (m, c) in enumerate(zip(ens.members_, scales, strict=True))],
        "n_jobs": n_jobs,
        "block_frames": ens.block_,
        "type_stability_ari": ens.type_stability_,
        "null_width": conf.null_width,
        "n_confident": int(conf.nonzero().sum()),
        "confident": conf.confident(limit=200),
        "sign_unanimous": float((agree == 1.0)[~np.eye(len(agree), dtype=bool)].mean()),
    }
    truth = ds.truth
    if truth is not None:
        summary["calibration"] = calibration(conf, truth.connectivity, truth.gains)
        summary["coverage_curve"] = coverage_curve(at, truth.connectivity, truth.gains)
    save_npz_atomic(
        out / CONFIDENCE, mean=conf.mean, sd=conf.sd, lower=conf.lower, upper=conf.upper,
        sign_agreement=agree, coassignment=ens.coassignment_, scales=scales,
    )  # fmt: skip
    write_json_atomic(out / CONFIDENCE_SUMMARY, summary)
    return summary


def _member(k: int, m: CircuitGNN, scale: float) -> dict[str, Any]:
    last = m.history_[-1] if m.history_ else {}
    return {
        "run": f"member_{k}",
        "seed": m.training.seed,
        "iterations": int(last.get("iteration", 0)),
        "scale": scale,
        "n_types": len(np.unique(m.types_)),
    }


__all__ = ["SETTINGS", "run_ensemble"]
