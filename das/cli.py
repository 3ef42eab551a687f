"""Command line: ``python -m das train|table1|summary|bench|project ...``.

Every error a user can cause (unknown dataset or method, a ratio outside (0, 1], missing data without
``--download``, ...) ends with one line on stderr and exit status 2, never a traceback.

Subcommands live in :data:`COMMANDS` (name -> how to add its arguments, what runs it); a new one
is one more entry there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from das.augment import AUGMENTATIONS
from das.config import (
    CLASS_WEIGHTS,
    COMPILE_MODES,
    LR_SCHEDULES,
    SELECT_METRICS,
    THRESHOLDS,
    TrainConfig,
    resolve_device,
)
from das.data import DATASETS, CorruptDatasetError, DatasetNotFoundError
from das.experiments import SWEEPS
from das.profiles import PROFILES, get_profile
from das.results import format_summary, write_summary
from das.samplers import SAMPLERS
from das.sweep import (
    EXECUTORS,
    Run,
    as_executed,
    check_writable,
    profile_configs,
    profile_runs,
    run_sweep,
    stored_record,
)
from das.train import build_model, load_splits

# Errors that mean "the data are not there or not readable": reported in one line, status 2.
DATA_ERRORS = (DatasetNotFoundError, CorruptDatasetError)


class UsageError(Exception):
    """A bad argument found after parsing (e.g. by TrainConfig validation): one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (``das train: error: ...``), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ratio must be a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"ratio must be in (0, 1], got {text}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _float_at_least(minimum: float, strict: bool) -> Callable[[str], float]:
    """A parser of finite numbers above ``minimum`` (``strict``) or at least ``minimum``."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value

    return parse


_positive_float = _float_at_least(0.0, strict=True)
_non_negative_float = _float_at_least(0.0, strict=False)


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is read as JSON when it parses (``4``, ``true``, ``0.5``), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _add_cost_options(group: argparse._ArgumentGroup) -> None:
    """The settings that decide how long a run takes (``train``, ``table1`` and ``project``)."""
    group.add_argument("--epochs", type=_int_at_least(1), help="maximum number of epochs")
    group.add_argument("--batch-size", type=_int_at_least(1))
    group.add_argument("--size", type=_int_at_least(1), help="image size (MedMNIST: 28 or 64)")
    group.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    group.add_argument("--num-threads", type=_int_at_least(1), help="torch CPU threads for the run")
    group.add_argument("--compile", action="store_true", default=None, help="torch.compile the training step")
    group.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="torch.compile mode (default: default; reduce-overhead captures CUDA graphs on a GPU)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Training settings shared by ``train`` and ``table1``; unset ones keep the profile's value."""
    group = parser.add_argument_group("training settings (default: the profile's, else TrainConfig's)")
    _add_cost_options(group)
    group.add_argument("--patience", type=_int_at_least(1), help="early-stopping patience (epochs)")
    group.add_argument("--lr", type=_positive_float, help="Adam learning rate (default 1e-4)")
    group.add_argument(
        "--sampler-lr", type=_positive_float, help="learning rate of sampler parameters (default 10x lr)"
    )
    group.add_argument(
        "--sampler-warmup",
        type=_int_at_least(0),
        help="epochs with the sampler frozen at the start (profiles: 1; default 0)",
    )
    group.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="learning-rate schedule (default constant)")
    group.add_argument("--weight-decay", type=_non_negative_float, help="AdamW decoupled weight decay (default 0)")
    group.add_argument("--augment", choices=tuple(AUGMENTATIONS), help="training augmentation (default none)")
    group.add_argument("--class-weights", choices=CLASS_WEIGHTS, help="class weighting of the loss (default none)")
    group.add_argument(
        "--select-metric", choices=SELECT_METRICS, help="validation metric that picks the best epoch (default val_loss)"
    )
    group.add_argument(
        "--threshold", choices=THRESHOLDS, help="decision rule: argmax (default) or the validation-chosen threshold"
    )
    group.add_argument("--max-train-samples", type=_int_at_least(1), help="cap the training split")
    group.add_argument("--max-eval-samples", type=_int_at_least(1), help="cap the val and test splits")
    group.add_argument("--data-dir", help="folder holding the MedMNIST npz files (default $DAS_DATA_DIR)")
    group.add_argument("--download", action="store_true", default=None, help="download missing MedMNIST files")
    group.add_argument("--quiet", action="store_true", default=None, help="no progress bars or log lines")
    parser.add_argument("--results-dir", default="results", help="root of the results store (default results/)")
    parser.add_argument("--force", action="store_true", help="rerun even if the run's JSON exists")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "epochs",
        "patience",
        "batch_size",
        "lr",
        "sampler_lr",
        "sampler_warmup",
        "lr_schedule",
        "weight_decay",
        "augment",
        "class_weights",
        "select_metric",
        "threshold",
        "size",
        "max_train_samples",
        "max_eval_samples",
        "device",
        "num_threads",
        "compile",
        "compile_mode",
        "data_dir",
        "download",
        "quiet",
    )
    return {name: getattr(args, name) for name in names}


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        required=True,
        choices=DATASETS,
        metavar="DATASET",
        help=f"one of {', '.join(DATASETS)} ('synthetic' is the synthetic benchmark)",
    )
    parser.add_argument(
        "--method", required=True, choices=tuple(SAMPLERS), metavar="METHOD", help=f"one of {', '.join(SAMPLERS)}"
    )
    parser.add_argument("--ratio", type=_ratio, help="fraction of frames kept, in (0, 1] (default 0.5)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0)
    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        metavar="PROFILE",
        help="start from this profile's settings and store the run in its results "
        "(default: TrainConfig defaults, stored under profile 'custom')",
    )
    parser.add_argument(
        "--sampler-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sampler option, repeatable (e.g. heads=2, replacement=true)",
    )
    parser.add_argument(
        "--dataset-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. num_informative=2 for synthetic)",
    )
    _add_run_options(parser)


