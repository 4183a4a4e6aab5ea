"""The ``logitkit`` command line (stdlib :mod:`argparse`).

``logitkit tour`` walks through the study note on softmax, logits and cross
entropy, recomputing its examples with logitkit beside exact values. ``logitkit score``
scores prediction files and ``logitkit convert`` transforms them; all join the
same sub-parser.

NumPy and rich are imported only when a subcommand runs, so that ``--help``
and ``tour --list`` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__
from ._convert import add_parser as _add_convert_parser
from ._score_cli import add_parser as _add_score_parser
from ._tour import DEFAULT_SEED, SECTIONS, WIDTH

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logitkit",
        description="Logits to probabilities and losses, exactly.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [s.name for s in SECTIONS]
    tour = sub.add_parser(
        "tour",
        help="walk through softmax, logits and cross entropy, exactly",
        description=(
            "Walk through the study note on softmax, logits and cross "
            "entropy: its examples recomputed with logitkit beside the exact "
            "values and the note's."
        ),
    )
    tour.add_argument(
        "--section",
        choices=names,
        metavar="NAME",
        help=f"run one section only: {', '.join(names)}",
    )
    tour.add_argument("--list", action="store_true", help="list the sections and exit")
    tour.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the random examples (default: {DEFAULT_SEED})",
    )
    tour.add_argument(
        "--no-color",
        action="store_true",
        help="plain text even on a terminal (the default when piped)",
    )
    _add_score_parser(sub)
    _add_convert_parser(sub)
    return parser


def _console(*, no_color: bool) -> Console:
    """A console at most `WIDTH` wide; colour only on a terminal."""
    from rich.console import Console

    console = Console(
        color_system=None if no_color else "auto",
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.width = min(console.width, WIDTH) if console.is_terminal else WIDTH
    return console


def _tour(args: argparse.Namespace) -> int:
    if args.list:
        width = max(len(s.name) for s in SECTIONS) + 2
        for s in SECTIONS:
            sys.stdout.write(f"{s.name.ljust(width)}{s.summary}\n")
        return 0
    from ._tour import run

    names = None if args.section is None else [args.section]
    run(_console(no_color=args.no_color), names, seed=args.seed)
    return 0


def _guarded(args: argparse.Namespace) -> int:
    """``logitkit score`` and ``convert``: one line on stderr for an error, no traceback.

    Status 1 for data errors (:class:`~logitkit._io.DataError`, I/O errors),
    2 for usage errors (:class:`~logitkit._io.UsageError`), 130 when
    interrupted; ``--debug`` lets the exception through instead.
    """
    from ._io import DataError, UsageError

    try:
        if args.command == "convert":
            from ._convert import run as convert

            return convert(args)
        from ._score_cli import run

        return run(args, _console(no_color=args.no_color))
    except (UsageError, DataError, OSError, MemoryError, KeyboardInterrupt) as exc:
        if args.debug:
            raise
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write(f"logitkit {args.command}: interrupted\n")
            return 130
        if isinstance(exc, OSError):
            name = f"{exc.filename}: " if exc.filename else ""
            text = f"{name}{exc.strerror or exc}"
        elif isinstance(exc, MemoryError):
            text = "out of memory; try a smaller --chunk-rows"
        else:
            text = str(exc)
        sys.stderr.write(f"logitkit {args.command}: error: {text}\n")
        return 2 if isinstance(exc, UsageError) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``logitkit`` command line and return its exit status.

    With no subcommand, print the help to stderr and return 2. Usage errors
    exit with status 2 through :mod:`argparse`.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "tour":
        return _tour(args)
    if args.command in ("score", "convert"):
        return _guarded(args)
    parser.print_help(sys.stderr)
    return 2
