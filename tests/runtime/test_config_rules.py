"""Validation rules of the config: each bad value is reported under its key path with what to do."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.config_kit import DELETE, edit, load, minimal, problems

# (key path, bad value, the one problem expected: it starts with "<path>: " and contains the text)
BAD_VALUES: list[tuple[str, Any, str, str]] = [
    # unknown keys, with the closest valid key suggested
    ("bonus.hold_dayz", 14, "bonus.hold_dayz", "unknown key (did you mean bonus.hold_days?)"),
    ("timezon", "Europe/Moscow", "timezon", "did you mean timezone?"),
    ("notify.email.frm", "a@b.ru", "notify.email.frm", "did you mean notify.email.from?"),
    ("bonus.tiers[0].treshold", 0, "bonus.tiers[0].treshold", "did you mean bonus.tiers[0].threshold?"),
    ("poll.zzz", 1, "poll.zzz", "unknown key; remove it (valid keys here: interval_s, start"),
    # wrong types
    ("onec.page_size", "many", "onec.page_size", "must be a whole number (got 'many')"),
    ("bonus.hold_days", Decimal("14.5"), "bonus.hold_days", "must be a whole number"),
    ("bonus.enabled", "maybe", "bonus.enabled", "must be true or false"),
    ("bonus.tiers", "gold", "bonus.tiers", "must be a list"),
    ("state", 5, "state", "must be a mapping of keys"),
    ("bonus.point_value", "a lot", "bonus.point_value", "must be a number"),
    ("onec.username", 42, "onec.username", "must be text (got 42); put the value in quotes"),
    ("poll.changes", "push", "poll.changes", "must be one of 'scan', 'exchange_plan' or 'soap'"),
    ("log.format", "xml", "log.format", "must be one of 'json' or 'console'"),
    ("onec.verify_tls", "sometimes", "onec.verify_tls", "must be true or false"),
    # required keys
    ("onec.odata_url", DELETE, "onec.odata_url", "required key is missing"),
    ("timezone", DELETE, "timezone", "required key is missing"),
    ("bonus.tiers[0].rate", DELETE, "bonus.tiers[0].rate", "required key is missing"),
    # tiers and levels
    ("bonus.tiers[1].threshold", 0, "bonus.tiers[1].threshold", "thresholds must ascend (0 after 0)"),
    ("bonus.tiers[0].threshold", 100, "bonus.tiers[0].threshold", "the first tier starts at 100, not 0"),
    ("bonus.tiers[1].rate", Decimal("1.5"), "bonus.tiers[1].rate", "1.5 is outside [0, 1]"),
    ("bonus.tiers[1].rate", Decimal("-0.01"), "bonus.tiers[1].rate", "-0.01 is outside [0, 1]"),
    ("bonus.tiers[1].code", "silver", "bonus.tiers[1].code", "duplicate code 'silver' (also bonus.tiers[0])"),
    ("bonus.tiers[1].code", "зол", "bonus.tiers[1].code", "is not a code"),
    ("bonus.tiers[1].code", "g" * 65, "bonus.tiers[1].code", "is 65 characters long; a code has at most 64"),
    ("discount.levels[1].code", "l" * 80, "discount.levels[1].code", "a code has at most 64"),
    ("bonus.tiers[1].name", "  ", "bonus.tiers[1].name", "must not be empty"),
    ("bonus.tiers", [], "bonus.tiers", "the bonus program is enabled but has no tiers"),
    ("bonus.tiers[1].threshold", -5, "bonus.tiers[1].threshold", "must be at least 0"),
    ("discount.levels[1].threshold", 0, "discount.levels[1].threshold", "thresholds must ascend"),
    ("discount.levels[0].threshold", 1, "discount.levels[0].threshold", "the first level starts at 1, not 0"),
    ("discount.levels[1].code", "base", "discount.levels[1].code", "duplicate code 'base'"),
    ("discount.levels[1].percent", 101, "discount.levels[1].percent", "101 is outside [0, 100]"),
    ("discount.levels[1].percent", -1, "discount.levels[1].percent", "-1 is outside [0, 100]"),
    ("discount.levels[1].term_days", 0, "discount.levels[1].term_days", "0 is not a positive number of days"),
    ("discount.levels[0].term_days", -5, "discount.levels[0].term_days", "-5 is not a positive number"),
    ("discount.levels[1].term_days", None, "discount.levels[1].term_days", "only the minimum (first) level"),
    ("discount.levels", [], "discount.levels", "the discount program is enabled but has no levels"),
    ("discount.period_days", 0, "discount.period_days", "must be greater than 0"),
    # bonus numbers
    ("bonus.max_redeem_share", 0, "bonus.max_redeem_share", "0 is outside (0, 1]"),
    ("bonus.max_redeem_share", Decimal("1.01"), "bonus.max_redeem_share", "1.01 is outside (0, 1]"),
    ("bonus.default_coefficient", Decimal("-0.5"), "bonus.default_coefficient", "-0.5 is negative"),
    ("bonus.groups", {"Одежда": -1}, "bonus.groups.Одежда", "-1 is negative"),
    ("bonus.groups", {"Детские товары": "x"}, 'bonus.groups["Детские товары"]', "must be a number"),
    ("bonus.groups", {5: 1}, "bonus.groups[5]", "the name must be text; put it in quotes"),
    ("bonus.point_value", 0, "bonus.point_value", "must be greater than 0"),
    ("bonus.point_precision", -1, "bonus.point_precision", "must be at least 0"),
    ("bonus.volume_window_days", 0, "bonus.volume_window_days", "must be greater than 0"),
    ("bonus.hold_days", 400, "bonus.hold_days", "points would expire (after 365 days) before"),
    ("bonus.expiry_warning_days", 365, "bonus.expiry_warning_days", "make it smaller than expiry_days"),
    # time zone, URLs, database
    ("timezone", "Europe/Moskva", "timezone", "'Europe/Moskva' is not a known time zone"),
    ("timezone", "MSK+3", "timezone", "is not a known time zone"),
    ("onec.odata_url", "ftp://1c.example/odata", "onec.odata_url", "is not an http(s) URL with a host"),
    ("onec.odata_url", "http://", "onec.odata_url", "is not an http(s) URL with a host"),
    ("onec.odata_url", "1c.example/odata", "onec.odata_url", "is not an http(s) URL with a host"),
    ("onec.odata_url", "http://1c.example:99999/x", "onec.odata_url", "is not a valid URL"),
    ("onec.odata_url", "http://bridge:pw@1c.example/x", "onec.odata_url", "contains a password"),
    ("site", {"webhook_url": "shop.example/hook"}, "site.webhook_url", "is not an http(s) URL"),
    ("notify.sms.url", "mailto:sms@x.ru", "notify.sms.url", "is not an http(s) URL"),
    ("onec.soap.wsdl", "ftp://1c/ws?wsdl", "onec.soap.wsdl", "is not an http(s) URL"),
    ("state.url", "mysql://bridge@db/loyalty", "state.url", "database 'mysql' is not supported"),
    ("state.url", "not a url", "state.url", "is not a database URL"),
    ("state.url", "postgresql+psycopg2://u@h/db", "state.url", "driver 'psycopg2' is not supported"),
    ("state.url", "postgresql+psycopg://u:secret@h/db", "state.url", "contains a password"),
    # cards, poll, http, log, misc
    ("cards.prefix", "29a0", "cards.prefix", "must be 1 to 11 digits"),
    ("cards.prefix", "123456789012", "cards.prefix", "must be 1 to 11 digits"),
    ("cards.prefix", "", "cards.prefix", "must be 1 to 11 digits"),
    ("cards.prefix", 2990, "cards.prefix", "must be text (got 2990); put the value in quotes"),
    ("poll.reconcile_at", "24:00", "poll.reconcile_at", "is not a time of day"),
    ("poll.reconcile_at", "3.30", "poll.reconcile_at", 'write it as "HH:MM" in quotes'),
    ("poll.start", "2026-13-01", "poll.start", "is not an ISO date or date-time"),
    ("poll.start", "soon", "poll.start", "is not an ISO date or date-time"),
    ("onec.page_size", 0, "onec.page_size", "must be at least 1"),
    ("onec.page_size", 5001, "onec.page_size", "must be at most 5000"),
    ("onec.write_workers", 0, "onec.write_workers", "must be at least 1"),
    ("onec.write_workers", 17, "onec.write_workers", "must be at most 16"),
    (
        "site",
        {"webhook_url": "https://shop.example/h", "webhook_workers": 0},
        "site.webhook_workers",
        "at least 1",
    ),
    ("poll.interval_s", 0, "poll.interval_s", "must be greater than 0"),
    ("poll.interval_s", -1, "poll.interval_s", "must be greater than 0"),
    ("poll.overlap_s", -1, "poll.overlap_s", "must be at least 0"),
    ("poll.backfill_window_days", 0, "poll.backfill_window_days", "must be greater than 0"),
    ("onec.timeout_s", 0, "onec.timeout_s", "must be greater than 0"),
    ("onec.url_budget", 100, "onec.url_budget", "must be at least 256"),
    ("onec.mapping", "mappings/missing.yaml", "onec.mapping", "missing.yaml does not exist"),
    ("http.listen", "localhost", "http.listen", "'localhost' is not host:port"),
    ("http.listen", "127.0.0.1:0", "http.listen", "is not host:port"),
    ("http.listen", "127.0.0.1:70000", "http.listen", "is not host:port"),
    ("http.listen", "bad host:80", "http.listen", "is not host:port"),
    ("http.listen", "0.0.0.0:9108", "http.listen", "0.0.0.0 is not a loopback address"),
    ("http.listen", "192.0.2.10:9108", "http.listen", "192.0.2.10 is not a loopback address"),
    ("log.level", "loud", "log.level", "must be one of 'debug', 'info', 'warning' or 'error'"),
    ("notify.sms.sender", "A-VERY-LONG-NAME", "notify.sms.sender", "at most 11 characters"),
    ("notify.email.smtp_port", 0, "notify.email.smtp_port", "must be at least 1"),
    ("notify.email.smtp_host", "smtp://x", "notify.email.smtp_host", "is not a host name"),
    ("delivery_products", ["Доставка", ""], "delivery_products[1]", "must not be empty"),
    ("poll.changes", "soap", "poll.changes", "onec.soap.wsdl is not set"),
]


@pytest.mark.parametrize(
    ("path", "value", "where", "text"), BAD_VALUES, ids=[f"{c[0]}={c[1]!r}" for c in BAD_VALUES]
)
def test_bad_value_is_reported_under_its_key_path(
    tmp_path: Path, path: str, value: Any, where: str, text: str
) -> None:
    found = problems(tmp_path, edit(minimal(), path, value))
    assert len(found) == 1, found
    assert found[0].startswith(f"{where}: "), found
    assert text in found[0]
    assert "; " in found[0].removeprefix(f"{where}: "), "every problem says what to do"


GOOD_VALUES: list[tuple[str, Any]] = [
    ("onec.page_size", 1),
    ("onec.page_size", 5000),
    ("onec.write_workers", 16),
    ("bonus.max_redeem_share", 1),
    ("bonus.max_redeem_share", Decimal("0.01")),
    ("bonus.tiers[1].rate", 0),
    ("bonus.tiers[1].rate", 1),
    ("bonus.default_coefficient", 0),
    ("bonus.groups", {"Распродажа": 0}),
    ("discount.levels[1].percent", 100),
    ("discount.levels[0].term_days", 30),
    ("cards.prefix", "29900000000"),
    ("cards.prefix", "0"),
    ("poll.reconcile_at", "00:00"),
    ("poll.reconcile_at", "23:59"),
    ("poll.start", "2026-01-01"),
    ("poll.start", "2026-01-01T00:00:00+03:00"),
    ("http.listen", "127.0.0.1:9108"),
    ("http.listen", "[::1]:9108"),
    ("http.listen", "localhost:9108"),
    ("state.url", "postgresql+psycopg://bridge@db.local/loyalty"),
    ("state.url", "postgresql://bridge@db.local/loyalty"),
    ("state.url", "sqlite://"),
    ("timezone", "Asia/Novosibirsk"),
    ("onec.odata_url", "https://1c.example:8443/ut11/odata/standard.odata"),
    ("onec.soap.wsdl", "http://1c.example/ut11/ws/loyalty.1cws?wsdl"),
    ("log.level", "DEBUG"),
    ("bonus.volume_window_days", 365),
    ("bonus.hold_days", 0),
    ("notify", None),
    ("notify.sms", None),
    ("onec.soap", None),
    ("bonus.groups", None),
]


@pytest.mark.parametrize(("path", "value"), GOOD_VALUES, ids=[f"{p}={v!r}" for p, v in GOOD_VALUES])
def test_boundary_values_are_accepted(tmp_path: Path, path: str, value: Any) -> None:
    load(tmp_path, edit(minimal(), path, value))


def test_unsorted_tiers_are_reported_even_when_another_tier_is_invalid(tmp_path: Path) -> None:
    data = minimal()
    data["bonus"]["tiers"] = [
        {"code": "silver", "name": "S", "threshold": 100, "rate": 2},
        {"code": "silver", "name": "G", "threshold": 50, "rate": Decimal("0.03")},
    ]
    found = problems(tmp_path, data)
    assert [p.split(":")[0] for p in found] == [
        "bonus.tiers[0].threshold",
        "bonus.tiers[0].rate",
        "bonus.tiers[1].code",
        "bonus.tiers[1].threshold",
    ]
    assert "thresholds must ascend (50 after 100); sort the tiers by threshold" in found[3]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    data = minimal()
    edit(data, "timezone", "Mars/Olympus")
    edit(data, "onec.page_size", 0)
    edit(data, "onec.password_env", "NO_SUCH_VAR")
    edit(data, "bonus.hold_dayz", 14)
    edit(data, "bonus.tiers[1].threshold", 0)
    edit(data, "discount.levels[1].percent", 500)
    edit(data, "cards.prefix", "abc")
    edit(data, "http.listen", "nowhere")
    found = problems(tmp_path, data)
    assert [p.split(":")[0] for p in found] == [
        "timezone",
        "onec.page_size",
        "onec.password_env",
        "bonus.tiers[1].threshold",
        "bonus.hold_dayz",  # written after the tiers
        "discount.levels[1].percent",
        "cards.prefix",
        "http.listen",
    ]


def test_duplicate_keys_are_reported_not_silently_overwritten(tmp_path: Path) -> None:
    text = (
        "timezone: Europe/Moscow\nstate: {url: 'sqlite://'}\n"
        "onec: {odata_url: 'http://1c/odata', username: b}\npoll: {start: 2026-01-01}\n"
        "discount:\n  period_days: 365\n  period_days: 30\n"
        "  levels: [{code: base, name: B, threshold: 0, percent: 0}]\n"
    )
    assert problems(tmp_path, text) == [
        "discount.period_days: duplicate key (line 7); "
        "keep only one of them — YAML would silently use the last"
    ]


def test_no_program_at_all_is_an_error(tmp_path: Path) -> None:
    data = minimal()
    del data["bonus"], data["discount"]
    assert problems(tmp_path, data) == [
        "bonus: neither the bonus nor the discount program is enabled; "
        "add a bonus: or discount: section (see config.example.yaml)"
    ]


def test_a_disabled_program_needs_no_tiers(tmp_path: Path) -> None:
    data = minimal()
    data["bonus"] = {"enabled": False}
    config = load(tmp_path, data)
    assert config.bonus is not None and not config.bonus_enabled and config.discount_enabled
