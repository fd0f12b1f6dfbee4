"""Command-line interface: ``circuitgnn run | simulate | import | export | deconvolve | scan-tau | train | evaluate | report | symbolic |
reproduce | baselines | confidence | ensemble | info | config-help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from circuitgnn.config import TrainingConfig

from circuitgnn.config.io import format_validation_error
from circuitgnn.errors import CircuitGNNError

DEFAULT_WORK = "runs/reproduce"  # `circuitgnn reproduce`'s work folder, whose scoreboard goes to results/


def _cmd_simulate(args: argparse.Namespace) -> int:
    from circuitgnn.config import load_config
    from circuitgnn.simulate.run import format_summary, simulate

    config = load_config(args.config)
    sim = config.simulation
    if args.seed is not None:
        sim.seed = args.seed
    if args.frames is not None:
        sim.n_frames = args.frames
    result = simulate(config, args.out, overwrite=args.overwrite, device=args.device, progress=not args.quiet, figure=not args.no_figure)
    print(format_summary(result.summary))
    print(f"dataset      {Path(args.out).resolve()}")
    if not args.no_figure:
        print(f"figure       {Path(args.out).resolve() / 'simulation.png'}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from circuitgnn.data.importer import describe_import, import_recording
    from circuitgnn.errors import DatasetError

    options = {
        "format": args.format,
        "key": args.key,
        "layout": args.layout,
        "dt": args.dt,
        "rate": args.rate,
        "timestamps_key": args.timestamps_key,
        "inputs_key": args.inputs_key,
        "time_column": int(args.time_column) if args.time_column and args.time_column.isdigit() else args.time_column,
    }
    if args.neuropil is not None or args.all_rois:  # suite2p only: refused by the other readers when given
        if (args.format or "") != "suite2p" and not all(Path(r).is_dir() for r in args.recordings):
            raise DatasetError("--neuropil and --all-rois apply to suite2p folders only")
        options.update(neuropil=0.7 if args.neuropil is None else args.neuropil, cells_only=not args.all_rois)
    ds = import_recording(
        args.recordings, args.out, holdout=args.holdout, overwrite=args.overwrite, check_activity=not args.no_check, **options
    )
    print(describe_import(ds))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from circuitgnn.data.export import export_recording

    print(f"recording    {export_recording(args.dataset, args.out, overwrite=args.overwrite).resolve()}")
    return 0


def _cmd_deconvolve(args: argparse.Namespace) -> int:
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.data.deconvolve import deconvolve_dataset
    from circuitgnn.data.indicators import indicator_config

    ds = Dataset(args.dataset)
    names = ("tau", "rise", "transform", "saturation", "hill", "scale", "baseline")
    changes = {k: getattr(args, k) for k in names}
    given = any(v is not None for v in changes.values())
    indicator = indicator_config(ds.meta.get("indicator"), "the command line", **changes) if given else None
    out = deconvolve_dataset(ds, args.out, indicator, smoothness=args.smoothness, overwrite=args.overwrite)
    assert out.indicator is not None
    info = out.meta["deconvolution"]
    lam = info["smoothness"]
    print(f"indicator    {out.indicator.describe()}")
    chosen = info.get("smoothness_chosen", "cross-validated")
    print(f"smoothness   {'(segments too short: central differences)' if lam is None else f'{lam:.4g} ({chosen})'}")
    print(f"dataset      {out.path.resolve()}: activity and dx/dt deconvolved, with the fluorescence and smoothed calcium")
    return 0


def _cmd_scan_tau(args: argparse.Namespace) -> int:
    from circuitgnn.analyze.indicator_scan import scan_indicator_tau
    from circuitgnn.config import load_config
    from circuitgnn.config.indicator import IndicatorConfig
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.data.writer import write_json_atomic
    from circuitgnn.errors import DatasetError

    ds = Dataset(args.dataset)
    if ds.signal == "deconvolved":
        raise DatasetError(f"{ds.path} is already deconvolved: scan the calcium recording it came from")
    config = load_config(args.config)
    base = ds.indicator.cfg if ds.indicator is not None else IndicatorConfig()
    if args.out is not None and Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists: choose another --out or pass --overwrite")
    scores = scan_indicator_tau(
        ds.activity(), args.taus, config, indicator=base, minutes=args.minutes, horizon=args.horizon, progress=not args.quiet
    )
    best = min(scores, key=lambda s: s.forecast_error)
    print(f"{'tau':>8} {'held-out forecast error':>24} {'iterations':>11} {'seconds':>8}")
    for s in scores:
        print(f"{s.tau:8g} {s.forecast_error:24.4f} {s.iterations:11,} {s.seconds:8.0f}{'   <- best' if s is best else ''}")
    if args.out is not None:
        write_json_atomic(
            Path(args.out),
            {
                "dataset": str(ds.path.resolve()),
                "horizon": args.horizon,
                "minutes": args.minutes,
                "best_tau": best.tau,
                "scores": [s.__dict__ for s in scores],
            },
        )
    print(f"tau          {best.tau:g}: deconvolve with `circuitgnn deconvolve {args.dataset} --tau {best.tau:g} --out ...`")
    return 0


def _trainer(config, data: Path, out: Path, resume: bool, overwrite: bool, quiet: bool):
    """A trainer whose log scores the model against the dataset's ground truth, when it has one."""
    from circuitgnn.analyze.evaluate import training_scorer
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.train.trainer import Trainer

    dataset = Dataset(data)
    return Trainer(config, dataset, out, resume=resume, overwrite=overwrite, progress=not quiet, scorer=training_scorer(dataset, config))


