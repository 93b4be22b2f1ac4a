"""The ``nas-engine`` command: look into a run file, also while its engine writes it.

::

    nas-engine show RUN [--top N] [--mode max|min]    status counts, failure reasons and
                                                      the best models
    nas-engine show RUN --reference R1,R2             the Pareto front and its hypervolume
    nas-engine show RUN --model ID                    one model: its error, traceback
                                                      and the output kept of its failures
    nas-engine export RUN --format csv|jsonl|parquet [-o FILE]  one row per model
    nas-engine plot RUN -o FILE.png [--mode max|min]  best-so-far against trials and time
    nas-engine events RUN [--follow]                  events as JSON lines
    nas-engine dashboard RUN [--host H] [--port P]    a live web page of the run
    nas-engine --version

"Best" follows the objective the run recorded (``Engine.set_objective``, which a
strategy calls with its ``mode``); ``--mode`` overrides its direction. A run with several
objectives (``Engine.set_objectives``) is shown by its Pareto front: ``show`` lists the
front, one column per objective; ``plot`` draws every trained model with the front
highlighted (one scatter per pair of objectives); ``--mode`` then ranks by the first
objective alone. Every command
opens the run read-only and takes no lock. Exit status: 0 done, 1 the command could not
run (matplotlib missing), 2 bad arguments or a bad run file, 130 interrupted. Help and
``--version`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine.cli._plot import PlotUnavailable, plot_run
from engine.cli._report import export_csv, export_jsonl, objectives_of, show, show_model
from engine.store._read import RunReader
from engine.store._schema import RunFileError

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        with RunReader(args.run) as reader:
            return int(args.command(reader, args))
    except RunFileError as exc:
        return _fail(str(exc), 2)
    except PlotUnavailable as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `nas-engine events RUN | head`
        sys.stderr.close()
        return 0


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"nas-engine: error: {message}\n")
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-engine", description="Inspect a nas-engine run.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    cmd = commands.add_parser("show", help="status counts, failure reasons, the best models")
    cmd.add_argument("--top", type=int, default=10, metavar="N", help="models to list (10)")
    cmd.add_argument("--model", type=int, metavar="ID",
                     help="show this model in full: error, traceback, kept output")
    cmd.add_argument("--reference", type=_point, metavar="R1,R2,...",
                     help="several objectives: print the front's hypervolume up to this "
                     "reference point (one value per objective, the worst corner)")
    _mode(cmd)
    cmd.set_defaults(command=_show)
    cmd = commands.add_parser("export", help="every model as CSV, JSON lines or Parquet")
    cmd.add_argument("--format", choices=("csv", "jsonl", "parquet"), required=True,
                     help="parquet needs pyarrow and -o")
    cmd.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
    cmd.set_defaults(command=_export)
    cmd = commands.add_parser("plot", help="best-so-far against trials and against time")
    cmd.add_argument("-o", "--output", type=Path, metavar="FILE.png", required=True)
    _mode(cmd)
    cmd.set_defaults(command=_plot)
    cmd = commands.add_parser("events", help="the run's events as JSON lines")
    cmd.add_argument("--follow", action="store_true",
                     help="wait for new events until the engine stops (or Ctrl-C)")
    cmd.add_argument("--interval", type=float, default=0.5, metavar="S",
                     help="seconds between polls with --follow (0.5)")
    cmd.set_defaults(command=_events)
    cmd = commands.add_parser("dashboard", help="serve a live web page of the run")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    cmd.add_argument("--port", type=int, default=8080, help="0 picks a free port (8080)")
    _mode(cmd)
    cmd.set_defaults(command=_dashboard)
    for sub in commands.choices.values():
        sub.add_argument("run", type=Path, metavar="RUN", help="the run file (.nasrun)")
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("nas-engine")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: not installed)"


def _mode(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--mode", choices=("max", "min"), default=None,
                     help="rank by a larger (max) or smaller (min) final metric (default: "
                     "the direction the run recorded, else max)")


def _show(reader: RunReader, args: argparse.Namespace) -> int:
    if args.model is not None:
        if not show_model(reader, sys.stdout, args.model):
            return _fail(f"the run {reader.path} has no model {args.model}", 2)
        return 0
    try:
        show(reader, sys.stdout, top=args.top, mode=args.mode, reference=args.reference)
    except ValueError as exc:  # a reference point of the wrong length
        return _fail(str(exc), 2)
    return 0


def _point(text: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a reference point is numbers separated by commas, got {text!r}") from None


def _export(reader: RunReader, args: argparse.Namespace) -> int:
    if args.format == "parquet":
        return _export_parquet(reader, args)
    write = export_csv if args.format == "csv" else export_jsonl
    if args.output is None:
        write(reader, sys.stdout)
        return 0
    try:
        with args.output.open("w", newline="", encoding="utf-8") as out:
            write(reader, out)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror}", 2)
    return 0


def _export_parquet(reader: RunReader, args: argparse.Namespace) -> int:
    from engine._results_frames import export_parquet
    from engine.results import open_run

    if args.output is None:
        return _fail("--format parquet writes a file: give it with -o FILE", 2)
    try:
        with open_run(reader.path) as results:
            export_parquet(results, args.output)
    except ImportError as exc:
        return _fail(str(exc), 1)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}", 2)
    return 0


def _plot(reader: RunReader, args: argparse.Namespace) -> int:
    try:
        shown = plot_run(reader, args.output, mode=args.mode)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror}", 2)
    # The front is of trained models; best-so-far ranks paused ones too, at their step.
    what = ("Pareto front of {} trained" if len(objectives_of(reader)) > 1
            and args.mode is None else "best-so-far of {} ranked")
    sys.stdout.write(f"{args.output}: {what.format(shown)} models\n")
    return 0


def _events(reader: RunReader, args: argparse.Namespace) -> int:
    seq, kind = _print_events(reader, 0, sys.stdout)
    while args.follow and kind != "engine_stopped":
        time.sleep(args.interval)
        writing = reader.writer_pid() is not None  # before the read: it then sees all
        seq, new_kind = _print_events(reader, seq, sys.stdout)
        kind = new_kind or kind
        if new_kind is None and not writing:
            sys.stderr.write(f"nas-engine: no process is writing {reader.path}: stopped "
                             "following\n")
            return 0
    return 0


def _print_events(reader: RunReader, after: int, out: TextIO) -> tuple[int, str | None]:
    """Print the events after ``after``; returns the last seq and kind printed."""
    kind: str | None = None
    while rows := reader.event_rows(after):
        out.writelines(f"{data}\n" for _, _, data in rows)
        after, kind = rows[-1][0], rows[-1][1]
    out.flush()
    return after, kind


def _dashboard(reader: RunReader, args: argparse.Namespace) -> int:
    from engine.web import DashboardUnavailable, run_dashboard

    try:
        return run_dashboard(reader.path, host=args.host, port=args.port, mode=args.mode,
                             out=sys.stdout)
    except DashboardUnavailable as exc:
        return _fail(str(exc), 1)

