"""`circuitgnn report`: one self-contained HTML page per run (figures embedded, no server needed)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from circuitgnn.analyze.evaluate import METRICS, evaluate_run, run_dataset
from circuitgnn.config import dump_config
from circuitgnn.report import figures
from circuitgnn.report.simulation_figure import pyplot
from circuitgnn.train.trainer import load_run

REPORT = "report.html"

_SUMMARY_ROWS = [
    ("W_r2", "W R^2 (corrected for psi* scale and gain)", "1.00"),
    ("W_slope", "W slope (corrected)", "0.99"),
    ("W_r2_raw", "W R^2 (raw)", ""),
    ("types_kmeans_accuracy", "type accuracy (K-means, K by silhouette)", "1.00"),
    ("types_kmeans_k", "number of types found", "4"),
    ("types_kmeans_ari", "adjusted Rand index", ""),
    ("types_hierarchical_accuracy", "type accuracy (hierarchical)", ""),
    ("phi_error_max", "phi* error, worst type (relative RMSE)", ""),
    ("psi_error_max", "psi* error, worst type (relative RMSE, scale aligned)", ""),
    ("rollout_r2_400", "forecast R^2 at 400 steps", "0.94"),
    ("rollout_r2_800", "forecast R^2 at 800 steps", "0.36"),
    ("generalization_S5_r2_400", "new W (25 %) and types 10/20/30/40 %: forecast R^2 at 400", "1.0"),
    ("generalization_S5_r2_800", "... at 800 steps", "0.996"),
    ("generalization_S6_r2_400", "new W (50 %) and types 60/40/0/0 %: forecast R^2 at 400", "1.0"),
    ("generalization_S6_r2_800", "... at 800 steps", "0.975"),
    ("omega_r2", "hidden stimulus R^2 (each field divided by its mean)", ""),
    ("omega_slope", "hidden stimulus slope (each field divided by its mean)", ""),
    ("omega_sqrt_r2", "hidden stimulus R^2, the paper's metric (Fig. 3): sqrt(Omega), first-frame maxima matched", "0.99"),
    ("omega_sqrt_slope", "hidden stimulus slope, the paper's metric", "1.02"),
    ("iterations", "training iterations", "1.25 M"),
    ("train_seconds", "training time (s)", ""),
]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def build_report(run_dir: str | Path, recompute: bool = False) -> Path:
    """Write ``RUN/report.html`` (evaluating the run first when metrics.json is missing or ``recompute``)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS
    metrics = evaluate_run(run_dir) if recompute or not metrics_path.is_file() else json.loads(metrics_path.read_text())
    run = load_run(run_dir)
    ds = run_dataset(run)
    skipped = dict(metrics.get("skipped", {}))
    sections: list[tuple[str, str, str | None]] = []  # (id, title, base64 png or None)

    def add(key: str, title: str, make) -> None:
        try:
            sections.append((key, title, _png(make())))
        except Exception as err:  # a figure that fails must not hide the others
            skipped[f"figure: {title}"] = f"{type(err).__name__}: {err}"

    add("activity", "Activity", lambda: figures.activity(ds))
    if "W_r2" in metrics:
        add("connectivity", "Connectivity: true and learned W", lambda: figures.connectivity(run, ds, metrics))
    else:
        add("connectivity", "Connectivity: learned W", lambda: figures.connectivity(run, ds, metrics))
    if not run.config.model.fixed_embedding:
        add("embeddings", "Neuron types: embeddings", lambda: figures.embeddings(run, ds, run.config.training.clustering.max_types))
    add("functions", "Functions: phi* and psi*", lambda: figures.functions(run, ds))
    if run.config.model.external_input == "field" and ds.omega is not None:
        from circuitgnn.analyze.stimulus import movie_figure

        add("stimulus", "Hidden stimulus: true (top) and recovered (bottom), scaled to the true mean", lambda: movie_figure(run.input_model, ds))
    rollout_file = run_dir / "rollout.npz"
    if rollout_file.is_file():
        with np.load(rollout_file) as z:
            pred, true = z["predicted"], z["true"]
        add("rollout", "Forecast (rollout)", lambda: figures.rollout(pred, true, metrics, ds.dt))
    if run.log:
        add("training", "Training", lambda: figures.training(run.log))

    formulas_html = ""
    symbolic_file = run_dir / "symbolic.json"
    if symbolic_file.is_file():
        sym = json.loads(symbolic_file.read_text())
        lines = []
        for kind in ("phi", "psi"):
            for e in sym[kind]:
                where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in e.items() if k.endswith("cluster") and v is not None) or "all neurons"
                lines.append(f"<tr><td>{kind}*</td><td>{html.escape(where)}</td><td><code>{html.escape(e['formula'])}</code></td>"
                             f"<td><code>{html.escape(e.get('true', ''))}</code></td><td>{e['error']:.3g}</td></tr>")
        formulas_html = (f'<section id="formulas"><h2>Formulas (symbolic regression, backend {html.escape(sym["backend"])})</h2>'
                         "<p>Each neuron cluster's median learned curve on [-xnorm, xnorm]; psi* divided by its plateau "
                         "(its scale is absorbed by W). Error: relative RMSE of the formula on the curve.</p>"
                         "<table><tr><th>function</th><th>neurons</th><th>learned</th><th>true</th><th>error</th></tr>"
                         + "".join(lines) + "</table></section>")
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_fmt(metrics[key])}</td><td>{paper}</td></tr>"
        for key, label, paper in _SUMMARY_ROWS
        if key in metrics
    )
    skipped_html = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items())
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'
        for key, title, png in sections
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>circuitgnn report: {html.escape(metrics['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}img{{max-width:100%}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>circuitgnn report: {html.escape(metrics['name'])}</h1>
<p>dataset <code>{html.escape(metrics['dataset'])}</code>: N = {metrics['n_neurons']} neurons, T = {metrics['n_frames']} frames.
Forecast: {html.escape(metrics.get('rollout_method', ''))}.</p>
<section id="summary"><h2>Summary</h2><table><tr><th>metric</th><th>this run</th><th>paper (Fig. 2)</th></tr>{rows}</table>
{f'<h3>Skipped</h3><ul>{skipped_html}</ul>' if skipped_html else ''}</section>
{body}
{formulas_html}
<section id="config"><h2>Config</h2><pre>{html.escape(dump_config(run.config))}</pre></section>
</body></html>
"""
    out = run_dir / REPORT
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out
