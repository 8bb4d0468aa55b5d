"""The `jobqueue` command: server, worker, dev, and the client commands (enqueue, get, cancel, retry).

parser.py reads the command line, commands.py runs each command, job_view.py prints
jobs, and exits.py holds the exit codes and the messages of failed calls.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .exits import CommandFailed, ExitCode
from .parser import build_parser, parse_duration_s, parse_time_ms


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .commands import run_command  # noqa: PLC0415 - after parsing: --help and usage errors stay fast

    try:
        return run_command(args)
    except CommandFailed as failure:
        print(f"jobqueue: {failure.message}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return 128 + 2  # what a shell reports for SIGINT
    except (OSError, LookupError, ValueError, TypeError, ImportError) as exc:
        print(f"jobqueue {args.command}: {exc}", file=sys.stderr)
        return ExitCode.FAILED


__all__ = ["ExitCode", "build_parser", "main", "parse_duration_s", "parse_time_ms"]
