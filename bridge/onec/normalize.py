"""1C's wire quirks, fixed at the edge so nothing past ``bridge.onec`` ever sees them.

Owns, for every answer of 1C (or of the IIS/Apache in front of it):
- turning an answer into data or into the right exception (:func:`check_answer`,
  :func:`decode_json`): a UTF-8 BOM before JSON is stripped; an HTML page (by content type or a
  leading ``<!DOCTYPE``/``<html``/``<``, with status 200 as often as 404) becomes
  :class:`~bridge.errors.FatalHTTPError` (or :class:`~bridge.errors.TransientError` for 5xx) with a
  short text excerpt; ``odata.error`` (JSON or XML) becomes :class:`~bridge.errors.OneCError` with
  1C's own Russian text; a truncated JSON body is a transport fault → ``TransientError``;
- value normalisation (:func:`normalize_row`): the empty GUID and ``null`` → ``None``;
  ``0001-01-01T00:00:00`` → ``None``; 1C's naive local times → aware times in the infobase zone;
  Int64 fields sent as strings (``LineNumber``) → ``int``; every JSON number → ``Decimal`` exactly
  (never ``float``); control characters other than ``\\n`` and ``\\t`` stripped from strings;
  OData annotations (``odata.metadata``, ``…@navigationLinkUrl``) dropped;
- the way back (:func:`encode_json`): ``Decimal`` written exactly, aware times as 1C wall clock,
  ``None`` for a ``…_Key`` field as the empty GUID.

Local times that a DST change makes ambiguous or non-existent are resolved with ``fold=0`` and then
normalised through UTC: an ambiguous time is the *first* occurrence, a time inside a spring-forward
gap is read with the offset in force before the gap (02:30 in a 02:00→03:00 gap becomes 03:30).
Deterministic, and harmless for Moscow (no DST since 2014).

Must not import requests, bridge.store, bridge.site or bridge.service (pure over bytes and dicts).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal

from bridge.errors import FatalHTTPError, OneCError, TransientError
from bridge.net import classify_status, parse_retry_after
from bridge.onec.literals import to_onec_local

__all__ = [
    "DEFAULT_INT64_FIELDS",
    "EMPTY_DATE",
    "EMPTY_GUID",
    "check_answer",
    "clean_text",
    "decode_json",
    "encode_json",
    "is_html",
    "normalize_row",
    "normalize_value",
    "parse_json",
    "parse_odata_error",
    "parse_onec_datetime",
    "strip_bom",
    "text_excerpt",
    "to_aware",
]

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = "0001-01-01T00:00:00"

#: Fields 1C sends as Int64 strings; converted to ``int`` on read and back to strings on write.
DEFAULT_INT64_FIELDS: frozenset[str] = frozenset({"LineNumber"})

_BOM = b"\xef\xbb\xbf"
_NAIVE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TAG = re.compile(r"<script.*?</script>|<style.*?</style>|<[^>]*>", re.S | re.I)
_SPACE = re.compile(r"\s+")

Expect = Literal["json", "xml", "any"]


def strip_bom(body: bytes) -> bytes:
    """Drop a leading UTF-8 byte-order mark (1C and some proxies send one before JSON)."""
    return body[len(_BOM) :] if body.startswith(_BOM) else body


def _head(body: bytes) -> bytes:
    return strip_bom(body).lstrip()[:64].lower()


def is_html(content_type: str | None, body: bytes, *, expect: Expect = "json") -> bool:
    """True for an HTML page (IIS/Apache/1C error or login page) where data was expected.

    Args:
        content_type: the ``Content-Type`` header.
        body: the raw body.
        expect: ``"json"`` treats any leading ``<`` as HTML; ``"xml"`` only real HTML markers.
    """
    if content_type and "html" in content_type.lower():
        return True
    head = _head(body)
    if head.startswith((b"<!doctype html", b"<html")):
        return True
    return expect == "json" and head.startswith(b"<") and not _is_xml_error(body)


def text_excerpt(body: bytes, limit: int = 300) -> str:
    """A short, single-line, tag-free excerpt of a body for an error message."""
    text = strip_bom(body).decode("utf-8", errors="replace")
    text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", clean_text(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_xml_error(body: bytes) -> bool:
    head = strip_bom(body).lstrip()[:400]
    return head.startswith(b"<") and b"error" in head and b"dataservices" in head


def parse_odata_error(body: bytes) -> tuple[str, str] | None:
    """Extract ``(code, message)`` from an ``odata.error`` answer (JSON or XML), else ``None``."""
    raw = strip_bom(body).strip()
    if raw.startswith(b"{"):
        try:
            payload = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        error = payload.get("odata.error") or payload.get("error")
        if not isinstance(error, dict):
            return None
        message = error.get("message")
        if isinstance(message, dict):
            message = message.get("value")
        return str(error.get("code", "")), clean_text(str(message or "")).strip()
    if _is_xml_error(raw):
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return None
        if not root.tag.endswith("error"):
            return None
        code = next((c.text or "" for c in root if c.tag.endswith("code")), "")
        text = next((c.text or "" for c in root if c.tag.endswith("message")), "")
        return code.strip(), clean_text(text).strip()
    return None


def check_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    url: str,
    what: str = "",
    expect: Expect = "json",
    write: bool = False,
    idempotent: bool = True,
) -> None:
    """Raise the right exception for an unusable answer; return for a usable one.

    Args:
        status: HTTP status.
        headers: response headers (case-insensitive mapping, as ``requests`` gives).
        body: raw body.
        url: the request URL (for messages).
        what: a label such as ``"PATCH Document_ЗаказКлиента(…)"``.
        expect: the body kind a success must carry.
        write: the request changes data. A 5xx ``odata.error`` on a write is 1C's business logic
            refusing (posting handler, closed period, rights): :class:`OneCError`, never retried. On
            a read it is retried as transient (lock conflicts pass).
        idempotent: ``False`` for creates: see :func:`bridge.net.classify_status`.

    Raises:
        OneCError: 1C answered ``odata.error`` (4xx, or 5xx on a write).
        TransientError: 408/429/5xx, truncated answer (``OutcomeUnknownError`` for a create).
        FatalHTTPError: any other 4xx, or an HTML page instead of data.
    """
    label = what or url
    content_type = headers.get("Content-Type")
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if 200 <= status < 300:
        if body.strip() and expect != "any" and is_html(content_type, body, expect=expect):
            raise FatalHTTPError(
                f"{label}: HTML page instead of {expect.upper()} (wrong base URL, publication or login"
                f" page?): {text_excerpt(body, 200)}",
                status=status,
                body=text_excerpt(body),
                url=url,
            )
        return
    error = parse_odata_error(body)
    if error is not None and status not in (408, 429) and (status < 500 or write):
        code, onec_message = error
        raise OneCError(
            f"{label}: 1C refused (HTTP {status}, code {code}): {onec_message}",
            status=status,
            code=code,
            onec_message=onec_message,
            url=url,
        )
    excerpt = error[1] if error is not None else text_excerpt(body)
    problem = classify_status(status, url=url, retry_after=retry_after, body=excerpt, idempotent=idempotent)
    if problem is None:  # 1xx/3xx: requests follows redirects, so this is an unusable answer
        raise FatalHTTPError(f"{label}: unexpected HTTP {status}", status=status, body=excerpt, url=url)
    hint = ""
    if status == 404 and is_html(content_type, body, expect=expect):
        hint = " (IIS answers an HTML 404 past 2048 bytes of query string, or the publication is missing)"
    elif status == 401:
        hint = " (check the 1C user name and password; the user needs OData rights)"
    problem.message = (
        f"{label}: HTTP {status}{hint}: {excerpt[:200]}" if excerpt else f"{label}: HTTP {status}"
    )
    problem.args = (problem.message,)
    if error is not None:
        problem.fields.update(code=error[0], onec_message=error[1])
    raise problem


def parse_json(body: bytes, *, url: str = "") -> Any:
    """Parse a JSON body exactly: BOM stripped, numbers as ``Decimal``, truncation transient.

    Raises:
        TransientError: the body starts like JSON but breaks off (a transport fault: retry).
        FatalHTTPError: the body is not JSON at all.
    """
    raw = strip_bom(body)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte letter cut in half by a short read looks exactly like this.
        raise TransientError(
            f"truncated or garbled UTF-8 from {url or '1C'} at byte {exc.start} of {len(raw)}",
            url=url,
            body=text_excerpt(raw[-200:]),
        ) from exc
    try:
        # ``strict=False``: 1C puts raw control characters inside strings (ONEC.md); they are data,
        # not a broken body (``clean_text`` drops them from what the bridge reads).
        return json.loads(text, parse_float=Decimal, parse_int=Decimal, strict=False)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(("{", "[")):
            raise TransientError(
                f"truncated JSON from {url or '1C'}: {len(raw)} bytes, parse failed at {exc.pos}"
                f" ({exc.msg}); retrying",
                url=url,
                body=text_excerpt(raw[-200:]),
            ) from exc
        raise FatalHTTPError(
            f"not JSON from {url or '1C'}: {text_excerpt(raw, 200)}", body=text_excerpt(raw), url=url
        ) from exc


def decode_json(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    url: str,
    what: str = "",
    write: bool = False,
    idempotent: bool = True,
) -> Any:
    """:func:`check_answer` then :func:`parse_json`; an empty success body gives ``None``."""
    check_answer(status, headers, body, url=url, what=what, expect="json", write=write, idempotent=idempotent)
    if not strip_bom(body).strip():
        return None
    return parse_json(body, url=url)


def clean_text(text: str) -> str:
    """Remove control characters (C0, DEL, C1) except ``\\n`` and ``\\t``."""
    return _CONTROL.sub("", text)


def to_aware(naive: datetime, tz: tzinfo) -> datetime:
    """Attach 1C's zone to a naive wall-clock time, resolving DST deterministically (``fold=0``)."""
    if naive.tzinfo is not None:
        return naive.astimezone(tz)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def parse_onec_datetime(text: str, tz: tzinfo) -> datetime | None:
    """``"2026-03-01T10:00:00"`` → aware time in ``tz``; the empty date ``0001-01-01…`` → ``None``."""
    if not text or text.startswith("0001-01-01"):
        return None
    return to_aware(datetime.fromisoformat(text), tz)


