"""``gwstream`` command line: the parser and the entry point (commands: docs/cli.md).

Each command lives in a thin module that parses its options and calls into
the package that does the work: :mod:`.data` (simulate, source),
:mod:`.offline` (train, search, evaluate), :mod:`.daemon` (run, replay,
listen, ingest, worker, demo) and :mod:`.skymap` (skymap, localize).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gwstream.daemon.errors import GwstreamError

from . import daemon, data, offline, skymap
from .common import setup_logging

__all__ = ["build_parser", "main"]

log = logging.getLogger("gwstream")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gwstream", description="Streaming ML search for binary black-hole mergers in H1/L1 strain.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, offline, daemon, skymap):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", "info"))
    if argv is None:  # a program run, not main(argv) from Python: this process is ours to tune
        from gwstream.daemon.proc.spawn import bound_omp_spin, keep_freed_memory

        keep_freed_memory()
        bound_omp_spin()  # before any command imports torch or numba
    if args.command == "source" and args.kind in ("gwf", "hdf5") and not args.input:
        parser.error(f"source {args.kind} needs an INPUT path")
    try:
        code = args.func(args)
    except GwstreamError as exc:
        print(f"gwstream {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    if argv is None and args.command in _FAST_EXIT:
        _exit_now(code)
    return code


# Commands that import torch, whose interpreter teardown is slow after the work is done (docs/performance.md):
# every file they write is closed by then (context managers, atomic renames), so a program run of
# them (not main(argv) from Python) ends with os._exit once its output is flushed.
_FAST_EXIT = frozenset({"worker", "search"})


def _exit_now(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
