"""Prometheus metrics on their own registry, the health verdict, and the endpoint over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import prometheus_client
import pytest

from bridge.errors import ConfigError
from bridge.runtime.metrics import CycleStats, Metrics, MetricsServer, is_loopback

NAMES = (
    "loyalty_bridge_cycle_duration_seconds_bucket",
    "loyalty_bridge_cycles_total",
    "loyalty_bridge_documents_total",
    "loyalty_bridge_onec_requests_total",
    "loyalty_bridge_onec_writes_total",
    "loyalty_bridge_deliveries_total",
    "loyalty_bridge_outbox_depth",
    "loyalty_bridge_outbox_oldest_pending_age_seconds",
    "loyalty_bridge_outbox_dead",
    "loyalty_bridge_quarantined_documents",
    "loyalty_bridge_last_success_timestamp_seconds",
    "loyalty_bridge_last_cycle_timestamp_seconds",
    "loyalty_bridge_up",
    "loyalty_bridge_healthy",
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ok_stats(at: datetime = T0, **kw: object) -> CycleStats:
    return CycleStats(started_at=at - timedelta(seconds=2.5), finished_at=at, **kw)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_observe_feeds_every_metric_on_a_private_registry() -> None:
    metrics = Metrics(60, clock=Clock(T0.timestamp()))
    metrics.observe(
        ok_stats(
            documents_processed=3,
            documents_failed=1,
            quarantined=1,
            writes_to_1c=2,
            requests_to_1c=7,
            deliveries_sent=2,
            deliveries_failed=1,
            outbox_depth={"webhook": 4, "sms": 0},
            outbox_oldest_age_s={"webhook": 90.5, "sms": None},
            outbox_dead={"webhook": 2},
            quarantined_now=5,
        )
    )
    text = metrics.render().decode()
    for name in NAMES:
        assert name in text
    assert sample(metrics, "loyalty_bridge_documents_total", kind="processed") == 3
    assert sample(metrics, "loyalty_bridge_documents_total", kind="quarantined") == 1
    assert sample(metrics, "loyalty_bridge_onec_requests_total") == 7
    assert sample(metrics, "loyalty_bridge_deliveries_total", result="failed") == 1
    assert sample(metrics, "loyalty_bridge_outbox_depth", channel="webhook") == 4
    assert sample(metrics, "loyalty_bridge_outbox_oldest_pending_age_seconds", channel="webhook") == 90.5
    assert sample(metrics, "loyalty_bridge_outbox_oldest_pending_age_seconds", channel="sms") == 0
    assert sample(metrics, "loyalty_bridge_outbox_dead", channel="webhook") == 2
    assert sample(metrics, "loyalty_bridge_outbox_dead", channel="sms") == 0
    assert sample(metrics, "loyalty_bridge_quarantined_documents") == 5
    assert sample(metrics, "loyalty_bridge_cycle_duration_seconds_sum") == 2.5
    assert sample(metrics, "loyalty_bridge_last_success_timestamp_seconds") == T0.timestamp()
    assert sample(metrics, "loyalty_bridge_healthy") == 1
    # Not the process-global registry: a second instance (another test, the demo) does not collide.
    assert prometheus_client.REGISTRY.get_sample_value("loyalty_bridge_up") is None
    assert Metrics(60).render()


def test_a_channel_missing_from_the_next_report_reads_zero() -> None:
    metrics = Metrics(60)
    metrics.observe(ok_stats(outbox_depth={"email": 2}, outbox_oldest_age_s={"email": 30.0}))
    metrics.observe(ok_stats(outbox_depth={"webhook": 1}))
    assert sample(metrics, "loyalty_bridge_outbox_depth", channel="email") == 0
    assert sample(metrics, "loyalty_bridge_outbox_oldest_pending_age_seconds", channel="email") == 0
    assert sample(metrics, "loyalty_bridge_outbox_depth", channel="webhook") == 1


def test_health_starting_ok_stale() -> None:
    clock = Clock(T0.timestamp())
    metrics = Metrics(60, clock=clock)  # stale after 3 * 60 + 60 = 240 s
    ok, details = metrics.health()
    assert (ok, details["status"], details["last_success"]) == (True, "starting", None)
    clock.now += 241
    assert metrics.health()[0] is False
    metrics.observe(ok_stats(datetime.fromtimestamp(clock.now, UTC)))
    ok, details = metrics.health()
    assert ok and details["status"] == "ok" and details["age_s"] == 0
    metrics.observe(CycleStats.failure(T0, T0, "TransientError: 1C down"))
    clock.now += 200
    ok, details = metrics.health()
    assert ok and details["failures_in_row"] == 1 and details["last_error"] == "TransientError: 1C down"
    clock.now += 41
    ok, details = metrics.health()
    assert not ok and details["status"] == "stale" and details["age_s"] == 241
    assert sample(metrics, "loyalty_bridge_healthy") == 0


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_the_endpoint_over_real_http() -> None:
    clock = Clock(T0.timestamp())
    metrics = Metrics(10, clock=clock)
    metrics.observe(ok_stats(documents_processed=5))
    with MetricsServer(("127.0.0.1", 0), metrics) as server:
        base = "http://{}:{}".format(*server.address)
        status, ctype, body = get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        for name in NAMES:
            assert name in body
        status, ctype, body = get(base + "/healthz")
        assert status == 200 and ctype.startswith("application/json")
        details = json.loads(body)
        assert (
            details["status"] == "ok" and details["last_success"] == T0.isoformat() and details["age_s"] == 0
        )
        clock.now += 3 * 10 + 60 + 1
        status, _, body = get(base + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "stale"
        assert get(base + "/other")[0] == 404


def test_a_broken_probe_answers_503() -> None:
    def probe() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("db gone")

    with MetricsServer(("localhost", 0), Metrics(60), probe) as server:
        status, _, body = get(f"http://127.0.0.1:{server.address[1]}/healthz")
    assert status == 503 and "db gone" in body


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", ""])
def test_a_non_loopback_address_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MetricsServer((host, 0), Metrics(60))
    assert caught.value.problems[0].startswith("http.listen: ")
    assert "127.0.0.1" in caught.value.problems[0]


def test_a_non_loopback_address_binds_when_explicitly_allowed() -> None:
    server = MetricsServer(("0.0.0.0", 0), Metrics(60), allow_public=True)
    try:
        assert server.address[1] > 0
    finally:
        server.stop()


def test_a_busy_port_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            MetricsServer(("127.0.0.1", busy.getsockname()[1]), Metrics(60))


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = MetricsServer(("::1", 0), Metrics(60))
    except ConfigError:
        pytest.skip("::1 cannot be bound here")
    with server:
        assert get(f"http://[::1]:{server.address[1]}/metrics")[0] == 200


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("0.0.0.0") and not is_loopback("")


def test_dead_messages_and_quarantine_keep_their_last_count_through_a_failed_cycle() -> None:
    # A cycle that raised counted nothing: an alert on dead messages must not clear because 1C
    # went down; the next good cycle's count replaces them (here: retried, fixed).
    metrics = Metrics(60, clock=Clock(T0.timestamp()))
    metrics.observe(ok_stats(outbox_dead={"onec": 3}, quarantined_now=2))
    metrics.observe(CycleStats.failure(T0, T0 + timedelta(seconds=1), "1C unreachable"))
    assert sample(metrics, "loyalty_bridge_outbox_dead", channel="onec") == 3
    assert sample(metrics, "loyalty_bridge_quarantined_documents") == 2
    metrics.observe(ok_stats(T0 + timedelta(minutes=1), outbox_dead={}, quarantined_now=0))
    assert sample(metrics, "loyalty_bridge_outbox_dead", channel="onec") == 0
    assert sample(metrics, "loyalty_bridge_quarantined_documents") == 0
