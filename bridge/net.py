"""The HTTP edge: the ONE retry policy for every outbound call (1C, the site webhook, SMS gateways).

Owns:
- classification of an HTTP answer or a ``requests`` failure into the exception tree
  (408/429/5xx, timeouts, resets → :class:`~bridge.errors.TransientError` with ``retry_after``,
  :class:`NoAnswerError` when no answer came at all; any other 4xx →
  :class:`~bridge.errors.FatalHTTPError`);
- the idempotency rule for writes that must not be repeated blindly (:class:`OutcomeUnknownError`);
- exponential backoff with full jitter and a cap (:func:`backoff_delay`), ``Retry-After`` parsing
  (:func:`parse_retry_after`), and the tenacity-based retry loop (:func:`retrying`,
  :func:`call_with_retry`) driven by a frozen :class:`RetryPolicy`;
- UTF-8 HTTP Basic auth (:func:`basic_auth_utf8`) and sessions that always pass explicit
  ``(connect, read)`` timeouts and check the peer's certificate as told (:func:`make_session`);
  a refused certificate (:func:`certificate_refused`) says what to do about it (``tls_hint``);
- reading an answer's body as text (:func:`response_text`): UTF-8 unless the answer names a charset.

Retry rules, in one place:
- A :class:`TransientError` is retried until ``max_attempts`` or until the next sleep would cross
  ``deadline_s``; then :class:`~bridge.errors.UnavailableError` is raised ``from`` the last cause.
- ``Retry-After`` (seconds or an HTTP-date) replaces the computed backoff but is capped at ``cap_s``:
  a peer asking for an hour must not stall a cycle for an hour (the cycle retries later anyway).
- Non-idempotent requests (a POST that creates something, an SMS): only failures that prove the
  request never left (connect errors, connect timeouts) and answers that prove it was not processed
  (408, 429, 503) are retried. A read timeout, a reset after sending, or 500/502/504 raise
  :class:`OutcomeUnknownError`, which is transient for the *caller* (re-check, then decide) but is
  never retried by the loop here: repeating it could duplicate the effect.

Must not import any other bridge module except :mod:`bridge.errors` (every edge imports this one).
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import functools
import os
import random
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

import requests
import tenacity
import urllib3.exceptions
from requests.auth import AuthBase

from bridge.errors import FatalHTTPError, TransientError, UnavailableError

__all__ = [
    "DEFAULT_TIMEOUT",
    "NOT_PROCESSED_STATUSES",
    "TRANSIENT_STATUSES",
    "NoAnswerError",
    "OutcomeUnknownError",
    "RetryPolicy",
    "TimeoutSession",
    "backoff_delay",
    "basic_auth_utf8",
    "call_with_retry",
    "certificate_refused",
    "classify_exception",
    "classify_status",
    "is_connect_failure",
    "make_session",
    "parse_retry_after",
    "response_text",
    "retrying",
    "short_reason",
]

P = ParamSpec("P")
T = TypeVar("T")

#: ``(connect, read)`` seconds used when a caller passes no timeout (there is always one).
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)

#: Statuses worth retrying besides every 5xx.
TRANSIENT_STATUSES = frozenset({408, 429})

#: Answers that say the request was *not* processed, so even a non-idempotent request may be repeated.
NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})


class OutcomeUnknownError(TransientError):
    """A non-idempotent request was (possibly) sent and no usable answer came back.

    Transient for the caller — re-read the peer's state, then decide whether to repeat — but never
    retried by :func:`retrying`: repeating a create on a read timeout could create twice.
    """


class NoAnswerError(TransientError):
    """The peer gave no answer at all: connection refused or reset, a timeout, a name not resolved.

    Retried like any :class:`TransientError`; its own type tells "could not reach the peer" from
    an error the peer answered with (which carries its ``status``), e.g. for ``once``'s exit 69.
    """


class _Rng(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries before giving up.

    Attributes:
        max_attempts: total attempts including the first (1 disables retries).
        base_s: backoff base; attempt *n* sleeps up to ``base_s * 2**(n-1)`` seconds.
        cap_s: upper bound of one sleep, also the cap applied to ``Retry-After``.
        deadline_s: overall budget in seconds for all attempts and sleeps; ``None`` for no budget.
            No sleep is started that would end past it; a request in flight is bounded by its
            own timeout, not by the deadline.
    """

    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    deadline_s: float | None = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError("deadline_s must be > 0 or None")


