"""bridge.net: classification, backoff, Retry-After, the retry loop, UTF-8 Basic auth, sessions."""

from __future__ import annotations

import base64
import os
import random
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import FatalHTTPError, TransientError, UnavailableError
from bridge.net import (
    DEFAULT_TIMEOUT,
    NoAnswerError,
    OutcomeUnknownError,
    RetryPolicy,
    backoff_delay,
    basic_auth_utf8,
    call_with_retry,
    certificate_refused,
    classify_exception,
    classify_status,
    is_connect_failure,
    make_session,
    parse_retry_after,
    retrying,
)


class MaxRng:
    """Jitter at its ceiling, so the delays are the exponential envelope."""

    def random(self) -> float:
        return 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


# ---------------------------------------------------------------- backoff


def test_backoff_envelope_doubles_then_caps() -> None:
    delays = [backoff_delay(n, 0.5, 4.0, MaxRng()) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 30.0, MaxRng()) == 30.0


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 1.0, MaxRng())


@given(st.integers(1, 200), st.floats(0, 10), st.floats(0, 100), st.integers(0, 2**32))
def test_backoff_full_jitter_stays_in_range(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt - 1, 62))


# ---------------------------------------------------------------- Retry-After


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (201, None),
        (204, None),
        (304, None),
        (400, FatalHTTPError),
        (401, FatalHTTPError),
        (403, FatalHTTPError),
        (404, FatalHTTPError),
        (405, FatalHTTPError),
        (408, TransientError),
        (409, FatalHTTPError),
        (412, FatalHTTPError),
        (429, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
    ],
)
def test_classify_status(status: int, kind: type | None) -> None:
    error = classify_status(status, url="http://1c/x", retry_after=3.0)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert error is not None and error.fields["status"] == status
    if isinstance(error, TransientError):
        assert error.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "unknown"), [(408, False), (429, False), (503, False), (500, True), (502, True), (504, True)]
)
def test_classify_status_non_idempotent(status: int, unknown: bool) -> None:
    error = classify_status(status, idempotent=False)
    assert isinstance(error, TransientError)
    assert isinstance(error, OutcomeUnknownError) is unknown


@pytest.mark.parametrize(
    ("exc", "kind", "connect"),
    [
        (requests.ConnectTimeout("connect timed out"), NoAnswerError, True),
        (requests.ReadTimeout("read timed out"), NoAnswerError, False),
        (
            requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")),
            NoAnswerError,
            False,
        ),
        (refused(), NoAnswerError, True),
        (requests.exceptions.ChunkedEncodingError("IncompleteRead"), TransientError, False),  # answered
        (requests.exceptions.InvalidURL("bad"), FatalHTTPError, False),
        (requests.exceptions.MissingSchema("no scheme"), FatalHTTPError, False),
    ],
)
def test_classify_exception(exc: requests.RequestException, kind: type, connect: bool) -> None:
    assert is_connect_failure(exc) is connect
    assert type(classify_exception(exc, url="u")) is kind
    after_send = classify_exception(exc, url="u", idempotent=False, settle_s=30.0)
    if issubclass(kind, TransientError):
        assert isinstance(after_send, OutcomeUnknownError) is (not connect)
        # A request that may still be running at the peer: look again no sooner than settle_s.
        assert after_send.retry_after == (None if connect else 30.0)  # type: ignore[union-attr]


# ---------------------------------------------------------------- the retry loop


