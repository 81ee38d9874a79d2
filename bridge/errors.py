"""The bridge's one exception tree. Code branches on the type, never on message text.

    BridgeError                 root; carries ``fields`` (what, where) for logs and reports
    ├── ConfigError             bad config or mapping: nothing was done, exit 78 (EX_CONFIG)
    │                           ``problems`` lists every problem found, each with its key path
    ├── TransientError          worth retrying: 408/429/5xx, timeouts, resets (``retry_after``)
    │   └── UnavailableError    retries exhausted: 1C / site / database unreachable, exit 69
    ├── FatalHTTPError          a 4xx other than 408/429 (or an unusable answer): do not retry
    ├── OneCError               1C answered with ``odata.error`` (``code``, ``message`` in Russian)
    ├── DocumentError           this document cannot be processed (bad data, mapping mismatch):
    │                           quarantine it with ``reason`` and carry on with the others
    ├── ContractError           1C's ``$metadata`` no longer matches the mapping (``missing``)
    └── StateError              the state database is unusable or inconsistent

Must not import anything else of the bridge: every layer may import this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields)

    def __str__(self) -> str:
        return self.message


class ConfigError(BridgeError):
    """Bad config or mapping. ``problems`` holds one line per problem (``key.path: what to do``)."""

    def __init__(self, problems: Iterable[str] | str, **fields: Any) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems) or "invalid configuration", **fields)


class TransientError(BridgeError):
    """A failure that may pass: retry with backoff (honouring ``retry_after`` seconds if set)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class UnavailableError(TransientError):
    """Retries exhausted: the peer (1C, the site, the database) is unreachable. Exit 69."""


class FatalHTTPError(BridgeError):
    """An HTTP answer that retrying cannot fix (4xx other than 408/429, an HTML page, garbage)."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "", **fields: Any) -> None:
        super().__init__(message, status=status, body=body[:500], **fields)
        self.status = status
        self.body = body[:500]


class OneCError(BridgeError):
    """1C answered with an ``odata.error``: ``code`` and 1C's own (Russian) ``onec_message``."""

    def __init__(self, message: str, *, status: int, code: str, onec_message: str, **fields: Any) -> None:
        super().__init__(message, status=status, code=code, onec_message=onec_message, **fields)
        self.status = status
        self.code = code
        self.onec_message = onec_message


class DocumentError(BridgeError):
    """One document cannot be processed; it is quarantined with ``reason`` and the cycle goes on."""

    def __init__(self, reason: str, *, document: str | None = None, field: str | None = None, **fields: Any):
        super().__init__(reason, document=document, field=field, **fields)
        self.reason = reason
        self.document = document
        self.field = field


class ContractError(BridgeError):
    """1C's metadata lacks what the mapping names; ``missing`` lists each item and the fix."""

    def __init__(self, missing: Iterable[str], **fields: Any) -> None:
        self.missing = list(missing)
        super().__init__("1C metadata does not match the mapping: " + "; ".join(self.missing), **fields)


class StateError(BridgeError):
    """The state database is unusable (cannot open, not migrated) or inconsistent."""


class StateNotMigrated(StateError):
    """The state database is not at the schema this bridge needs: `db upgrade` fixes it (exit 78)."""


def describe(fields: Mapping[str, Any]) -> str:
    """Render an error's fields as ``k=v`` pairs for a one-line report (secrets never put here)."""
    return " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