def _run_train(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in _overrides(args).items() if value is not None}
    if args.ratio is not None:
        overrides["ratio"] = args.ratio
    if args.sampler_option:
        overrides["sampler_options"] = dict(args.sampler_option)
    if args.dataset_option:
        overrides["dataset_options"] = dict(args.dataset_option)
    try:
        if args.profile is not None:
            config = get_profile(args.profile).config(args.dataset, args.method, args.seed, **overrides)
        else:
            config = TrainConfig(dataset=args.dataset, method=args.method, seed=args.seed, **overrides)
        resolve_device(config.device)  # a CUDA device asked for where there is none: one line
        run = Run(args.profile or "custom", config)
        check_writable(args.results_dir)
        if args.force or stored_record(run, args.results_dir) is None:
            # Build the model once now so that bad sampler options fail here, as a usage error.
            splits = load_splits(config)
            build_model(config, splits.train.num_frames, splits.train.num_classes, splits.train.in_channels)
    except ValueError as error:
        raise UsageError(str(error)) from None
    [outcome] = run_sweep([run], args.results_dir, force=args.force, progress=not config.quiet, raise_on_failure=False)
    if outcome.error is not None:
        print(f"FAILED {run.label}: {outcome.error}", file=sys.stderr)
        return 1
    record = outcome.record
    metrics = ", ".join(
        f"{name} {value:.4f}" if value is not None else f"{name} n/a" for name, value in record["metrics"].items()
    )
    how = "trained" if outcome.trained else "read back (stored with these settings; --force retrains)"
    print(
        f"{config.dataset}/{config.method} seed {config.seed}: {metrics} "
        f"({record['epochs_run']} epochs, best {record['best_epoch']}; {how}) -> {outcome.path}"
    )
    return 0


def _add_sweep_selection(parser: argparse.ArgumentParser, default_profile: str) -> None:
    """A profile and, optionally, a subset of its datasets, methods and seeds (``table1``, ``project``)."""
    parser.add_argument(
        "--profile",
        default=default_profile,
        choices=tuple(PROFILES),
        metavar="PROFILE",
        help=f"one of {', '.join(PROFILES)} (default {default_profile})",
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, metavar="DATASET", help="default: the profile's")
    parser.add_argument(
        "--methods", nargs="+", choices=tuple(SAMPLERS), metavar="METHOD", help="default: the profile's"
    )
    parser.add_argument("--seeds", nargs="+", type=_int_at_least(0), metavar="SEED", help="default: the profile's")


def _add_table1(parser: argparse.ArgumentParser) -> None:
    _add_sweep_selection(parser, "quick")
    _add_run_options(parser)
    _add_executor_options(parser)


