"""What every command shares: exit codes (sysexits, CONTRACT.md), the mapping of the bridge's
exceptions to one-line stderr reports (``guarded``), and the ``--config`` / ``--now`` options.

Must not import anything of the bridge but ``bridge.errors`` (commands import what they need
inside their functions, so ``--help`` stays fast).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from bridge.errors import BridgeError, ConfigError, StateError, StateNotMigrated, TransientError

EX_OK, EX_DOCS_FAILED, EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 0, 1, 2, 69, 78
F = TypeVar("F", bound=Callable[..., Any])


def fail(lines: list[str] | str, code: int) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        click.echo(f"loyalty-bridge: {line}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """Map the bridge's exceptions to one-line stderr reports and sysexits codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail([f"config: {p}" for p in exc.problems], EX_CONFIG)
        except StateError as exc:
            code = EX_CONFIG if isinstance(exc, StateNotMigrated) else EX_UNAVAILABLE
            fail(f"state: {exc.message}", code)
        except TransientError as exc:
            fail(f"unavailable: {exc.message}", EX_UNAVAILABLE)
        except BridgeError as exc:
            fail(exc.message, EX_DOCS_FAILED)
        except PermissionError as exc:  # the state files are reported by the store; anything else
            fail(
                f"permission denied: {exc.filename or exc}; run the command as the user the bridge "
                "runs as (README: as_bridge), or give that user the file",
                EX_UNAVAILABLE,
            )

    return wrapper  # type: ignore[return-value]


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Config file (default ./config.yaml, or $LOYALTY_BRIDGE_CONFIG).",
    )(func)


def now_option(func: F) -> F:
    return click.option(
        "--now",
        "now_text",
        default=None,
        metavar="ISO-8601",
        help="Evaluate as of this moment (a time without offset is in the config's timezone).",
    )(func)


def parse_now(text: str | None, tz: Any) -> datetime:
    if text is None:
        return datetime.now(UTC).astimezone(tz)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not ISO-8601, e.g. 2026-03-01T12:00:00+03:00", param_hint="--now"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=tz)