def backoff_delay(attempt: int, base: float, cap: float, rng: _Rng) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``.

    Args:
        attempt: the attempt that just failed, starting at 1.
        base: seconds for the first ceiling.
        cap: the largest ceiling.
        rng: anything with ``random() -> float`` in ``[0, 1)`` (``random.Random``), injected for tests.

    Returns:
        Seconds to sleep before the next attempt.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    exponent = min(attempt - 1, 62)  # 2**62 already exceeds any sane cap; avoids huge floats
    ceiling = min(cap, base * 2.0**exponent)
    return rng.random() * ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP-date. Unusable values give ``None``.

    Args:
        value: the header value, or ``None`` when absent.
        now: the current aware time (for HTTP-dates); defaults to the system clock.

    Returns:
        Non-negative seconds to wait, or ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def classify_status(
    status: int,
    *,
    url: str = "",
    retry_after: float | None = None,
    body: str = "",
    idempotent: bool = True,
) -> FatalHTTPError | TransientError | None:
    """Map an HTTP status to the error to raise, or ``None`` for 1xx/2xx/3xx.

    Args:
        status: the HTTP status code.
        url: the request URL (for the error's fields; never contains credentials).
        retry_after: parsed ``Retry-After`` seconds, if any.
        body: a short excerpt of the answer.
        idempotent: ``False`` for requests that must not be repeated unless provably unprocessed.

    Returns:
        The exception instance (not raised), or ``None`` when the status is not an error.
    """
    if status < 400:
        return None
    if status in TRANSIENT_STATUSES or status >= 500:
        message = f"HTTP {status} from {url or 'peer'}"
        if not idempotent and status not in NOT_PROCESSED_STATUSES:
            return OutcomeUnknownError(
                message + ": the request may have been processed",
                retry_after=retry_after,
                status=status,
                url=url,
                body=body[:500],
            )
        return TransientError(message, retry_after=retry_after, status=status, url=url, body=body[:500])
    return FatalHTTPError(f"HTTP {status} from {url or 'peer'}", status=status, body=body, url=url)


def response_text(response: requests.Response) -> str:
    """An answer's body as text: in the charset its ``Content-Type`` declares, else UTF-8.

    ``requests`` falls back to ISO-8859-1 for ``text/*`` without a charset (and guesses for other
    types), which turns a Russian error page into ``Ð¢ÑÐµÐ±ÑÐµÑÑÑ``; the sites and gateways the
    bridge talks to answer in UTF-8. Bytes that do not decode are replaced, never raised.
    """
    content = response.content or b""
    header = email.message.Message()
    header["content-type"] = response.headers.get("Content-Type", "")
    charset = header.get_content_charset()
    if charset:
        try:
            return content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know: UTF-8 is the best guess
            pass
    return content.decode("utf-8", errors="replace")