def _run_table1(args: argparse.Namespace) -> int:
    try:  # validate every run's settings before training anything
        runs = profile_runs(args.profile, args.datasets, args.methods, args.seeds, **_overrides(args))
        for run in runs:
            resolve_device(run.config.device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    status = _run_runs(runs, args)
    print(f"`python -m das summary --profile {args.profile}` tabulates them")
    return status


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Where a sweep's runs train (``table1``, ``sweep``)."""
    group = parser.add_argument_group("executor (default: one run after the other in this process)")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local (in process, sequential) or ray (parallel; a local Ray cluster or --address)",
    )
    group.add_argument("--address", help="Ray cluster to join (default: start a local one sized to this machine)")
    group.add_argument("--workers", type=_int_at_least(1), help="runs at a time on Ray (default: as many as fit)")
    group.add_argument(
        "--cpus-per-run", type=_int_at_least(1), default=1, help="CPU threads per run on Ray (default 1)"
    )
    group.add_argument(
        "--gpus-per-run",
        type=_non_negative_float,
        default=0.0,
        help="GPUs per run on Ray, fractional to pack runs onto one GPU (default 0)",
    )
    group.add_argument(
        "--checkpoint-dir",
        help="where runs checkpoint (default: the results store); on a cluster, a path every worker reaches",
    )


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.executor == "local" and (args.workers not in (None, 1) or args.address is not None):
        raise UsageError("--workers and --address need --executor ray")
    return {
        "executor": args.executor,
        "address": args.address,
        "workers": args.workers,
        "cpus_per_run": args.cpus_per_run,
        "gpus_per_run": args.gpus_per_run,
        "checkpoint_dir": args.checkpoint_dir,
    }


def _run_runs(runs: list[Run], args: argparse.Namespace) -> int:
    """Run a sweep from the command line: progress on stderr, failures named, exit 1 if any failed."""
    outcomes = run_sweep(
        runs,
        args.results_dir,
        force=args.force,
        progress=not args.quiet,
        raise_on_failure=False,
        **_executor_options(args),
    )
    failed = [o for o in outcomes if o.error is not None]
    trained = sum(o.trained for o in outcomes)
    print(
        f"{len(outcomes)} runs: {trained} trained now, {len(outcomes) - trained - len(failed)} read back, "
        f"{len(failed)} failed (store: {args.results_dir})"
    )
    for outcome in failed:
        print(f"FAILED {outcome.run.label}: {outcome.error}\n  config: {outcome.run.config.to_dict()}", file=sys.stderr)
    return 1 if failed else 0


def _add_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        choices=tuple(SWEEPS),
        metavar="NAME",
        help="; ".join(f"{name}: {text}" for name, (text, _) in SWEEPS.items()),
    )
    parser.add_argument(
        "--profile",
        default="real",
        choices=tuple(PROFILES),
        metavar="PROFILE",
        help=f"one of {', '.join(PROFILES)} (default real)",
    )
    parser.add_argument("--seeds", nargs="+", type=_int_at_least(0), metavar="SEED", help="default: the sweep's")
    parser.add_argument("--list", action="store_true", help="print the runs and whether each is stored, train nothing")
    _add_run_options(parser)
    _add_executor_options(parser)


def _run_sweep_command(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in _overrides(args).items() if value is not None}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    try:
        runs = SWEEPS[args.name][1](args.profile, **overrides)
        for run in runs:
            resolve_device(run.config.device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.list:  # as the executor would run them, so that "stored" means what the sweep would skip
        for run in as_executed(runs, args.executor, args.cpus_per_run, args.gpus_per_run):
            state = "stored" if stored_record(run, args.results_dir) is not None else "to train"
            print(f"{run.label}: {state} ({run.path(args.results_dir)})")
        return 0
    return _run_runs(runs, args)


def _add_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="profile folder to summarise (default quick)")
    parser.add_argument("--results-dir", default="results", help="root of the results store (default results/)")


def _run_summary(args: argparse.Namespace) -> int:
    table, csv_path, md_path = write_summary(args.results_dir, args.profile)
    if table.empty:
        csv_path.unlink()
        md_path.unlink()
        raise UsageError(
            f"no finished runs under {args.results_dir}/{args.profile}; "
            f"run `python -m das table1 --profile {args.profile}` first"
        )
    print(format_summary(table).to_markdown(index=False))
    print(f"\nwritten: {csv_path}, {md_path}")
    return 0