def normalize_value(
    value: Any, tz: tzinfo, *, key: str = "", as_string: bool = False, int64_fields: Collection[str] = ()
) -> Any:
    """Normalise one JSON value (see the module docstring); recurses into rows and sections."""
    if value is None:
        return None
    if isinstance(value, dict):
        return normalize_row(value, tz, int64_fields=int64_fields)
    if isinstance(value, list):
        return [normalize_value(v, tz, key=key, int64_fields=int64_fields) for v in value]
    if key in int64_fields and isinstance(value, str | Decimal) and not isinstance(value, bool):
        try:
            return int(value)
        except (ValueError, ArithmeticError):
            return value
    if isinstance(value, str):
        if value == EMPTY_GUID:
            return None
        if not as_string and _NAIVE_DATETIME.match(value):
            return parse_onec_datetime(value, tz)
        return clean_text(value)
    return value  # bool, Decimal


def normalize_row(
    row: Mapping[str, Any], tz: tzinfo, *, int64_fields: Collection[str] = DEFAULT_INT64_FIELDS
) -> dict[str, Any]:
    """Normalise one entity (and its inline tabular sections / expanded references).

    A value whose sibling ``<name>_Type`` says ``Edm.String`` stays a string even if it looks like a
    date (additional attributes' ``Значение``).
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("odata.") or "@" in key:
            continue
        as_string = row.get(f"{key}_Type") == "Edm.String"
        out[key] = normalize_value(value, tz, key=key, as_string=as_string, int64_fields=int64_fields)
    return out


def as_read(body: Mapping[str, Any], read: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with every cell of its tabular sections that the builder left as it was read put
    back exactly as 1C sent it (``raw``; ``read`` is its :func:`normalize_row`).

    A section is sent whole, so other rows and columns go back too, and normalising is one-way:
    the empty date (``0001-01-01T00:00:00``) and the empty reference read as ``None``, which would
    go back as ``null`` (1C has ``null`` only under ``$expand``), and control characters are
    dropped from text. Rows are matched by ``LineNumber``; new rows and changed cells stay as built.
    """
    out = dict(body)
    for name, rows in body.items():
        read_rows, raw_rows = read.get(name), raw.get(name)
        if not (isinstance(rows, list) and isinstance(read_rows, list) and isinstance(raw_rows, list)):
            continue
        if len(read_rows) != len(raw_rows):
            continue
        pairs = {
            str(r.get("LineNumber")): (r, w)
            for r, w in zip(read_rows, raw_rows, strict=True)
            if isinstance(r, Mapping) and isinstance(w, Mapping)
        }
        restored = []
        for row in rows:
            pair = pairs.get(str(row.get("LineNumber"))) if isinstance(row, Mapping) else None
            if pair is None:
                restored.append(row)
                continue
            was, sent = pair
            restored.append(
                {k: sent[k] if k in sent and k in was and v is was[k] else v for k, v in row.items()}
            )
        out[name] = restored
    return out


