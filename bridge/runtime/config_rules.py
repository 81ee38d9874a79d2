"""Single-value rules of the config, and the channel through which multi-key rules report problems.

Owns the ``Section`` base model, the annotated value types built from the rules (``Days``,
``HttpUrl``, ``EnvName``…), the validators behind them (URLs, time zones, the state database URL,
``HH:MM`` times, secrets looked up in the environment) and ``report``, which lets a validator add a
problem under an explicit key path and carry on, so every problem is listed at once. Each message
reads ``<what is wrong>; <what to do>``; the key path is prepended by the caller.

Must not import anything of the bridge.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from base64 import b64decode
from binascii import Error as BinasciiError
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

RULE = "config_rule"  # the pydantic error type of every rule here; its ``detail`` is the message
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$"
)
_HHMM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_CODE = re.compile(r"^[A-Za-z0-9_.-]+$")


def fail(message: str) -> NoReturn:
    """Reject the value at hand with ``message`` (``what is wrong; what to do``)."""
    raise PydanticCustomError(RULE, "{detail}", {"detail": message})


def report(info: ValidationInfo, path: str, message: str) -> None:
    """Record a problem under ``path`` and let validation go on (outside ``load_config``: raise)."""
    context = info.context
    if isinstance(context, dict) and isinstance(context.get("problems"), list):
        context["problems"].append((path, message))
        return
    fail(f"{path}: {message}")


def environ_of(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, dict) and isinstance(context.get("environ"), Mapping):
        return context["environ"]  # type: ignore[no-any-return]
    return os.environ


def secret_value(environ: Mapping[str, str], name: str | None) -> str | None:
    """The secret held by variable ``name``, surrounding whitespace stripped; None if unset or blank."""
    if not name:
        return None
    value = environ.get(name)
    if value is None:
        return None
    return value.strip() or None


def secrets_required(info: ValidationInfo) -> bool:
    """Whether the command loading the config uses the secrets (``load_config(secrets=...)``)."""
    context = info.context
    return not (isinstance(context, dict) and context.get("secrets") is False)


def check_secret(info: ValidationInfo, path: str, name: str | None, feature: str) -> None:
    """Report a missing secret: the variable ``name`` must be set and non-blank (unless the command
    never contacts 1C, the site or a gateway: then the secrets are not needed)."""
    if name is None or not _ENV_NAME.match(name) or not secrets_required(info):
        return  # the name itself was already rejected, or no secret is needed
    if secret_value(environ_of(info), name) is None:
        report(
            info,
            path,
            f"environment variable {name} is not set or is empty, and {feature} needs it; "
            f"set {name} in the service's environment (e.g. the systemd unit's EnvironmentFile)",
        )


def env_name(value: str) -> str:
    # Never echo the value: a secret pasted here by mistake must not reach the logs.
    if not _ENV_NAME.match(value):
        fail(
            "is not an environment variable name (letters, digits and _); "
            "name the variable that holds the secret, never put the secret itself in the file"
        )
    return value


def null_as_empty(value: Any) -> Any:
    """``soap:`` with nothing under it is YAML null: read it as the section with its defaults."""
    return {} if value is None else value


def non_blank(value: str) -> str:
    if not value.strip():
        fail("must not be empty; give a value")
    return value


CODE_MAX = 64  # the state database's tier and level code columns (VARCHAR(64))


def code(value: str) -> str:
    if not _CODE.match(value):
        fail(f"{value!r} is not a code (Latin letters, digits, _ . -); use e.g. gold or fan")
    if len(value) > CODE_MAX:
        # Longer codes do not fit the state database's code columns (PostgreSQL refuses them).
        fail(f"{value[:20]!r}… is {len(value)} characters long; a code has at most {CODE_MAX}")
    return value


def http_url(value: str) -> str:
    """An http(s) URL with a host and no password in it."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        fail(f"{value!r} is not a valid URL ({exc}); write it as https://host/path")
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        fail(f"{value!r} is not an http(s) URL with a host; write it as https://host/path")
    if parts.password is not None:
        fail("contains a password; remove it — secrets come from environment variables (*_env keys)")
    return value


def timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"{value!r} is not a known time zone; use an IANA name such as Europe/Moscow")
    return value