def is_connect_failure(exc: BaseException) -> bool:
    """True when ``exc`` proves the request never reached the peer (safe to repeat any request).

    Connect timeouts, refused connections, DNS failures, TLS handshake and proxy failures qualify; a
    reset or a read timeout does not (the peer may have received and processed the request).
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    connect = urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    return any(isinstance(item, connect) for item in _causes(exc))


def certificate_refused(exc: BaseException) -> str | None:
    """Why the client refused the peer's TLS certificate (``"self-signed certificate"``, an unknown
    CA, expired, another host's name) when ``exc`` is or was caused by that refusal; else ``None``."""
    for item in _causes(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            why = getattr(item, "verify_message", None) or getattr(item, "reason", None)
            return str(why or "certificate verify failed")
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, exceptions among its args, urllib3 reasons."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, urllib3.exceptions.MaxRetryError):
            stack.append(item.reason)
        stack.extend(a for a in item.args if isinstance(a, BaseException))
        stack.extend(x for x in (item.__cause__, item.__context__) if x is not None)


def short_reason(exc: BaseException) -> str:
    """The root cause of a failed request in a few words, without the URL ``requests`` repeats.

    E.g. ``connection refused``, ``host name not found``, ``connection timed out``, ``no answer
    within the read timeout``, ``connection reset``, or the TLS library's own words.
    """
    found = list(_causes(exc))
    checks: list[tuple[Any, Callable[[Any], str]]] = [
        (ConnectionRefusedError, lambda e: "connection refused"),
        (
            socket.gaierror,
            lambda e: f"host name not found ({e.strerror})" if e.strerror else "host name not found",
        ),
        (urllib3.exceptions.NameResolutionError, lambda e: "host name not found"),
        (ssl.SSLError, lambda e: f"TLS error: {e.reason or e.strerror or type(e).__name__}"),
        (ConnectionResetError, lambda e: "connection reset"),
        (
            requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError,
            lambda e: "no answer within the read timeout",
        ),
        (urllib3.exceptions.NewConnectionError, lambda e: str(e).split(": ", 1)[-1]),
        (
            requests.exceptions.ConnectTimeout | urllib3.exceptions.ConnectTimeoutError,
            lambda e: "connection timed out",
        ),
    ]
    for kind, words in checks:
        for item in found:
            if isinstance(item, kind):
                return str(words(item))
    for item in found:
        if isinstance(item, OSError) and not isinstance(item, requests.RequestException) and item.strerror:
            return str(item.strerror).lower()
    return type(exc).__name__


def classify_exception(
    exc: requests.RequestException,
    *,
    url: str = "",
    idempotent: bool = True,
    settle_s: float | None = None,
    summary: str | None = None,
) -> FatalHTTPError | TransientError:
    """Map a ``requests`` failure (no HTTP answer) to the error to raise.

    ``summary`` replaces the default message (``<kind> talking to <url>: <the exception>``, which
    repeats the URL) for callers that can say it shorter and say what to check.

    Timeouts, connection errors and broken/short bodies are transient — connection errors (refused,
    reset, name not resolved) and timeouts, where no answer came at all, as :class:`NoAnswerError`;
    a malformed URL or an invalid header is fatal. For non-idempotent requests only
    :func:`is_connect_failure` errors stay plainly transient; the rest become
    :class:`OutcomeUnknownError`, whose ``retry_after`` is ``settle_s``:
    the peer may still be working on a request the client gave up waiting for (1C finishes a
    request whose caller has gone), so whoever looks the result up before repeating it should wait
    at least that long (the read timeout: as long again as the peer was already given).
    """
    kind = type(exc).__name__
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidHeader
        | requests.exceptions.URLRequired,
    ):
        return FatalHTTPError(f"cannot send request to {url}: {kind}: {exc}", url=url, error=kind)
    message = summary or f"{kind} talking to {url or 'peer'}: {exc}"
    if not idempotent and not is_connect_failure(exc):
        return OutcomeUnknownError(
            message + " (the request may have been processed)", url=url, error=kind, retry_after=settle_s
        )
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return NoAnswerError(message, url=url, error=kind)
    return TransientError(message, url=url, error=kind)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, UnavailableError | OutcomeUnknownError)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: _Rng | None = None,
    clock: Callable[[], float] = time.monotonic,
    what: str = "request",
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Call ``fn`` under ``policy``; retry :class:`TransientError` (except :class:`OutcomeUnknownError`).

    A ``requests.RequestException`` escaping ``fn`` is classified as idempotent first. Any other
    exception propagates at once.

    Args:
        fn: the attempt; raise :class:`TransientError` to ask for a retry.
        policy: attempts, backoff and deadline.
        sleep: called with each delay in seconds (inject a recorder in tests).
        rng: jitter source; ``random.Random()`` by default.
        clock: monotonic seconds, for the deadline.
        what: a short label for the exhaustion message (``"GET Document_X"``).
        on_retry: called as ``on_retry(attempt, delay, error)`` before each sleep (logging).

    Returns:
        ``fn``'s result.

    Raises:
        UnavailableError: attempts or deadline exhausted; ``__cause__`` and ``fields['cause']`` hold
            the last error, ``fields['attempts']`` the number of attempts.
    """
    started = clock()

    def attempt() -> T:
        try:
            return fn()
        except requests.RequestException as exc:
            raise classify_exception(exc) from exc

    # The first attempt runs bare: nearly every call succeeds at once, and building the retrier
    # (tenacity's state, a seeded ``Random``) cost more than a loopback request's own Python. A
    # retryable failure hands over to the retrier, whose first attempt re-raises that very failure
    # (no second call), so attempts, waits, the deadline and ``on_retry`` are exactly as before.
    try:
        return attempt()
    except Exception as exc:
        if not _is_retryable(exc):
            raise
        first: list[BaseException] = [exc]

    def again() -> T:
        if first:
            raise first.pop()
        return attempt()

    jitter = rng if rng is not None else random.Random()

    def wait(state: tenacity.RetryCallState) -> float:
        assert state.outcome is not None
        error = state.outcome.exception()
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), policy.cap_s))
        return backoff_delay(state.attempt_number, policy.base_s, policy.cap_s, jitter)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        if policy.deadline_s is None:
            return False
        return clock() - started + state.upcoming_sleep > policy.deadline_s

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            assert error is not None
            on_retry(state.attempt_number, state.upcoming_sleep, error)

    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        return retryer(again)
    except tenacity.RetryError as gave_up:
        last = gave_up.last_attempt.exception()
        attempts = gave_up.last_attempt.attempt_number
        raise UnavailableError(
            f"{what} failed after {attempts} attempt(s): {last}",
            attempts=attempts,
            cause=last,
            status=getattr(last, "fields", {}).get("status"),
        ) from last


def retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: _Rng | None = None,
    clock: Callable[[], float] = time.monotonic,
    what: str | None = None,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of :func:`call_with_retry`: every call of the wrapped function is retried.

    Example::

        @retrying(RetryPolicy(max_attempts=3), sleep=fake_sleep)
        def deliver(payload: bytes) -> None: ...
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        label: str = what or str(getattr(fn, "__qualname__", "call"))

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retry(
                lambda: fn(*args, **kwargs),
                policy,
                sleep=sleep,
                rng=rng,
                clock=clock,
                what=label,
                on_retry=on_retry,
            )

        return wrapper

    return decorate


class _BasicAuthUTF8(AuthBase):
    """HTTP Basic with credentials encoded as UTF-8 bytes (1C logins are often Cyrillic)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        # requests' HTTPBasicAuth encodes str as latin-1: "Администратор" raises or garbles.
        token = base64.b64encode(self.username.encode("utf-8") + b":" + self.password.encode("utf-8"))
        r.headers["Authorization"] = "Basic " + token.decode("ascii")
        return r

    def __repr__(self) -> str:  # never leak the password into logs
        return f"<BasicAuthUTF8 user={self.username!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _BasicAuthUTF8)
            and self.username == other.username
            and self.password == other.password
        )

    __hash__ = None  # type: ignore[assignment]