def _encode(value: Any, tz: tzinfo, key: str, int64_fields: Collection[str], out: list[str]) -> None:
    if value is None:
        out.append(json.dumps(EMPTY_GUID) if key.endswith("_Key") else "null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, float):
        raise TypeError(f"{key or 'value'}: float is not allowed, use Decimal")
    elif isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{key}: not a finite number")
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        out.append(json.dumps(text) if key in int64_fields else text)
    elif isinstance(value, datetime):
        out.append(json.dumps(to_onec_local(value, tz).strftime("%Y-%m-%dT%H:%M:%S")))
    elif isinstance(value, date):
        out.append(json.dumps(value.strftime("%Y-%m-%dT00:00:00")))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(k), ensure_ascii=False) + ":")
            _encode(v, tz, str(k), int64_fields, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, tz, key, int64_fields, out)
        out.append("]")
    else:
        raise TypeError(f"{key or 'value'}: cannot send {type(value).__name__} to 1C")


def encode_json(
    body: Mapping[str, Any], tz: tzinfo, *, int64_fields: Collection[str] = DEFAULT_INT64_FIELDS
) -> bytes:
    """Serialise a request body for 1C as UTF-8 JSON.

    ``Decimal`` exactly (``json.dumps`` cannot), ``int64_fields`` as strings, aware ``datetime`` as
    1C's naive wall clock in ``tz``, ``None`` in a ``…_Key`` field as the empty GUID. ``float`` is
    refused.
    """
    out: list[str] = []
    _encode(body, tz, "", int64_fields, out)
    return "".join(out).encode("utf-8")


