"""Where every failure of a command ends: one ``error:`` line on stderr and a documented exit code.

Exit codes (docs/index.md, "Exit codes"): 0 all good; 1 findings, or nothing to report; 2 usage or
input errors (bad options, unreadable files, a store or service that cannot be reached or lacks
fairwatch's tables); 3 a bug in fairwatch (the message says so; ``--debug`` shows the traceback).
``fairwatch --debug CMD`` (or ``FAIRWATCH_DEBUG=1``) lets tracebacks through, with the SQL a
store refused.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

import typer

from fairwatch.cli.typer_click import ClickException, UsageError
from fairwatch.contracts.kafka_link import KafkaLinkError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
DEBUG_FLAG = "--debug"
# drivers that log their own tracebacks (a refused connection) before raising the error we report
CHATTY_LOGGERS = ("clickhouse_driver", "aiokafka", "kafka")


_state = {"debug": False}  # this run's --debug, for the commands that catch their own failures


def debug_requested(args: Sequence[str]) -> bool:
    return DEBUG_FLAG in args or os.environ.get("FAIRWATCH_DEBUG", "").lower() in ("1", "true", "yes")


def error(message: str) -> None:
    """The one line an expected failure prints: plain text (no markup to eat brackets in paths),
    never wrapped, so `grep '^error:'` finds all of it; a password in a quoted URL is removed."""
    from fairwatch.store.clickhouse import without_passwords

    print(f"error: {' '.join(without_passwords(message).split())}", file=sys.stderr, flush=True)


def failed(exc: BaseException, code: int = EXIT_USAGE) -> typer.Exit:
    """An expected failure a command caught: its one ``error:`` line and exit ``code``, or under
    ``--debug`` the exception itself, traceback (and refused SQL) included."""
    if _state["debug"]:
        raise exc
    sql = getattr(exc, "sql", None)
    error(f"{exc}{' (--debug shows the query)' if sql else ''}")
    return typer.Exit(code)


def run(app: typer.Typer, args: Sequence[str] | None = None, prog_name: str = "fairwatch") -> int:
    """Run ``app`` on ``args`` and turn whatever escapes into an exit code and one line."""
    from fairwatch.store.clickhouse import StoreError

    args = list(sys.argv[1:] if args is None else args)
    debug = _state["debug"] = debug_requested(args)
    if not debug:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        error(f"{exc.format_message().rstrip('.')}{where}")
        return EXIT_USAGE
    except ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        error("interrupted")
        return 130
    except StoreError as exc:
        if debug and exc.sql:
            print(exc.sql, file=sys.stderr)
        return failed(exc).exit_code  # under --debug, failed re-raises it
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ConnectionError,
            TimeoutError, KafkaLinkError) as exc:  # a file, folder, service or setting the user named; any other error is a bug
        if debug:
            raise
        error(str(exc) or type(exc).__name__)
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            raise
        error(f"{type(exc).__name__}: {exc}. This is a bug in fairwatch; `fairwatch --debug ...` shows "
              "the traceback to report it")
        return EXIT_BUG
    return code if isinstance(code, int) else EXIT_OK