def _add_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="28^3 at batch 16, fewer repeats (about a minute on 2 CPU cores)"
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--sizes", nargs="+", type=_int_at_least(1), metavar="SIZE", help="frame sizes in pixels (default 28 64)"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=_int_at_least(1), metavar="B", help="inference batch sizes (default 16)"
    )
    parser.add_argument(
        "--frames", type=_int_at_least(1), help="frames per input T (default: T = size, cubes; e.g. 32 for video)"
    )
    parser.add_argument("--num-threads", type=_int_at_least(1), help="torch CPU threads (default: torch's)")
    parser.add_argument("--threads", type=_int_at_least(1), dest="num_threads", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help="folder holding the MedMNIST npz files (default $DAS_DATA_DIR)")
    parser.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="DAS's compiled evaluation: on, off (--no-fused), or by default wherever compiling works",
    )
    parser.add_argument(
        "--fused-features",
        action="store_true",
        help="DAS's fixed features compiled in training too (needs a C++ compiler on CPU)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="also time every model compiled with CUDA graphs (torch.compile mode reduce-overhead; CUDA only)",
    )
    parser.add_argument(
        "--compiled-training", action="store_true", help="also time the trainer's step under torch.compile"
    )
    parser.add_argument(
        "--out", default="results/bench", help="folder for bench.json and bench.md (default results/bench)"
    )


def _run_bench(args: argparse.Namespace) -> int:
    from das.bench import BenchConfig, main_summary, run_bench

    chosen = {"sizes": args.sizes, "batch_sizes": args.batch_sizes, "num_frames": args.frames}
    try:
        config = (BenchConfig.quick if args.quick else BenchConfig)(
            **{name: value for name, value in chosen.items() if value is not None},
            device=args.device,
            num_threads=args.num_threads,
            data_dir=args.data_dir,
            fused=args.fused,
            fused_features=args.fused_features,
            memory=not args.no_memory,
            cuda_graphs=args.cuda_graphs,
            compiled_training=args.compiled_training,
        )
        report = run_bench(config, args.out)
    except ValueError as error:  # e.g. an unknown or unavailable device, CUDA graphs on a CPU
        raise UsageError(str(error)) from None
    print(main_summary(report))
    print(f"\nwritten: {args.out}/bench.json, {args.out}/bench.md")
    return 0


def _add_project(parser: argparse.ArgumentParser) -> None:
    _add_sweep_selection(parser, "paper")
    parser.add_argument("--steps", type=_int_at_least(1), default=8, help="training steps timed per method (default 8)")
    _add_cost_options(parser.add_argument_group("settings of the projected runs (default: the profile's)"))
    parser.add_argument(
        "--out", default="results/bench", help="folder for projection-PROFILE.json (default results/bench)"
    )
    _add_executor_options(parser)


def _run_project(args: argparse.Namespace) -> int:
    from das.projection import format_projection, project_runs

    overrides = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "size", "device", "num_threads", "compile", "compile_mode")
    }
    try:  # validate every run's settings (an unavailable device, say) before timing anything
        configs = profile_configs(args.profile, args.datasets, args.methods, args.seeds, **overrides)
        for config in configs:
            resolve_device(config.device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = _executor_options(args)
    options.pop("checkpoint_dir")
    report = project_runs(configs, args.steps, profile=args.profile, out_dir=args.out, **options)
    print(format_projection(report))
    print(f"\nwritten: {args.out}/projection-{args.profile}.json")
    return 0


# name -> (help, add arguments, run). Add new subcommands here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("train and test one run, store its JSON", _add_train, _run_train),
    "table1": ("run (or resume) the Table 1 sweep of a profile", _add_table1, _run_table1),
    "sweep": ("run (or resume) a named sweep: a profile's Table 1, the ablations, ...", _add_sweep, _run_sweep_command),
    "summary": ("tabulate a profile's results: mean +/- std over seeds, CSV and Markdown", _add_summary, _run_summary),
    "bench": (
        "measure inference time, FLOPs and training throughput of every method against the full model",
        _add_bench,
        _run_bench,
    ),
    "project": (
        "time a few training steps per method here and project how long a profile's runs take",
        _add_project,
        _run_project,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="das", description="DAS companion: train, sweep and summarise subsampling experiments.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"das {args.command}: error: {error}", file=sys.stderr)
        return 2
    except DATA_ERRORS as error:
        print(f"das {args.command}: error: {error}", file=sys.stderr)
        return 2