_PLAIN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")  # whole seconds


class LocalTimes:
    """``normalize_value`` of 1C's date-shaped strings in ``tz``, faster for whole-second times in
    an hour without a clock change: there ``to_aware``'s round trip through UTC gives back the
    wall time itself (fold 0), so the aware time is built directly. Remembers each hour's answer."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._plain_hours: dict[str, bool] = {}  # "YYYY-MM-DDTHH" -> no clock change in that hour

    def __call__(self, value: str, key: str) -> Any:
        if _PLAIN_TIME.fullmatch(value) is None or value.startswith("0001-01-01"):
            return normalize_value(value, self.tz, key=key)
        naive = datetime.fromisoformat(value)
        plain = self._plain_hours.get(value[:13])
        if plain is None:
            plain = self._plain_hours[value[:13]] = self._plain_hour(naive)
        if not plain:
            return to_aware(naive, self.tz)
        return datetime(
            naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second, 0, self.tz
        )

    def _plain_hour(self, naive: datetime) -> bool:
        """True when ``naive``'s hour has no clock change: its first and last second come back
        from ``to_aware`` as themselves (fold 0) with the same UTC offset."""
        first = naive.replace(minute=0, second=0, microsecond=0)
        last = first.replace(minute=59, second=59)
        a, b = to_aware(first, self.tz), to_aware(last, self.tz)
        unchanged = (a.replace(tzinfo=None), a.fold, b.replace(tzinfo=None), b.fold) == (first, 0, last, 0)
        return unchanged and a.utcoffset() == b.utcoffset()