def state_url(value: str) -> str:
    """A SQLAlchemy URL for SQLite or PostgreSQL (psycopg 3), without a password."""
    try:
        url = make_url(value)
    except ArgumentError:
        fail(
            f"{value!r} is not a database URL; write sqlite:////var/lib/loyalty-bridge/state.db "
            "or postgresql+psycopg://user@host/db"
        )
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite":
        if driver not in ("pysqlite", "sqlite"):
            fail(f"SQLite driver {driver!r} is not supported; write sqlite:///PATH")
    elif backend == "postgresql":
        if "+" in url.drivername and driver != "psycopg":
            fail(f"PostgreSQL driver {driver!r} is not supported; write postgresql+psycopg://user@host/db")
    else:
        fail(
            f"database {backend!r} is not supported; use SQLite (sqlite:///PATH) "
            "or PostgreSQL (postgresql+psycopg://user@host/db)"
        )
    if url.password is not None:
        fail("contains a password; remove it and give it to PostgreSQL as PGPASSWORD or in ~/.pgpass")
    return value


def sqlalchemy_url(value: str) -> URL:
    """The URL to open: a bare ``postgresql://`` means psycopg 3, the driver the bridge ships with."""
    url = make_url(value)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        fail(f'{value!r} is not a time of day; write it as "HH:MM" in quotes, e.g. "03:30"')
    return time(int(match.group(1)), int(match.group(2)))


def start_moment(value: Any) -> datetime:
    """An ISO date or date-time; a date means its midnight."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    fail(f"{value!r} is not an ISO date or date-time; write e.g. 2026-01-01 or 2026-01-01T00:00:00")


def listen_address(value: str) -> str:
    """``host:port`` (``[v6]:port`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ok_port = port.isdigit() and 0 < int(port) < 65536
    ok_host = bool(host) and (_is_ip(host) or bool(_HOSTNAME.match(host)))
    if not (sep and ok_port and ok_host):
        fail(f'{value!r} is not host:port; write e.g. "127.0.0.1:9108"')
    if not is_loopback(host):
        # The endpoint has no authentication: checked here so that `check` and every command say
        # so, not only `run` when it binds.
        fail(
            f"{host} is not a loopback address and the endpoint has no authentication; "
            'listen on 127.0.0.1 (e.g. "127.0.0.1:9108") and scrape through a reverse proxy'
        )
    return value


def is_loopback(host: str) -> bool:
    """True if ``host`` (an IP or a name) only ever means this machine."""
    host = host.strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def hostname(value: str) -> str:
    if not (_is_ip(value) or _HOSTNAME.match(value)):
        fail(f"{value!r} is not a host name; write the SMTP server's name only, e.g. smtp.example.ru")
    return value


def webhook_secret(environ: Mapping[str, str], name: str) -> str | None:
    """Why the secret in ``name`` is not a Standard Webhooks secret, or None if it is (or is unset)."""
    value = secret_value(environ, name)
    if value is None:
        return None
    key = value.removeprefix("whsec_")
    try:
        raw = b64decode(key, validate=True)
    except (BinasciiError, ValueError):
        raw = b""
    if not raw:
        return (
            f"the secret in {name} is not a Standard Webhooks secret (whsec_ + base64); "
            'generate one with: python3 -c "import base64,os;'
            "print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    return None


def share(value: Decimal) -> Decimal:
    if not Decimal(0) < value <= Decimal(1):
        fail(f"{value} is outside (0, 1]; give the share as a fraction, e.g. 0.5 for half the goods amount")
    return value


def rate(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(1):
        fail(f"{value} is outside [0, 1]; give the rate as a fraction, e.g. 0.03 for 3 %")
    return value


def percent(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(100):
        fail(f"{value} is outside [0, 100]; give the percent as a number, e.g. 5 for 5 %")
    return value


def coefficient(value: Decimal) -> Decimal:
    if value < 0:
        fail(f"{value} is negative; use 0 (earns nothing) or more, e.g. 1.5")
    return value


def card_prefix(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 1 <= len(value) <= 11):
        fail(
            f"{value!r} must be 1 to 11 digits (EAN-13 = prefix + serial + check digit); "
            'write e.g. "2990" in quotes'
        )
    return value


class Section(BaseModel):
    """Base of every config model: frozen, unknown keys rejected."""

    # validate_default: multi-key rules sit on fields that may be left at their default.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


EnvName = Annotated[str, AfterValidator(env_name)]
Text = Annotated[str, AfterValidator(non_blank)]
Code = Annotated[str, AfterValidator(code)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
Money = Annotated[Decimal, Field(ge=0)]
Coefficient = Annotated[Decimal, AfterValidator(coefficient)]
Seconds = Annotated[float, Field(gt=0)]
Days = Annotated[int, Field(gt=0)]
