"""The ``nnboundary`` command line: a thin layer over the library.

Each command parses its arguments, calls one library function and prints the result with the settings
that produced it (they are saved beside every result, in ``config.json`` / ``settings.json``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nnboundary import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Where does a deep network put its decision boundary? Exact max-margin SVMs on a "
                       "network's last hidden layer, compared with its last layer.")


def _out() -> Console:
    """stdout console, created per call so that it sees the current terminal width (and test runners).

    Output that is not a terminal (a log file, a pipe) gets 160 columns instead of rich's 80, so tables
    stay readable in logs.
    """
    console = Console(soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(soft_wrap=False, width=160)
    return console


def _err() -> Console:
    return Console(stderr=True)


_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError)


class ProfileName(str, Enum):
    smoke = "smoke"
    quick = "quick"
    paper = "paper"
    converge = "converge"


class DeviceName(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nnboundary {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """nnboundary command line."""


#: Exit code of a user error (bad flag, missing file, refused run directory): one line on stderr, no traceback.
USER_ERROR_EXIT = 2


def _fail(err: BaseException) -> typer.Exit:
    """Print ``err`` as one line on stderr; the caller raises the returned ``typer.Exit(2)``. An ``OSError`` from
    the system (disk full, permission denied) reads as its reason, its file and what to do."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror} ({err.filename or ''}); free space or choose another --out."
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    _err().print(f"[bold red]Error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=USER_ERROR_EXIT)


@contextlib.contextmanager
def _user_errors() -> Any:
    """Turn a user error raised inside the block into one line on stderr and exit code 2."""
    try:
        yield
    except typer.Exit:  # a deliberate exit code (click's Exit is a RuntimeError)
        raise
    except _USER_ERRORS as err:
        raise _fail(err) from None


def _set_threads(threads: Optional[int]) -> None:
    if threads:  # None or 0: torch's default
        import torch

        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- experiments
def _settings_line(cfg: Any, device: str, out: Path) -> str:
    runs = f"{len(cfg.variants)} variants: {', '.join(v.label for v in cfg.variants)} | " if cfg.is_study else ""
    batch = "full batch" if cfg.batch_size is None else f"batch {cfg.batch_size}"
    return (f"{cfg.name} [{cfg.profile} profile] {runs}data {cfg.data} n={cfg.n_samples} {cfg.data_kwargs or ''} | "
            f"{cfg.model} {cfg.model_kwargs} | {cfg.loss} | {cfg.optimizer} lr={cfg.lr:g} | {cfg.steps} steps, "
            f"{batch} | seed {cfg.seed} | {device} -> {out}")


def _results_table(result: Any, title: str) -> Table:
    headers, rows = result.table(compact=True)
    table = Table(title=title, title_justify="left", header_style="bold")
    for h in headers:
        table.add_column(h, justify="left" if h in ("variant", "status") else "right", overflow="fold")
    for row in rows:
        style = {"FAILED": "red", "not separable": "yellow", "not fitted": "yellow"}.get(row[-1])
        table.add_row(*row, style=style)
    return table


def _print_run(result: Any) -> None:
    _out().print(_results_table(result, f"{result.name} ({result.profile} profile, seed "
                                         f"{result.run_info.get('seed')}, {result.wall_time_s:.1f} s)"))
    _out().print(f"Settings: {result.run_dir / 'config.json'}", highlight=False, markup=False)
    _out().print(f"Report:   {result.report}", highlight=False, markup=False)


def _overrides(steps: Optional[int], n_samples: Optional[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if steps is not None:
        out["steps"] = steps
    if n_samples is not None:
        out["n_samples"] = n_samples
    return out


@app.command("list")
def list_(profile: ProfileName = typer.Option(ProfileName.quick, help="Profile whose size is shown.")) -> None:
    """List the registered experiments, one line each, with their kind, data and size."""
    from nnboundary.data import REAL_DATASETS
    from nnboundary.experiments import describe_experiment, get_experiment, list_experiments
    from nnboundary.experiments.registry import experiment_kind, get_kind

    names = list_experiments(kind=None)
    width = max(map(len, names))
    for name in names:
        kind = experiment_kind(name)
        if kind != "simulated":
            flags = " ".join("--" + f.replace("_", "-") for f in sorted(get_kind(kind).flags))
            typer.echo(f"{name:<{width}}  {describe_experiment(name)}  [{kind} kind; takes {flags}]")
            continue
        cfg = get_experiment(name, profile.value)
        runs = len(cfg.variants) or 1
        data = "real data via --data-dir" if cfg.data in REAL_DATASETS else "simulated data"
        typer.echo(f"{name:<{width}}  {describe_experiment(name)}  "
                   f"[simulated kind; {data}] [{profile.value}: {runs} run{'s' if runs > 1 else ''} x {cfg.steps} steps]")


def _print_kind(result: Any) -> None:
    seeds = ", ".join(map(str, result.seeds))
    table = Table(title=f"{result.name} ({result.profile} profile, {result.kind}, seed {seeds}, "
                        f"{result.wall_time_s:.1f} s)", title_justify="left", header_style="bold")
    headers, rows = result.table()
    for h in headers:
        table.add_column(h, justify="left" if h == "metric" else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    _out().print(table)
    _out().print(f"Settings: {result.run_dir / 'config.json'}", highlight=False, markup=False)
    _out().print(f"Report:   {result.report}", highlight=False, markup=False)


@app.command()
def reproduce(
    name: Optional[str] = typer.Argument(None, help="Experiment name (see `nnboundary list`)."),
    all_: bool = typer.Option(False, "--all", help="Run every simulated-data experiment; --out is then a folder "
                                                   "with one run directory per experiment (default runs/<profile>)."),
    profile: ProfileName = typer.Option(ProfileName.quick, help="quick: about a minute on 2 CPU cores; paper: the "
                                                                "original's settings; smoke: seconds (tests); "
                                                                "converge: train to CE <= 1e-250 (float64) or a step budget."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/<name>-<profile>)."),
    seed: Optional[int] = typer.Option(None, help="Seed of data, split, initialisation and batches "
                                                  "(default: the experiment's own)."),
    device: DeviceName = typer.Option(DeviceName.cpu, help="Where to train."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with real data files (simulated data ignore it)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory (only one that nnboundary "
                                                      "wrote: it carries a .nnboundary-run.json marker)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    steps: Optional[int] = typer.Option(None, help="Override the number of training steps."),
    n_samples: Optional[int] = typer.Option(None, help="Override the number of points (images: training images)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads; default 1 for the smoke and quick profiles "
                                                     "(their tensors are tiny: measured 2.6x faster than 2 threads), "
                                                     "torch's choice for paper; 0 = torch's choice."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bar."),
) -> None:
    """Run a registered experiment: writes config.json, summary.json, report.md, figures/ (and metrics.jsonl where
    the kind records training) into one run directory.

    A rerun into an existing directory needs --force; an interrupted run continues with --resume. A flag that an
    experiment kind cannot honour is refused by name.
    """
    if all_ == (name is not None):
        raise _fail(ValueError("Give an experiment NAME or --all (not both). Run `nnboundary list` to see the names."))
    _set_threads(1 if threads is None and profile is not ProfileName.paper else threads)
    with _user_errors():
        if all_:
            _reproduce_all(profile.value, out or Path("runs") / profile.value, seed=seed, device=device.value,
                           data_dir=data_dir, force=force, resume=resume, progress=progress,
                           overrides=_overrides(steps, n_samples))
            return
        from nnboundary.experiments import default_run_dir, get_experiment, run_experiment
        from nnboundary.experiments.registry import KindConfig

        cfg = get_experiment(name, profile.value, **_overrides(steps, n_samples),
                             **({} if seed is None else {"seed": seed}))
        target = out or default_run_dir(cfg.name, cfg.profile)
        if isinstance(cfg, KindConfig):
            seeds = "the profile's" if cfg.seed is None else cfg.seed
            _out().print(f"[bold]Running[/] {escape(f'{cfg.name} [{cfg.profile} profile, {cfg.kind} kind]')} seed "
                         f"{seeds} | {device.value} -> {escape(str(target))}", highlight=False)
        else:
            cfg = cfg.validate()
            _out().print(f"[bold]Running[/] {escape(_settings_line(cfg, device.value, target))}", highlight=False)
        result = run_experiment(cfg, out_dir=target, device=device.value, force=force, resume=resume,
                                data_dir=data_dir, progress=progress)
    if isinstance(cfg, KindConfig):
        _print_kind(result)
    else:
        _print_run(result)


def _reproduce_all(profile: str, root: Path, **kwargs: Any) -> None:
    import time

    from nnboundary.experiments import run_all

    t0 = time.perf_counter()

    def announce(name: str, cfg: Any, target: Path) -> None:
        _out().print(f"[bold]Running[/] {escape(_settings_line(cfg, kwargs['device'], target))}", highlight=False)

    rows, failures = [], []
    results = run_all(profile, root, on_start=announce, **kwargs)
    for name, result in results:
        if isinstance(result, BaseException):
            _err().print(f"[bold red]{name} failed:[/] {escape(str(result))}", highlight=False)
            failures.append(name)
            rows.append([name, "FAILED", "—", escape(str(result)[:80])])
            continue
        _print_run(result)
        statuses = sorted({r[-1] for r in result.table(compact=True)[1]})
        rows.append([name, ", ".join(statuses), f"{result.wall_time_s:.1f}", str(result.report)])
    table = Table(title=f"All experiments ({profile} profile, {time.perf_counter() - t0:.0f} s in total)",
                  title_justify="left", header_style="bold")
    for h in ("experiment", "status", "wall time (s)", "report"):
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*row, style="red" if row[1] == "FAILED" else None)
    _out().print(table)
    done = [result for _, result in results if not isinstance(result, BaseException)]
    if done:
        from nnboundary.experiments.report import write_claims

        _out().print(f"Claims table: {write_claims(root, done, profile=profile)}")
    if failures:
        raise typer.Exit(code=1)


@app.command()
def demo(
    seed: int = typer.Option(0, help="Seed of data, split, initialisation."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/demo-<timestamp>)."),
    threads: Optional[int] = typer.Option(1, help="torch CPU threads. The demo's tensors are tiny: one thread is "
                                                  "faster than several (measured 37 s vs 98 s on a 2-core "
                                                  "machine); pass 0 for torch's default."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bar."),
) -> None:
    """The blobs experiment, quick profile (about a minute on 2 CPU cores): trains, compares the last layer with
    the max-margin SVM, prints the summary table and the report path."""
    from nnboundary.experiments import get_experiment, run_experiment

    _set_threads(threads)
    target = out or _fresh_dir(Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}")
    with _user_errors():
        cfg = get_experiment("blobs", "quick", seed=seed)
        _out().print(f"[bold]Demo:[/] {escape(_settings_line(cfg, 'cpu', target))}", highlight=False)
        result = run_experiment(cfg, out_dir=target, progress=progress)
    _print_run(result)


def _fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... if it exists (two demos in the same second)."""
    candidate, k = path, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".partial").exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


# --------------------------------------------------------------------------------------------- analysis
_ANALYSIS_KEYS = ("status", "closeness", "separable", "cosine", "angle_deg", "nn_margin", "svm_margin", "margin_ratio",
                  "bias_offset", "bias_offset_reg", "agreement_train", "agreement_test", "agreement_grid", "n_support",
                  "sv_overlap_precision", "sv_overlap_jaccard", "sv_overlap_jaccard_loss", "loss", "accuracy",
                  "test_loss", "test_accuracy", "weight_norm", "nc1", "nc2_equinorm", "nc2_equiangular",
                  "nc3_self_duality", "nc4_ncc_mismatch", "svm", "svm_C", "svm_bias", "svm_multiclass",
                  "svm_max_violation", "svm_duality_gap")

_MODEL_HELP = ("Model file: a state_dict (torch.save(model.state_dict())) with --factory (recommended: read with "
               "weights_only=True, no code runs), a TorchScript file, or - only with --allow-pickle - a whole pickled "
               "module (loading it RUNS CODE from the file).")
_FACTORY_HELP = ("Builds the architecture for a state_dict: 'pkg.module:fn', 'path/to/file.py:fn' (a function or "
                 "class) or 'timm:NAME' (timm installed; pretrained=False, nothing is downloaded).")
_FACTORY_KWARGS_HELP = "JSON object of the factory's arguments, e.g. '{\"num_classes\": 10}'."
_PICKLE_HELP = "Allow a whole pickled module (torch.save(model)): RUNS CODE stored in the file; trusted files only."


def _factory_kwargs(text: Optional[str]) -> dict[str, Any]:
    import json

    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--factory-kwargs must be a JSON object such as '{{\"num_classes\": 10}}' ({exc}).") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--factory-kwargs must be a JSON object such as '{\"num_classes\": 10}'.")
    return kwargs


def _load_model(model_file: Path, device: Optional[str], factory: Optional[str], factory_kwargs: Optional[str],
                allow_pickle: bool) -> Any:
    from nnboundary.device import resolve_device
    from nnboundary.io import PICKLE_WARNING, is_torchscript_file, load_model_file

    dev = resolve_device(device or "cpu")
    if allow_pickle and factory is None and model_file.is_file() and not is_torchscript_file(model_file):
        _err().print(escape(PICKLE_WARNING), style="bold yellow", highlight=False, soft_wrap=True)
    import logging

    io_log = logging.getLogger("nnboundary.io")
    level = io_log.level
    io_log.setLevel(logging.ERROR)  # the pickle warning was printed above; the library's log line would repeat it
    try:
        return load_model_file(model_file, factory=factory, factory_kwargs=_factory_kwargs(factory_kwargs),
                               allow_pickle=allow_pickle, map_location=dev)
    finally:
        io_log.setLevel(level)


def _describe_table(info: Any, title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in info.rows():
        table.add_row(k, v)
    return table


@app.command()
def analyze(
    model_file: Path = typer.Argument(..., help=_MODEL_HELP),
    data: Path = typer.Option(..., "--data", help=".npz or .pt with X, y (and optional X_test, y_test)."),
    factory: Optional[str] = typer.Option(None, help=_FACTORY_HELP),
    factory_kwargs: Optional[str] = typer.Option(None, help=_FACTORY_KWARGS_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=_PICKLE_HELP),
    head: Optional[str] = typer.Option(None, help="Dotted name of the last linear layer (default: the layer whose "
                                                  "output is the model's output)."),
    out: Optional[Path] = typer.Option(None, help="Write summary.json, details.csv, features.npz, settings.json, "
                                                  "report.md and figures/ here (checked before any work)."),
    device: Optional[str] = typer.Option(None, help="Device to run the model on: cpu (default), cuda, cuda:N."),
    batch_size: int = typer.Option(1024, help="Inputs per forward pass during feature extraction."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing analysis in --out (and an existing "
                                                      "--features-file)."),
    features_file: Optional[Path] = typer.Option(None, "--features-file", help="Stream the features into this .npy "
                                                 "file (memory-mapped) and analyse them from disk in chunks, for "
                                                 "features larger than memory. Under torchrun each rank writes "
                                                 "<stem>.rank<r>-of-<N>.npy."),
) -> None:
    """Compare a saved classifier's last layer with the max-margin SVM on its last hidden layer's features.

    Recommended: save torch.save(model.state_dict(), "model.pt") and pass --factory pkg.module:fn. A whole pickled
    model needs --allow-pickle, because loading it runs code stored in the file.

    Under `torchrun --nproc-per-node=N nnboundary analyze ...` each rank analyses its shard of the data (gloo on
    CPU, nccl with --device cuda); the numbers are those of one process, and only rank 0 prints and writes.
    """
    from nnboundary import distributed as dist
    from nnboundary.analysis import analyze as run_analysis
    from nnboundary.analysis import verdict
    from nnboundary.features import describe as describe_model
    from nnboundary.io import check_out_dir, load_data_file
    from nnboundary.svm import InsufficientMemoryError

    saved = report = None
    try:
        from nnboundary.device import resolve_device

        dist.init_from_env(backend="nccl" if resolve_device(device or "cpu").type == "cuda" else "gloo")
        main = dist.is_main()
        if out is not None:  # only rank 0 writes; its refusal stops every rank
            dist.run_on_main(lambda: check_out_dir(out, force=force, flag="--force"))
        model = dist.run_on_all(lambda: _load_model(model_file, device, factory, factory_kwargs, allow_pickle))
        arrays = dist.run_on_all(lambda: load_data_file(data))
        info = dist.run_on_all(lambda: describe_model(model, head, example=(arrays.X[:2], arrays.y[:2])))
        if main:
            _out().print(_describe_table(info, f"{model_file.name}: the head"))
        result = run_analysis(model, arrays.X, arrays.y, head=head, X_test=arrays.X_test, y_test=arrays.y_test,
                              batch_size=batch_size, device=device, progress=True, features_file=features_file,
                              overwrite=force)
        if out is not None and main:
            saved = result.save(out, overwrite=force)
            if not result.streamed:  # the report's feature plots read every feature into memory
                from nnboundary.plot.report import write_analysis_report

                report = write_analysis_report(result, out, title=f"{model_file.name} vs the max-margin SVM")
    except (*_USER_ERRORS, OSError, InsufficientMemoryError) as err:
        raise _fail(err) from None
    finally:
        if dist.is_distributed():
            import torch.distributed

            torch.distributed.destroy_process_group()
    if not main:
        return
    from nnboundary.experiments.report import format_value

    table = Table(title=f"{model_file.name} vs the max-margin SVM on its features", title_justify="left",
                  header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _ANALYSIS_KEYS:
        if key in result.summary:
            table.add_row(key, format_value(key, result.summary[key]))
    _out().print(table)
    _out().print(f"Verdict:  {verdict(result.summary)}", highlight=False, markup=False)
    svm = result.settings.get("svm", {})
    _out().print(f"Settings: model {model_file}, data {data} (N={result.summary['n_samples']}, "
                 f"D={result.summary['n_features']}, K={result.summary['n_classes']}), head "
                 f"{result.summary.get('head')!r}, SVM {svm.get('class', '?').rsplit('.', 1)[-1]}"
                 f"(C={svm.get('C')}, bias={svm.get('bias')!r}, multiclass={svm.get('multiclass')!r}), "
                 f"soft_C={result.settings.get('soft_C')}", highlight=False, markup=False)
    if result.settings.get("world_size", 1) > 1:
        _out().print(f"Ranks:    {result.settings['world_size']} (torch.distributed), each on its shard of the data",
                     highlight=False, markup=False)
    if saved is not None:
        _out().print(f"Saved:    {saved} (summary.json, details.csv, features.npz, settings.json)", highlight=False,
                     markup=False)
        _out().print(f"Report:   {report}" if report is not None else "Report:   not written: its figures need every "
                     "feature in memory (a streamed or several-rank run); run without --features-file in one "
                     "process for them", highlight=False, markup=False)
    else:
        _out().print("Pass --out DIR to save the numbers, the features, a report and its figures.", highlight=False)


@app.command()
def describe(
    model_file: Path = typer.Argument(..., help=_MODEL_HELP),
    head: Optional[str] = typer.Option(None, help="Dotted name of the last linear layer (default: discovered). "
                                                  "Refused if its output is not the model's output."),
    data: Optional[Path] = typer.Option(None, "--data", help="Optional data file: one batch checks that the head's "
                                                             "output is the model's output."),
    factory: Optional[str] = typer.Option(None, help=_FACTORY_HELP),
    factory_kwargs: Optional[str] = typer.Option(None, help=_FACTORY_KWARGS_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=_PICKLE_HELP),
) -> None:
    """Dry run: which module is the head, its shape, the feature dimension D and the number of classes K (a table)."""
    from nnboundary.features import describe as describe_model
    from nnboundary.io import load_data_file

    try:
        model = _load_model(model_file, None, factory, factory_kwargs, allow_pickle)
        example = None
        if data is not None:
            arrays = load_data_file(data)
            example = (arrays.X[:2], arrays.y[:2])
        info = describe_model(model, head, example=example)
    except (*_USER_ERRORS, OSError) as err:
        raise _fail(err) from None
    _out().print(_describe_table(info, f"{model_file.name}: the head nnboundary compares with the SVM"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