def basic_auth_utf8(username: str, password: str) -> AuthBase:
    """A ``requests`` auth sending ``Authorization: Basic base64(utf8(user:password))``."""
    return _BasicAuthUTF8(username, password)


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that always passes an explicit ``(connect, read)`` timeout.

    ``tls_hint``, when set, replaces the long message of an ``SSLError`` that refused the peer's
    certificate by why it was refused and what to do (the config key): the caller's classification
    carries it on into logs and reports.
    """

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT, tls_hint: str | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.tls_hint = tls_hint

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        if kwargs.get("verify") is None:  # else requests lets $REQUESTS_CA_BUNDLE override verify=False
            kwargs["verify"] = self.verify
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.exceptions.SSLError as exc:
            why = certificate_refused(exc)
            if self.tls_hint is None or why is None:
                raise
            where = urllib3.util.parse_url(str(url, "utf-8") if isinstance(url, bytes) else url)
            raise requests.exceptions.SSLError(
                f"certificate verify failed for {where.host}:{where.port or 443} ({why}): {self.tls_hint}",
                request=exc.request,
                response=exc.response,
            ) from exc


def make_session(
    *,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    auth: AuthBase | None = None,
    headers: Mapping[str, str] | None = None,
    user_agent: str = "onec-loyalty-bridge",
    verify: bool = True,
    tls_hint: str | None = None,
) -> TimeoutSession:
    """Build a session with an explicit timeout on every request and no automatic retries.

    Args:
        timeout: ``(connect, read)`` seconds, or one number used for both.
        auth: e.g. :func:`basic_auth_utf8`.
        headers: extra default headers.
        user_agent: the ``User-Agent`` header.
        verify: check the peer's HTTPS certificate (against ``$REQUESTS_CA_BUNDLE`` when set, else
            certifi's CAs); ``False`` turns the check off.
        tls_hint: what to do when the peer's certificate is refused (names the config key).

    Returns:
        A :class:`TimeoutSession`; retries belong to :func:`call_with_retry`, not to urllib3.
    """
    pair = (float(timeout), float(timeout)) if isinstance(timeout, int | float) else timeout
    session = TimeoutSession(pair, tls_hint)
    session.verify = verify
    # requests re-reads the proxy variables (and .netrc) from the environment on every call, ~1 ms
    # each. Without any proxy configured that is pure overhead; with one, keep requests' own
    # handling (it honours NO_PROXY per URL).
    if not urllib.request.getproxies():
        session.trust_env = False
        # ... but the CA bundle requests would have found there still counts (read once, here):
        # it is how a peer whose certificate a private CA signed is trusted with the check on.
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if verify and bundle:
            session.verify = bundle
    session.auth = auth
    session.headers["User-Agent"] = user_agent
    if headers:
        session.headers.update(headers)
    return session
