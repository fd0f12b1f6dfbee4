"""The HTML page of an ensemble folder (`circuitgnn ensemble`): what its members agree on, figures embedded."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from circuitgnn.analyze.confidence import CONFIDENCE, CONFIDENCE_SUMMARY
from circuitgnn.ensemble_run import SETTINGS
from circuitgnn.errors import CircuitGNNError
from circuitgnn.report import figures
from circuitgnn.report.html import REPORT, STYLE, confident_section, png, write_page


def build_ensemble_report(folder: str | Path) -> Path:
    """Write ``FOLDER/report.html`` from the files :func:`~circuitgnn.ensemble_run.run_ensemble` wrote there."""
    folder = Path(folder)
    missing = [name for name in (SETTINGS, CONFIDENCE, CONFIDENCE_SUMMARY) if not (folder / name).is_file()]
    if missing:
        raise CircuitGNNError(f"{folder} is not a finished ensemble ({', '.join(missing)} missing): run `circuitgnn ensemble` first")
    settings = json.loads((folder / SETTINGS).read_text())
    summary = json.loads((folder / CONFIDENCE_SUMMARY).read_text())
    with np.load(folder / CONFIDENCE) as z:
        arrays = {k: z[k] for k in z.files}
    members = "".join(
        f"<tr><td>{html.escape(m['run'])}</td><td>{m['seed']}</td><td>{m['iterations']:,}</td><td>{m['scale']:.4f}</td><td>{m['n_types']}</td></tr>"
        for m in summary["members"]
    )
    resample = f"block-bootstrap resamples of {summary['block_frames']} frames" if settings["bootstrap"] else "the same frames"
    calibration = ""
    if "calibration" in summary:
        cal = summary["calibration"]
        auc = f"; edge AUC by lfdr {cal['auc_lfdr']:.3f}, by |W| {cal['auc_abs_w']:.3f}" if "auc_lfdr" in cal else ""
        calibration = f"<p>Against the simulation's truth: {cal['coverage']:.3f} of the true (scale-aligned) weights inside their {cal['level']:.0%} interval{auc}.</p>"
    title = "Agreement between members: confidence, sign, types" + (", calibration" if "coverage_curve" in summary else "")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>circuitgnn ensemble: {html.escape(folder.name)}</title>
{STYLE}</head><body>
<h1>circuitgnn ensemble: {html.escape(folder.name)}</h1>
<p>dataset <code>{html.escape(settings["dataset"])}</code>: N = {len(arrays["mean"])} neurons; {len(summary["members"])} members
(different seeds, {resample}). Intervals: {html.escape(summary["method"])}.
Types: mean adjusted Rand index between members {summary["type_stability_ari"]:.3f};
{summary["sign_unanimous"]:.1%} of the connections have one sign in every member.</p>
<section id="members"><h2>Members</h2><table><tr><th>run</th><th>seed</th><th>iterations</th><th>overall scale</th><th>types</th></tr>{members}</table></section>
<section id="agreement"><h2>{html.escape(title)}</h2><img alt="ensemble" src="data:image/png;base64,{png(figures.ensemble(arrays, summary))}">{calibration}</section>
{confident_section(summary, summary["method"])}
</body></html>
"""
    return write_page(folder / REPORT, page)


__all__ = ["build_ensemble_report"]
