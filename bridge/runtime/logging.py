"""Structured logs: one JSON object per line on stderr (or a console rendering), secrets redacted.

Owns ``configure_logging``, ``get_logger``, the ``redact`` processor and the secrets it knows
(``register_secrets``, ``config_secrets``). Every line carries an ISO-8601 UTC ``timestamp``, ``level``,
``event`` and the context bound with ``structlog.contextvars`` (``bound_contextvars(cycle=...,
doc=..., customer=...)``, re-exported here). Standard-library loggers (urllib3, zeep, alembic) come
out through the same chain, so journald gets one format.

Redaction, the last step before rendering: a value whose key contains password, passwd, secret,
token, authorization, api_key, apikey or cookie (at any depth of dicts and lists; keys ending in
``_env`` name a variable and are kept) becomes ``[REDACTED]``; every registered secret string is
replaced wherever it appears, including inside messages, URLs and rendered tracebacks.

Must not import anything of the bridge (``config_secrets`` reads a config by duck typing).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "bound_contextvars",
    "config_secrets",
    "configure_logging",
    "get_logger",
    "redact",
    "register_secrets",
]

REDACTED = "[REDACTED]"
_SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "cookie")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_PRIMITIVES = (int, float, bool, type(None))
# Libraries that chatter at DEBUG about every request or job; keep them at INFO even in debug mode.
_NOISY = ("urllib3", "schedule", "zeep", "requests")
# Libraries whose INFO lines say nothing an administrator needs (alembic's "Context impl SQLiteImpl."
# and "Will assume non-transactional DDL." on every command): warnings and errors only.
_QUIET = ("alembic",)


class _Secrets:
    """The secret strings registered at start-up (thread-safe; only ever grows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[object]) -> None:
        new = {str(v) for v in values if v is not None and str(v).strip()}
        with self._lock:
            # Longest first, so a secret that contains another is replaced whole.
            self._values = tuple(sorted(set(self._values) | new, key=len, reverse=True))

    @property
    def values(self) -> tuple[str, ...]:
        return self._values


_SECRETS = _Secrets()


def register_secrets(*values: object) -> None:
    """Add secret strings to redact from every log line from now on (None and blanks are ignored)."""
    _SECRETS.add(values)


def _secret_key(key: object) -> bool:
    name = str(key).lower()
    return not name.endswith("_env") and any(part in name for part in _SECRET_KEY_PARTS)


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _secret_key(k) and v is not None else _scrub(v, secrets) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, bytes):
        return _scrub(value.decode("utf-8", "replace"), secrets) if secrets else value
    if secrets:  # an exception, a URL object, a model: only its text can leak a secret
        text = str(value)
        if _scrub_text(text, secrets) != text:
            return _scrub_text(text, secrets)
    return value


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: blank secret-named keys and registered secret values, at any depth."""
    secrets = _SECRETS.values
    for key in list(event_dict):
        value = event_dict[key]
        if _secret_key(key) and value is not None:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(value, secrets)
    return event_dict


class _Stderr:
    """``sys.stderr`` looked up at every write, so a replaced stderr (pytest, a daemon) is honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _shared_processors() -> list[Processor]:
    return [
        merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "info", fmt: str = "json", secrets: Iterable[object] = (), *, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's logging; call once at start-up (again is fine).

    Args:
        level: ``debug`` | ``info`` | ``warning`` | ``error`` (``log.level``).
        fmt: ``json`` (one object per line, for journald and log shippers) or ``console``
            (``log.format``; colours only on a terminal).
        secrets: secret strings to redact (see ``config_secrets``); added to those already registered.
        stream: where lines go (default: ``sys.stderr`` at the time of each write).
    """
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(_LEVELS)}")
    if fmt not in ("json", "console"):
        raise ValueError(f"log format {fmt!r}: expected json or console")
    register_secrets(*secrets)
    out: Any = stream if stream is not None else _Stderr()
    renderer: Processor
    if fmt == "json":
        renderer = _first_keys(structlog.processors.JSONRenderer(ensure_ascii=False, default=str))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=bool(out.isatty()), exception_formatter=_plain)
    # Tracebacks are rendered to text *before* redaction, so secrets inside them are caught too.
    tail: list[Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=[*_shared_processors(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(_LEVELS[level], out, tail)


def _first_keys(render: Processor) -> Processor:
    """Render with ``timestamp``, ``level``, ``event`` first: a person scanning journald reads these."""

    def ordered(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        lead = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
        return render(logger, method_name, {**lead, **event_dict})

    return ordered


def _plain(sio: TextIO, exc_info: Any) -> None:
    # format_exc_info already turned exc_info into the "exception" text; nothing is left to format.
    return None


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so reconfiguring replaces it rather than adding one."""


def _configure_stdlib(level: int, out: Any, tail: list[Processor]) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = _StdlibHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def get_logger(**initial: Any) -> Any:
    """A structlog logger with ``initial`` context bound (e.g. ``get_logger(component="daemon")``)."""
    return structlog.get_logger(**initial)


def config_secrets(config: Any) -> list[str]:
    """The secret strings a loaded ``Config`` holds: 1C password, webhook secrets, SMS token, SMTP
    password and a password inside ``state.url``. Pass them to ``configure_logging(secrets=...)``."""
    found: list[Any] = []

    def take(obj: Any, *path: str) -> None:
        for name in path:
            obj = getattr(obj, name, None)
            if obj is None:
                return
        reveal = getattr(obj, "get_secret_value", None)
        found.append(reveal() if callable(reveal) else obj)

    take(config, "onec", "password")
    take(config, "site", "secret")
    take(config, "site", "previous_secret")
    take(config, "notify", "sms", "token")
    take(config, "notify", "email", "password")
    take(config, "state", "sqlalchemy_url", "password")
    values = [str(v) for v in found if v is not None and str(v).strip()]
    # The webhook key also travels without its prefix (decoded for signing, quoted in errors).
    values += [v.removeprefix("whsec_") for v in values if v.startswith("whsec_")]
    return values