def _override_training(tc: TrainingConfig, args: argparse.Namespace) -> None:
    """--device and --max-minutes, where given, replace the config's."""
    if args.device is not None:
        tc.device = args.device
    if args.max_minutes is not None:
        tc.max_minutes = args.max_minutes


def _cmd_train(args: argparse.Namespace) -> int:
    from circuitgnn.config import load_config

    config = load_config(args.config)
    _override_training(config.training, args)
    trainer = _trainer(config, Path(args.data), Path(args.out), args.resume, args.overwrite, args.quiet)
    try:
        run = trainer.fit(max_iterations=args.max_iterations)
    except KeyboardInterrupt:
        print(f"interrupted: checkpoint saved in {Path(args.out).resolve()}; continue with --resume", file=sys.stderr)
        return 130
    print(
        f"run          {Path(args.out).resolve()} ({trainer.counters.global_iteration} iterations, "
        f"{trainer.counters.train_seconds:.0f} s of training)"
    )
    last = run.log[-1] if run.log else {}
    _print_metrics({k: v for k, v in last.items() if k not in ("iteration", "train_seconds")})
    return 0


_SUMMARY = (
    "W_r2",
    "W_slope",
    "W_r2_raw",
    "type_accuracy",
    "n_clusters",
    "types_kmeans_accuracy",
    "types_kmeans_k",
    "types_kmeans_ari",
    "phi_error_max",
    "psi_error_max",
    "rollout_r2_400",
    "rollout_r2_800",
    "generalization_S5_r2_400",
    "generalization_S5_r2_800",
    "generalization_S6_r2_400",
    "generalization_S6_r2_800",
    "omega_r2",
    "omega_sqrt_r2",
)