def test_retries_until_success_with_backoff() -> None:
    clock = FakeClock()
    calls = iter([TransientError("a"), TransientError("b"), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=10.0, deadline_s=None)
    assert call_with_retry(fn, policy, sleep=clock.sleep, rng=MaxRng(), clock=clock) == "ok"
    assert clock.sleeps == [1.0, 2.0]


def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    calls = iter([TransientError("busy", retry_after=7.0), TransientError("busy", retry_after=3600.0), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=30.0, deadline_s=None)
    assert call_with_retry(fn, policy, sleep=clock.sleep, rng=MaxRng(), clock=clock) == "ok"
    assert clock.sleeps == [7.0, 30.0]


def test_exhaustion_raises_unavailable_with_last_cause() -> None:
    clock = FakeClock()
    errors = [TransientError(f"fail {i}", status=503) for i in range(3)]
    it = iter(errors)

    def fn() -> None:
        raise next(it)

    policy = RetryPolicy(max_attempts=3, base_s=0.5, cap_s=10.0, deadline_s=None)
    with pytest.raises(UnavailableError) as info:
        call_with_retry(fn, policy, sleep=clock.sleep, rng=MaxRng(), clock=clock, what="GET x")
    assert info.value.__cause__ is errors[-1]
    assert info.value.fields["cause"] is errors[-1]
    assert info.value.fields["attempts"] == 3
    assert info.value.fields["status"] == 503
    assert "GET x" in str(info.value)
    assert clock.sleeps == [0.5, 1.0]


def test_deadline_stops_before_the_sleep_that_would_cross_it() -> None:
    clock = FakeClock()

    def fn() -> None:
        raise TransientError("down")

    policy = RetryPolicy(max_attempts=100, base_s=4.0, cap_s=100.0, deadline_s=20.0)
    with pytest.raises(UnavailableError) as info:
        call_with_retry(fn, policy, sleep=clock.sleep, rng=MaxRng(), clock=clock)
    assert clock.sleeps == [4.0, 8.0]  # the next, 16 s, would end at 28 s > 20 s
    assert info.value.fields["attempts"] == 3


def test_first_failure_is_counted_once_when_handed_to_the_retrier() -> None:
    # The first attempt runs outside tenacity; the retrier re-raises its failure as its own first
    # attempt, without calling again: one attempt allowed means one call.
    clock = FakeClock()
    calls: list[int] = []
    reported: list[tuple[int, float]] = []

    def fn() -> None:
        calls.append(1)
        raise TransientError("down", status=503)

    with pytest.raises(UnavailableError) as info:
        call_with_retry(fn, RetryPolicy(max_attempts=1), sleep=clock.sleep, clock=clock)
    assert calls == [1] and clock.sleeps == [] and info.value.fields["attempts"] == 1

    calls.clear()
    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=10.0, deadline_s=None)
    with pytest.raises(UnavailableError) as info:
        call_with_retry(
            fn,
            policy,
            sleep=clock.sleep,
            rng=MaxRng(),
            clock=clock,
            on_retry=lambda n, delay, _e: reported.append((n, delay)),
        )
    assert calls == [1, 1, 1] and info.value.fields["attempts"] == 3
    assert reported == [(1, 1.0), (2, 2.0)]


@pytest.mark.parametrize(
    "error",
    [FatalHTTPError("no", status=400), OutcomeUnknownError("sent"), UnavailableError("gone"), KeyError("x")],
)
def test_non_retryable_errors_propagate_at_once(error: Exception) -> None:
    clock = FakeClock()
    calls = []

    def fn() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)) as info:
        call_with_retry(fn, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert info.value is error
    assert calls == [1] and clock.sleeps == []


def test_raw_requests_errors_are_classified_and_retried() -> None:
    clock = FakeClock()
    calls = iter([requests.ReadTimeout("slow"), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert call_with_retry(fn, RetryPolicy(), sleep=clock.sleep, rng=MaxRng(), clock=clock) == "ok"
    assert len(clock.sleeps) == 1


def test_decorator_retries_each_call_and_reports() -> None:
    clock = FakeClock()
    seen: list[tuple[int, float]] = []
    state = {"n": 0}

    @retrying(
        RetryPolicy(max_attempts=3, base_s=2.0, cap_s=5.0),
        sleep=clock.sleep,
        rng=MaxRng(),
        clock=clock,
        on_retry=lambda n, d, e: seen.append((n, d)),
    )
    def flaky(x: int) -> int:
        state["n"] += 1
        if state["n"] % 2:
            raise TransientError("odd")
        return x * 2

    assert flaky(2) == 4
    assert flaky(5) == 10
    assert seen == [(1, 2.0), (1, 2.0)]
    assert flaky.__name__ == "flaky"


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline_s=0)
    with pytest.raises(AttributeError):
        RetryPolicy().max_attempts = 2  # type: ignore[misc]


# ---------------------------------------------------------------- auth and sessions


@responses.activate
def test_basic_auth_utf8_exact_header_for_cyrillic_user() -> None:
    responses.get("http://1c/ib/x", body="ok")
    session = make_session(auth=basic_auth_utf8("Администратор", "пароль1"))
    session.get("http://1c/ib/x")
    header = responses.calls[0].request.headers["Authorization"]
    expected = "Basic " + base64.b64encode("Администратор:пароль1".encode()).decode("ascii")
    assert header == expected
    assert header == "Basic 0JDQtNC80LjQvdC40YHRgtGA0LDRgtC+0YA60L/QsNGA0L7Qu9GMMQ=="
    assert "пароль1" not in repr(session.auth)


def test_requests_own_basic_auth_breaks_cyrillic() -> None:
    """Why basic_auth_utf8 exists: requests would send latin-1 (or fail)."""
    from requests.auth import _basic_auth_str

    with pytest.raises(UnicodeEncodeError):
        _basic_auth_str("Администратор", "x")


@responses.activate
def test_session_always_passes_a_timeout() -> None:
    responses.get("http://1c/a", body="ok")
    session = make_session(timeout=(3.0, 30.0))
    session.get("http://1c/a")
    session.get("http://1c/a", timeout=(1.0, 2.0))
    sent = [call.request.req_kwargs["timeout"] for call in responses.calls]  # type: ignore[attr-defined]
    assert sent == [(3.0, 30.0), (1.0, 2.0)]
    assert make_session().default_timeout == DEFAULT_TIMEOUT
    assert make_session(timeout=5).default_timeout == (5.0, 5.0)


@responses.activate
def test_session_checks_certificates_as_told_and_honours_the_ca_bundle_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.lower().endswith("_proxy")] + ["CURL_CA_BUNDLE"]:
        monkeypatch.delenv(name, raising=False)  # no proxy: the session reads no environment per call
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    responses.get("https://1c/a", body="ok")

    def sent(session: requests.Session, **kwargs: Any) -> Any:
        session.get("https://1c/a", **kwargs)
        return responses.calls[-1].request.req_kwargs["verify"]  # type: ignore[attr-defined]

    assert sent(make_session()) is True
    assert sent(make_session(verify=False)) is False
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    trusting = make_session()
    assert trusting.trust_env is False and sent(trusting) == str(bundle)
    assert sent(make_session(verify=False)) is False  # the variable never turns a disabled check on
    assert sent(trusting, verify=False) is False


def test_certificate_refused_names_why() -> None:
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    refused.verify_message = "self-signed certificate"  # type: ignore[attr-defined]
    wrapped = requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(None, "/x", refused))  # type: ignore[arg-type]
    assert certificate_refused(wrapped) == "self-signed certificate"
    assert certificate_refused(requests.exceptions.SSLError("wrong version number")) is None
    assert certificate_refused(requests.exceptions.ConnectionError("refused")) is None
