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

from circuitgnn.analyze.confidence import CONFIDENCE, CONFIDENCE_SUMMARY
from circuitgnn.analyze.evaluate import METRICS, evaluate_run
from circuitgnn.analyze.registry import summary_rows
from circuitgnn.analyze.stimulus import movie_figure
from circuitgnn.analyze.symbolic import formula_scope
from circuitgnn.config import TrainingConfig, dump_config
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.informative import rank_shortfall
from circuitgnn.report import figures
from circuitgnn.simulate.figure import pyplot
from circuitgnn.train.run_folder import load_run, run_dataset

REPORT = "report.html"


def png(fig) -> str:
    """A matplotlib figure as base64 PNG, the figure closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def confident_section(summary: dict[str, Any], how: str) -> str:
    """The table of the 20 connections most probably non-zero from a confidence summary (``confidence.json``), its
    intervals said to come from ``how``."""
    rows = "".join(
        f"<tr><td>{c['sender']}</td><td>{c['receiver']}</td><td>{c['weight']:+.4g}</td>"
        f"<td>[{c['lower']:+.4g}, {c['upper']:+.4g}]</td><td>{c['z']:.1f}</td><td>{c.get('p_nonzero', float('nan')):.3f}</td></tr>"
        for c in summary["confident"][:20]
    )
    widened = (
        f", widened by the empirical null ({summary['null_width']:.3g} standard errors wide)"
        if summary.get("null_width") is not None
        else ""
    )
    return (
        f'<section id="confident"><h2>Connections confidently non-zero ({summary["n_confident"]:,} with P(W = 0) &lt; 0.05; '
        "the 20 most probably non-zero)</h2>"
        f"<p>{summary['level']:.0%} intervals from {html.escape(how)}{widened}; weights with psi*'s scale moved into W.</p>"
        f"<table><tr><th>sender</th><th>receiver</th><th>W</th><th>interval</th><th>|W| / sd</th><th>P(W != 0)</th></tr>{rows}</table></section>"
    )


def write_page(out: Path, page: str) -> Path:
    """Write ``page`` to ``out`` through a temporary name, so that a reader never sees half a report."""
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out


STYLE = """<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}img{max-width:100%}
pre{background:#f6f6f6;padding:1em;overflow:auto}</style>"""


def _data_warnings(ds: Dataset) -> list[str]:
    """What the import or the simulation measured that limits what the data determine (the activity's rank)."""
    found = ds.meta.get("informative") or {}
    rank = found.get("rank", ds.meta.get("summary", {}).get("activity_rank"))
    among = found.get("rank_neurons", ds.n_neurons)
    if rank is None or rank >= among:
        return []
    return [rank_shortfall(rank, f"of {among} neurons")]


def _recording_note(ds: Dataset) -> str:
    """Segments and held-out frames of a recording (nothing for a single simulated segment)."""
    parts = []
    if len(ds.segments) > 1:
        parts.append(f"{len(ds.segments)} segments (sessions, trials or gaps)")
    if ds.holdout > 0:
        parts.append(f"the last {100 * ds.holdout:g} % of each segment held out from training")
    if ds.meta.get("left_out"):
        parts.append(f"{len(ds.meta['left_out'])} neuron(s) without signal left out")
    if ds.indicator is not None:
        parts.append(f"recorded through a calcium indicator ({ds.indicator.describe()})")
    if ds.signal == "deconvolved":
        info = ds.meta.get("deconvolution", {})
        lam = info.get("smoothness")
        chosen = "chosen by cross-validation" if info.get("smoothness_chosen", "cross-validated") == "cross-validated" else "given"
        how = "central differences" if lam is None else f"spline weight {lam:.3g}, {chosen}"
        parts.append(f"the activity deconvolved from the fluorescence ({how})")
    if ds.recorded is not None:
        parts.append(f"{ds.n_neurons} neurons of a simulated network of {int(ds.meta['summary']['n_neurons'])} recorded")
    return "; " + "; ".join(parts) if parts else ""


def _objective_note(tc: TrainingConfig, data: dict[str, Any], ds: Dataset) -> str:
    r = tc.rollout
    if tc.objective == "rollout":
        return f"rollout objective, {r.steps} frame(s) ahead, {r.substeps} {r.integrator} step(s) per frame, no derivative"
    if tc.objective == "fluorescence":
        return (
            f"fluorescence objective: the model and the indicator integrated {r.steps} frame(s) ahead "
            f"({r.substeps} {r.integrator} step(s) per frame), the loss on the recorded fluorescence"
        )
    derivative = data.get("derivative") or "recorded"
    if derivative == "recorded" and ds.signal == "deconvolved":
        derivative = "deconvolved with the activity"
    return f"derivative objective, dx/dt {derivative}"


def build_report(run_dir: str | Path, recompute: bool = False, reference: dict[str, Any] | None = None, reference_name: str = "") -> Path:
    """Write ``RUN/report.html`` (evaluating the run first when metrics.json is missing or ``recompute``).

    ``reference``: published values of the same experiment (the reproduce manifest's paper values),
    shown in a column named ``reference_name`` beside this run's; a user's run has none.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS
    metrics = evaluate_run(run_dir) if recompute or not metrics_path.is_file() else json.loads(metrics_path.read_text())
    run = load_run(run_dir)
    ds = run_dataset(run)
    skipped = dict(metrics.get("skipped", {}))
    sections: list[tuple[str, str, str | None]] = []  # (id, title, base64 png or None)

    def add(key: str, title: str, make) -> None:
        try:
            sections.append((key, title, png(make())))
        except Exception as err:  # a figure that fails must not hide the others
            skipped[f"figure: {title}"] = f"{type(err).__name__}: {err}"

    add("activity", "Activity", lambda: figures.activity(ds))
    if ds.signal == "deconvolved":
        add("calcium", "Calcium: the recorded fluorescence and the activity deconvolved from it", lambda: figures.calcium(ds))
    if "W_r2" in metrics:
        add("connectivity", "Connectivity: true and learned W", lambda: figures.connectivity(run, ds, metrics))
    else:
        add("connectivity", "Connectivity: learned W", lambda: figures.connectivity(run, ds, metrics))
    if not run.config.model.fixed_embedding:
        add("embeddings", "Neuron types: embeddings", lambda: figures.embeddings(run, ds, run.config.training.clustering.max_types))
    add("functions", "Functions: phi* and psi*", lambda: figures.functions(run, ds))
    if run.config.model.external_input == "field" and ds.omega is not None:
        add(
            "stimulus",
            "Hidden stimulus: true (top) and recovered (bottom), scaled to the true mean",
            lambda: movie_figure(run.input_model, ds),
        )
    rollout_file = run_dir / "rollout.npz"
    if rollout_file.is_file():
        with np.load(rollout_file) as z:
            pred, true = z["predicted"], z["true"]
        add("rollout", "Forecast (rollout)", lambda: figures.rollout(pred, true, metrics, ds.dt))
    if run.log:
        add("training", "Training", lambda: figures.training(run.log))
    confidence_html = ""
    if (run_dir / CONFIDENCE).is_file() and (run_dir / CONFIDENCE_SUMMARY).is_file():
        summary = json.loads((run_dir / CONFIDENCE_SUMMARY).read_text())
        with np.load(run_dir / CONFIDENCE) as z:
            arrays = {k: z[k] for k in z.files}
        add("confidence", "Confidence: which connections the data support", lambda: figures.confidence(arrays, summary))
        how = "least squares given the learned functions (`circuitgnn confidence`)"
        confidence_html = confident_section(summary, how)

    formulas_html = ""
    symbolic_file = run_dir / "symbolic.json"
    if symbolic_file.is_file():
        sym = json.loads(symbolic_file.read_text())
        lines = []
        for kind in ("phi", "psi"):
            for e in sym[kind]:
                where = formula_scope(e)
                lines.append(
                    f"<tr><td>{kind}*</td><td>{html.escape(where)}</td><td><code>{html.escape(e['formula'])}</code></td>"
                    f"<td><code>{html.escape(e.get('true', ''))}</code></td><td>{e['error']:.3g}</td></tr>"
                )
        formulas_html = (
            f'<section id="formulas"><h2>Formulas (symbolic regression, backend {html.escape(sym["backend"])})</h2>'
            "<p>Each neuron cluster's median learned curve on [-xnorm, xnorm]; psi* divided by its plateau "
            "(its scale is absorbed by W). Error: relative RMSE of the formula on the curve.</p>"
            "<table><tr><th>function</th><th>neurons</th><th>learned</th><th>true</th><th>error</th></tr>"
            + "".join(lines)
            + "</table></section>"
        )
    ref = {k: v for k, v in (reference or {}).items() if v is not None}
    ref_head = f"<th>{html.escape(reference_name or 'reference')}</th>" if ref else ""
    rows = "".join(
        f"<tr><td>{html.escape(m.label)}</td><td>{html.escape(m.format(value))}</td>"
        + (f"<td>{html.escape(m.format(ref[m.name])) if m.name in ref else ''}</td>" if ref else "")
        + "</tr>"
        for m, value in summary_rows(metrics)
    )
    skipped_html = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items())
    warnings_html = "".join(f"<li>{html.escape(w)}</li>" for w in [*metrics.get("warnings", []), *_data_warnings(ds)])
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'
        for key, title, png in sections
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>circuitgnn report: {html.escape(metrics["name"])}</title>
{STYLE}</head><body>
<h1>circuitgnn report: {html.escape(metrics["name"])}</h1>
<p>dataset <code>{html.escape(metrics["dataset"])}</code>: N = {metrics["n_neurons"]} neurons, T = {metrics["n_frames"]} frames
{ds.dt:g} time units apart, activity in {html.escape(ds.units)}{_recording_note(ds)}.
Training: {html.escape(_objective_note(run.config.training, run.data, ds))}.
Forecast: {html.escape(metrics.get("rollout_method", ""))}.</p>
<section id="summary"><h2>Summary</h2><table><tr><th>metric</th><th>this run</th>{ref_head}</tr>{rows}</table>
{f"<h3>Warnings</h3><ul>{warnings_html}</ul>" if warnings_html else ""}
{f"<h3>Skipped</h3><ul>{skipped_html}</ul>" if skipped_html else ""}</section>
{body}
{confidence_html}
{formulas_html}
<section id="config"><h2>Config</h2><pre>{html.escape(dump_config(run.config))}</pre></section>
</body></html>
"""
    return write_page(run_dir / REPORT, page)