def _print_metrics(m: dict) -> None:
    """One line per headline metric present in ``m`` (labels from the metric registry), then what was skipped."""
    from circuitgnn.analyze.registry import metric

    for name in _SUMMARY:
        if name in m:
            info = metric(name)
            print(f"{info.format(m[name]):>10}   {info.label}")
    for name, why in m.get("skipped", {}).items():
        print(f"skipped      {name}: {why}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from circuitgnn.analyze.evaluate import evaluate_run

    _print_metrics(evaluate_run(args.run, rollout_steps=args.rollout_steps))
    print(f"metrics      {Path(args.run).resolve() / 'metrics.json'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from circuitgnn.report.html import build_report

    print(f"report       {build_report(args.run, recompute=args.recompute).resolve()}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import time

    from circuitgnn.analyze.evaluate import evaluate_run
    from circuitgnn.config import load_config
    from circuitgnn.device import pick_device
    from circuitgnn.report.html import build_report
    from circuitgnn.simulate.run import format_summary, simulate

    t0 = time.perf_counter()
    config = load_config(args.config)
    pick_device(config.training.device)  # an unavailable device is refused before the dataset is replaced
    out = Path(args.out) if args.out else Path("runs") / config.name
    data, run_dir = out / "data", out / "run"
    if (data / "meta.json").is_file() and not args.overwrite:
        print(f"dataset      {data} exists: reusing it")
    else:
        print(format_summary(simulate(config, data, overwrite=args.overwrite, progress=not args.quiet).summary))
    resume = (run_dir / "checkpoint.pt").is_file() and not args.overwrite
    trainer = _trainer(config, data, run_dir, resume, args.overwrite, args.quiet)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        print(f"interrupted: run `circuitgnn run {args.config} --out {out}` again to resume", file=sys.stderr)
        return 130
    _print_metrics(evaluate_run(run_dir))
    report = build_report(run_dir)
    print(f"time         {time.perf_counter() - t0:.0f} s in all")
    print(f"report       {report.resolve()}")
    return 0


def _cmd_symbolic(args: argparse.Namespace) -> int:
    from circuitgnn.analyze.symbolic import formula_scope, symbolic_run

    result = symbolic_run(args.run, backend=args.backend)
    for kind in ("phi", "psi"):
        for e in result[kind]:
            where = formula_scope(e)
            true = f"   (true: {e['true']})" if "true" in e else ""
            print(f"{kind} [{where}]: {e['formula']}   (error {e['error']:.3g}){true}")
    print(f"formulas     {Path(args.run).resolve() / 'symbolic.json'}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from circuitgnn.errors import ConfigError
    from circuitgnn.reproduce.manifest import DEFAULT_MANIFEST, load_manifest
    from circuitgnn.reproduce.runner import record_failure, reproduce_experiment
    from circuitgnn.reproduce.scoreboard import update_readme, verdict, write_scoreboard

    if args.minutes is not None and args.minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes}")
    if args.restart and not args.experiments:
        raise ConfigError("--restart deletes the named experiments' folders: name them (see --list)")
    if args.results is None and not args.list and Path(args.work) != Path(DEFAULT_WORK):
        raise ConfigError(
            f"--work {args.work} would rebuild the scoreboard in results/ from that folder alone, replacing the one made from "
            f"{DEFAULT_WORK}: give the scoreboard its own --results folder"
        )
    manifest = load_manifest(args.manifest or DEFAULT_MANIFEST)
    chosen = manifest.select(args.experiments)
    if args.list:
        for e in chosen:
            print(f"{e.id:32s} {e.minutes:5g} min  {e.title} ({e.figure})")
        return 0
    failed = []
    if not args.collect:
        for exp in chosen:
            try:
                reproduce_experiment(
                    exp,
                    Path(args.work),
                    minutes=args.minutes,
                    device=args.device,
                    restart=args.restart,
                    full_size=True if args.full_size else None,
                    progress=not args.quiet,
                )
            except KeyboardInterrupt:
                print(
                    f"interrupted during {exp.id}: run the same command to resume (training resumes from its last checkpoint)",
                    file=sys.stderr,
                )
                return 130
            except Exception as err:  # one experiment's failure (bad config, divergence, out of memory) must not stop the others
                failed.append(exp.id)
                record_failure(Path(args.work), exp, err)
                print(f"[{exp.id}] failed: {type(err).__name__}: {err}", file=sys.stderr)
    # named experiments with their own results folder (and no README) get a scoreboard of their rows alone, run or
    # collected: the other rows of that work folder would be "not run"
    own_folder = args.results is not None and not args.readme
    only = chosen if args.experiments and (args.collect or own_folder) else None
    if only is not None and (args.readme or args.results is None):
        raise ConfigError(
            "--collect with experiment ids writes a scoreboard of those rows alone: give it its own --results folder "
            "(and no --readme), so that the full scoreboard and the README table are not cut down"
        )
    results = Path(args.results or "results")
    rows = write_scoreboard(manifest, Path(args.work), results, only)
    if args.readme:
        update_readme(Path(args.readme), rows)
        print(f"readme       {args.readme}: results table updated")
    for r in rows:
        if r["id"] in {e.id for e in chosen}:
            print(f"{r['id']:32s} {verdict(r)}")
    print(f"scoreboard   {results.resolve() / 'scoreboard.md'}")
    return 1 if failed else 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    from circuitgnn.analyze.baselines.compare import (
        BASELINES_BEGIN,
        BASELINES_END,
        check_methods,
        compare_methods,
        machine,
        summary_table,
        write_report,
    )
    from circuitgnn.config import load_config
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.data.writer import replace_generated_block

    methods = check_methods(args.methods.split(",") if args.methods else None)
    config = load_config(args.config) if args.config else None
    datasets = [Dataset(d) for d in args.datasets]  # every folder is checked before any work
    names = [d.path.name for d in datasets]
    if len(set(names)) < len(names):
        raise FileExistsError(f"two datasets share a folder name ({', '.join(names)}): their results would share OUT/NAME")
    if args.readme and not Path(args.readme).is_file():
        raise FileNotFoundError(f"--readme {args.readme}: no such file")
    sections = []
    for ds in datasets:
        results = compare_methods(
            ds, Path(args.out) / ds.path.name, args.minutes, methods, args.steps, args.seed, config, args.overwrite, not args.quiet
        )
        sections.append((ds.path.name, results, ds))
    report = write_report(args.out, sections, machine(), Path(args.tables) if args.tables else None)
    print(report.read_text())
    if args.readme:
        summary = summary_table(sections) + f"\n\nEvery method on each dataset, with fit times and peak memory: `{report}`."
        replace_generated_block(Path(args.readme), BASELINES_BEGIN, BASELINES_END, summary, "circuitgnn baselines ... --readme README.md")
        print(f"readme       {Path(args.readme).resolve()}")
    print(f"tables       {report.resolve()}")
    return 0


def _print_confidence(s: dict, top: int) -> None:
    """The confident connections and, on simulated data, the calibration of a confidence summary."""
    print(f"confident    {s['n_confident']:,} connections probably non-zero (lfdr < 0.05); the strongest:")
    for c in s["confident"][:top]:
        print(f"  {c['sender']:>6} -> {c['receiver']:<6} {c['weight']:+.4g}  [{c['lower']:+.4g}, {c['upper']:+.4g}]  z {c['z']:.1f}")
    if "calibration" in s:
        cal = s["calibration"]
        extra = (
            f"; edge AUC of lfdr {cal['auc_lfdr']:.3f}, of |W| {cal['auc_abs_w']:.3f}; the confident list's precision "
            f"{cal['confident_precision']:.3f}, recall {cal['confident_recall']:.3f}"
            if "auc_z" in cal
            else ""
        )
        print(f"calibration  {cal['coverage']:.3f} of the true (scale-aligned) weights inside their {cal['level']:.0%} interval{extra}")


def _own_degree(text: str) -> int | None:
    if text == "none":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or 'none', got {text!r}")
    return int(text)


def _cmd_confidence(args: argparse.Namespace) -> int:
    from circuitgnn.analyze.confidence import CONFIDENCE_SUMMARY, run_confidence

    s = run_confidence(args.run, args.level, args.empirical_null, args.own_degree)
    widened = f"; widened by the empirical null, {s['null_width']:.3g} standard errors wide" if s["null_width"] is not None else ""
    own = "phi* as learned" if args.own_degree is None else f"each receiver's own terms of degree {args.own_degree}"
    print(f"intervals    {s['level']:.0%}, least squares given the learned functions, {own} ({s['seconds']:.1f} s){widened}")
    print(f"diagnostics  Gram condition {s['gram_condition']:.3g}; median self-explained coupling {s['self_explained_median']:.3f}; "
          f"median psi* excitation {s['excitation_median']:.3f}")  # fmt: skip
    _print_confidence(s, args.top)
    print(f"summary      {Path(args.run).resolve() / CONFIDENCE_SUMMARY}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from circuitgnn.config import load_config
    from circuitgnn.ensemble_run import run_ensemble
    from circuitgnn.report.ensemble_html import build_ensemble_report

    config = load_config(args.config)
    _override_training(config.training, args)
    if args.max_iterations is not None:
        config.training.max_iterations = args.max_iterations
    try:
        s = run_ensemble(
            config, args.data, args.out, members=args.members, n_jobs=args.jobs, bootstrap=not args.no_bootstrap,
            combined=args.combined, centre=args.centre, level=args.level, empirical_null=args.empirical_null,
            progress=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: the members' checkpoints are in {Path(args.out).resolve()}; the same command continues them", file=sys.stderr)
        return 130
    for m in s["members"]:
        print(f"{m['run']:<12} seed {m['seed']}, {m['iterations']:,} iterations, overall scale {m['scale']:.4f}, {m['n_types']} types")
    print(f"types        mean adjusted Rand index between members {s['type_stability_ari']:.3f}")
    print(f"intervals    {s['level']:.0%}, {s['method']}; {s['sign_unanimous']:.1%} of the connections have one sign in every member")
    _print_confidence(s, args.top)
    print(f"report       {build_ensemble_report(args.out).resolve()}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from circuitgnn.data.dataset import open_dataset
    from circuitgnn.simulate.run import format_summary

    ds = open_dataset(args.dataset)
    if args.verify:
        ds.verify_checksums()
        print("checksums    ok")
    summary = ds.meta.get("summary")
    if summary:
        print(format_summary(summary))
    else:
        from circuitgnn.data.importer import describe_import

        print(describe_import(ds))
    return 0


def _cmd_config_help(args: argparse.Namespace) -> int:
    from circuitgnn.config import describe_fields

    for name, default, description in describe_fields():
        print(f"{name:45s} {default:28s} {description}" if default else f"\n[{name}] {description}")
    return 0


def _whole(minimum: int):
    """An argparse type: a whole number >= ``minimum``, refused with argparse's usage message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitgnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate an experiment's ground truth and write a dataset folder")
    p.add_argument("config", help="experiment YAML, e.g. configs/quick.yaml")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--seed", type=int, help="override simulation.seed")
    p.add_argument("--frames", type=int, help="override simulation.n_frames")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-figure", action="store_true", help="skip the diagnostic figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("import", help="turn recordings (npy, npz, csv, tsv, HDF5, NWB, suite2p) into a dataset folder")
    p.add_argument("recordings", nargs="+", help="one file or folder, or several sessions / trials of the same neurons (one segment each)")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--format", choices=["npy", "npz", "csv", "tsv", "hdf5", "nwb", "suite2p"], help="default: from the suffix")
    p.add_argument("--key", help="the array: npz name, HDF5 dataset path, or NWB series name")
    p.add_argument("--layout", choices=["time_first", "neurons_first"], help="axis order of the array (default: time first)")
    p.add_argument("--dt", type=float, help="time between frames")
    p.add_argument("--rate", type=float, help="frames per second (instead of --dt)")
    p.add_argument("--timestamps-key", help="the frame times in the file (npz name or HDF5 path)")
    p.add_argument("--time-column", help="csv/tsv: the column holding the frame times")
    p.add_argument("--inputs-key", help="known input covariates (time x inputs) in the file")
    p.add_argument("--neuropil", type=float, help="suite2p: F - neuropil * Fneu (default 0.7)")
    p.add_argument("--all-rois", action="store_true", help="suite2p: keep every ROI, not only those iscell marks")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of each segment's last frames kept out of training (default 0.1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--no-check", action="store_true", help="import activity that sits at a fixed point (refused by default)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("export", help="write a dataset's activity as a recording file (HDF5, NWB, npz or csv): no dx/dt, no truth")
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--out", required=True, help="recording file; the format follows the suffix: .h5, .nwb, .npz, .csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("deconvolve", help="the activity and dx/dt behind a calcium recording, as a new dataset folder")
    p.add_argument("dataset", help="dataset folder holding fluorescence (a calcium simulation, or `circuitgnn import`)")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--tau", type=float, help="the indicator's decay time constant, in the recording's time units")
    p.add_argument("--rise", type=float, help="its rise time constant (default 0: instantaneous)")
    p.add_argument("--transform", choices=["identity", "softplus", "relu"], help="what of the activity drives the calcium")
    p.add_argument("--saturation", type=float, help="calcium of half saturation K (Hill); default none")
    p.add_argument("--hill", type=float, help="Hill exponent n (default 1)")
    p.add_argument("--scale", type=float, help="fluorescence per unit calcium (default 1)")
    p.add_argument("--baseline", type=float, help="fluorescence at zero calcium (default 0)")
    p.add_argument("--smoothness", type=float, help="the spline's penalty weight (default: chosen by cross-validation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.set_defaults(func=_cmd_deconvolve)

    p = sub.add_parser("scan-tau", help="choose an unknown indicator time constant by the held-out fluorescence forecast")
    p.add_argument("dataset", help="dataset folder holding fluorescence, with held-out frames")
    p.add_argument("config", help="experiment YAML (its model and training sections are used for each fit)")
    p.add_argument("--taus", type=float, nargs="+", required=True, help="candidate decay time constants")
    p.add_argument("--minutes", type=float, default=3.0, help="training minutes per candidate (default 3)")
    p.add_argument("--horizon", type=int, default=20, help="frames forecast from each held-out start (default 20)")
    p.add_argument("--out", help="write the scores to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_scan_tau)

    p = sub.add_parser("train", help="train the GNN on a dataset and write a run folder")
    p.add_argument("config", help="experiment YAML (its model and training sections are used)")
    p.add_argument("--data", required=True, help="dataset folder (from `circuitgnn simulate` or your own)")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--device", help="override training.device")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time, with a checkpoint")
    p.add_argument("--max-iterations", type=_whole(0), help="stop after this many iterations in all, with a checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="compute a trained run's metrics (metrics.json)")
    p.add_argument("run", help="run folder")
    p.add_argument("--rollout-steps", type=int, default=800, help="length of the forecast")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="write a run's self-contained HTML report")
    p.add_argument("run", help="run folder")
    p.add_argument("--recompute", action="store_true", help="re-evaluate the metrics first")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("symbolic", help="closed-form formulas for a run's learned functions (symbolic.json)")
    p.add_argument("run", help="run folder")
    p.add_argument("--backend", default="grammar", choices=["grammar", "pysr"], help="grammar (offline, default) or pysr")
    p.set_defaults(func=_cmd_symbolic)

    p = sub.add_parser("run", help="the whole method: simulate, train, evaluate, report")
    p.add_argument(
        "config",
        nargs="?",
        default=str(Path(__file__).resolve().parent / "configs" / "quick.yaml"),
        help="experiment YAML (default: the packaged configs/quick.yaml)",
    )
    p.add_argument("--out", help="output folder (default: runs/NAME); holds data/ and run/")
    p.add_argument("--overwrite", action="store_true", help="start over instead of reusing or resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("reproduce", help="re-run the paper's experiments (resumable) and write the scoreboard")
    p.add_argument("experiments", nargs="*", help="experiment ids (default: all; see --list)")
    p.add_argument("--work", default=DEFAULT_WORK, help="folder for datasets and runs (one subfolder per experiment)")
    p.add_argument(
        "--results", help="folder for scoreboard.md, scoreboard.json and the series figures (default: results; needed with another --work)"
    )
    p.add_argument("--minutes", type=float, help="training budget per experiment, instead of the manifest's")
    p.add_argument(
        "--manifest", help="the experiments, their CPU sizing and the paper's values (default: the packaged configs/reproduce.yaml)"
    )
    p.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: rebuild the scoreboard from the work folder (with experiment ids: a scoreboard of those experiments alone)",
    )
    p.add_argument("--readme", help="also replace the generated results table in this README")
    p.add_argument("--list", action="store_true", help="list the experiments and their budgets")
    p.add_argument("--restart", action="store_true", help="delete the chosen experiments' folders and start them again")
    p.add_argument("--full-size", action="store_true", help="ignore the manifest's CPU sizing (the default on a GPU)")
    p.add_argument("--device", help="override training.device (auto picks CUDA when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "baselines", help="the GNN beside correlation, partial correlation, VAR, the known-function regression, GRU and transformer"
    )
    p.add_argument("datasets", nargs="+", help="dataset folders (simulated ones are scored against their truth)")
    p.add_argument("--out", required=True, help="output folder: one subfolder per dataset, and baselines.md")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget of each trained method (GNN, GRU, transformer)")
    p.add_argument(
        "--methods",
        help="comma-separated subset of: "
        + "gnn, known_functions, learned_functions, ridge_var, correlation, partial_correlation, gru, gru_10x, transformer, transformer_10x",
    )
    p.add_argument("--config", help="the GNN's config (default: the dataset's own experiment config)")
    p.add_argument("--steps", type=int, default=800, help="forecast length in frames (scored at 400 and 800)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trained methods")
    p.add_argument("--tables", help="where to write the markdown tables (default: OUT/baselines.md)")
    p.add_argument("--readme", help="also replace the generated baselines summary in this README (it points to --tables)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out instead of continuing them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_baselines)

    p = sub.add_parser("confidence", help="per-connection intervals of a trained run, diagnostics, calibration on simulated data")
    p.add_argument("run")
    p.add_argument("--level", type=float, default=0.9, help="nominal coverage of the intervals")
    p.add_argument("--top", type=_whole(0), default=20, help="how many of the most confident connections to print")
    p.add_argument(
        "--empirical-null",
        action="store_true",
        help="widen the intervals by the spread of the bulk of |W|/sd (sparse networks: most connections absent)",
    )
    p.add_argument(
        "--own-degree",
        type=_own_degree,
        default=3,
        help="solve each receiver's row with its own terms, psi*(x_i) and a polynomial of this degree ('none': phi* as learned)",
    )
    p.set_defaults(func=_cmd_confidence)

    p = sub.add_parser("ensemble", help="K fits of a dataset (seeds, bootstrap resamples), what they agree on, and its report")
    p.add_argument("config", help="experiment YAML (its model and training sections are used)")
    p.add_argument("--data", required=True, help="dataset folder (from `circuitgnn simulate` or `circuitgnn import`)")
    p.add_argument("--out", required=True, help="ensemble folder: member_k run folders, confidence.npz/json, report.html")
    p.add_argument("--members", type=_whole(2), default=4, help="how many fits")
    p.add_argument("--jobs", type=int, default=1, help="how many members train at once (-1: one per GPU, else one per core)")
    p.add_argument("--no-bootstrap", action="store_true", help="every member trains on all frames (only the seed differs)")
    p.add_argument("--combined", action="store_true", help="intervals of the members' mean, with the data's share counted once")
    p.add_argument(
        "--centre",
        choices=["least_squares", "fit"],
        default="least_squares",
        help="with --combined: around the members' least-squares W (each receiver with its own terms) or their trained W",
    )
    p.add_argument("--level", type=float, default=0.9, help="nominal coverage of the intervals")
    p.add_argument("--empirical-null", action="store_true", help="widen the intervals by the bulk's width (sparse networks)")
    p.add_argument("--top", type=_whole(0), default=20, help="how many of the most confident connections to print")
    p.add_argument("--device", help="override training.device")
    p.add_argument("--max-minutes", type=float, help="each member's wall-time budget")
    p.add_argument("--max-iterations", type=_whole(1), help="each member's iteration budget (a larger one continues an ensemble)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("info", help="print the summary of a dataset folder")
    p.add_argument("dataset")
    p.add_argument("--verify", action="store_true", help="recompute the arrays' checksums")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("config-help", help="list every config field with its default and description")
    p.set_defaults(func=_cmd_config_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CircuitGNNError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:  # a command-line option assigned to a config field out of its range
        print(f"error: {format_validation_error(err, 'the command line')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
