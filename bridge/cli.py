"""Command line: parse arguments, call service/runtime, map exceptions to exit codes.

Exit status (sysexits, CONTRACT.md): 0 success; 1 a cycle finished with some documents failed;
2 bad usage; 78 bad config or mapping (nothing done); 69 1C / site / database unreachable or
unusable (e.g. state files this user cannot write).
Errors go to stderr, one line each, naming the key / document / field and what to do.
The shared helpers are in ``bridge.cli_kit``; ``outbox`` and ``quarantine`` in ``bridge.cli_queues``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from bridge.cli_kit import (
    EX_CONFIG,
    EX_DOCS_FAILED,
    EX_UNAVAILABLE,
    F,
    config_option,
    fail,
    guarded,
    now_option,
    parse_now,
)
from bridge.cli_queues import outbox, quarantine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onec-loyalty-bridge")
def main() -> None:
    """onec-loyalty-bridge: bonus points and level discounts for 1C:Trade Management 11."""


def _logging(config: Any) -> None:
    from bridge.runtime.logging import config_secrets, configure_logging

    configure_logging(config.log.level, config.log.format, secrets=config_secrets(config))


def _summary(result: Any) -> str:
    """One line: documents, 1C writes, and per channel what went out, what waits for a retry and
    what was given up on (dead: `outbox` lists them, `outbox retry` re-sends)."""
    deliveries = ", ".join(
        f"{name} {d.sent} sent"
        + (f", {d.retried} to retry" if d.retried else "")
        + (f", {d.dead} dead" if d.dead else "")
        for name, d in result.deliveries.items()
        if d.sent or d.retried or d.dead
    )
    dead = any(d.dead for d in result.deliveries.values())
    return (
        f"cycle done: {result.documents_processed} documents applied, {result.documents_failed} failed, "
        f"{result.writes_to_1c} writes to 1C ({result.requests_to_1c} requests)"
        + (f"; {deliveries}" if deliveries else "")
        + (" (dead messages: see `loyalty-bridge outbox`)" if dead else "")
        + (f"; {result.pruned} old delivered messages pruned" if result.pruned else "")
        + ("; stopped early" if result.stopped else "")
    )


def wait_option(func: F) -> F:
    return click.option(
        "--wait",
        "wait_s",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for another running instance (the daemon) to let go.",
    )(func)


@contextmanager
def sole_instance(config: Any, wait_s: float) -> Iterator[None]:
    """Hold the leader lock (docs/readme/instances.md) for a one-shot command, or exit 69."""
    from bridge.store.leader import acquire, leader_lock

    lock = leader_lock(config.state.url)
    try:
        if not acquire(lock, wait_s):
            fail(
                f"another instance is running ({lock.holder() or 'holder unknown'}); "
                f"stop it first (systemctl stop loyalty-bridge) or wait longer (--wait)",
                EX_UNAVAILABLE,
            )
        yield
    finally:
        lock.release()


def _one_cycle(config: Any, wait_s: float, make_runner: Callable[[], Any]) -> None:
    """Run one cycle as the sole instance, print its summary, exit 1 naming each failure: a quarantined
    document, or one not applied this cycle through 1C's fault (tried again next cycle). Exit 69
    (after those lines) when the site could not be reached at all (``site_unreachable_line``)."""
    from bridge.runtime.signals import StopToken, install

    with sole_instance(config, wait_s):
        runner = make_runner()
        token = StopToken()
        uninstall = install(token)
        try:
            stats = runner(token)
        finally:
            uninstall()
    result = runner.last
    assert result is not None
    click.echo(_summary(result))
    lines = failure_lines(result)
    site = result.deliveries.get("webhook")
    if site is not None and site.unreachable:
        queued = stats.outbox_depth.get("webhook", 0)
        fail([*lines, site_unreachable_line(site, queued)], EX_UNAVAILABLE)
    if lines:
        fail(lines, EX_DOCS_FAILED)


def site_unreachable_line(site: Any, queued: int) -> str:
    """What a one-shot command says when not one webhook got an answer (refused, timed out, name
    not resolved); ``queued`` webhooks are pending. An HTTP error status is the site's answer, and
    SMS / e-mail gateways are not the site: those leave the exit status alone and are retried like
    any failure (``outbox`` lists them)."""
    kept = f"{queued} webhook message(s) stay queued and go out with the next run"
    if site.dead:
        kept += f"; {site.dead} past site.max_retry_hours are dead (re-send: outbox retry --all-dead)"
    return f"site unreachable, check site.webhook_url: {site.unanswered_error}; {kept}"


def failure_lines(result: Any) -> list[str]:
    """What ``once`` prints for a cycle's failures: a document quarantined (it stays out until it
    changes or is released), or one not applied through 1C's fault (tried again next cycle)."""
    held = set(result.held)
    return [
        f"{'failed, tried again next cycle' if line in held else 'quarantined'}: {line}"
        for line in result.failures
    ]


@main.command()
@config_option
@now_option
@wait_option
@guarded
def once(config_path: Path | None, now_text: str | None, wait_s: float) -> None:
    """Exactly one full cycle: read changes, apply rules, write back, deliver; then exit."""
    from bridge.service.runner import CycleRunner
    from bridge.service.wiring import load

    config = load(config_path)
    _logging(config)
    now = parse_now(now_text, config.tz) if now_text else None
    from bridge.service.golive import poll_start_warning

    warning = poll_start_warning(config, now or parse_now(None, config.tz))
    if warning:
        click.echo(f"loyalty-bridge: warning: {warning}", err=True)
    _one_cycle(config, wait_s, lambda: CycleRunner(config, now=now))


@main.command()
@config_option
@guarded
def run(config_path: Path | None) -> None:
    """The daemon: poll forever on poll.interval_s; SIGTERM/SIGINT stop it after the unit in hand.

    Several may run on one state database: only the leader-lock holder works, the others stand by.
    """
    from bridge.runtime.daemon import serve
    from bridge.service.runner import CycleRunner
    from bridge.service.wiring import load
    from bridge.store.leader import leader_lock

    config = load(config_path)
    _logging(config)
    lock = leader_lock(config.state.url)
    try:
        runner = CycleRunner(config, leader=lock)
        code = serve(runner, interval_s=config.poll.interval_s, listen=config.http.address)
    finally:
        lock.release()
    sys.exit(code)


@main.command()
@config_option
@guarded
def check(config_path: Path | None) -> None:
    """Validate config and mapping, verify 1C's $metadata and the state database; print a report."""
    from bridge.service.check import format_report, run_check
    from bridge.service.wiring import load

    config = load(config_path)
    report = run_check(config)
    click.echo(format_report(report))
    if report.exit_code:
        for line in report.problems:
            click.echo(f"loyalty-bridge: check: {line}", err=True)
        sys.exit(report.exit_code)


@main.command()
@click.option("--from", "since_text", required=True, metavar="DATE", help="First document date (ISO-8601).")
@config_option
@now_option
@wait_option
@guarded
def backfill(since_text: str, config_path: Path | None, now_text: str | None, wait_s: float) -> None:
    """Import orders and returns since DATE as history: close time = document date, nothing sent
    to the site or customers (1C is written)."""
    from bridge.service.runner import BackfillSource, CycleRunner
    from bridge.service.wiring import load

    config = load(config_path)
    _logging(config)
    try:
        since = datetime.fromisoformat(since_text)
    except ValueError:
        raise click.BadParameter(f"{since_text!r} is not an ISO-8601 date", param_hint="--from") from None
    since = since if since.tzinfo else since.replace(tzinfo=config.tz)
    now = parse_now(now_text, config.tz) if now_text else None
    _one_cycle(
        config,
        wait_s,
        lambda: CycleRunner(config, now=now, history=True, source=BackfillSource(config, since)),
    )


@main.group()
def db() -> None:
    """The state database."""


@db.command("upgrade")
@config_option
@guarded
def db_upgrade(config_path: Path | None) -> None:
    """Create or migrate the state database (state.url)."""
    from bridge.service.wiring import load, open_database
    from bridge.store.db import upgrade

    config = load(config_path, secrets=False)
    engine = open_database(config, require_migrated=False)
    revision = upgrade(engine)
    click.echo(f"state database at revision {revision}: {engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.argument("who")
@config_option
@now_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def customer(who: str, config_path: Path | None, now_text: str | None, as_json: bool) -> None:
    """A customer's loyalty state, by 1C partner Ref_Key or card number."""
    from bridge.service.report import customer_report, customer_report_json
    from bridge.service.wiring import build_engine, load

    config = load(config_path, secrets=False)
    engine = build_engine(config)
    now = parse_now(now_text, config.tz)
    customer_id = engine.resolve_customer(who)
    if customer_id is None:
        fail(
            f"customer {who!r}: no such partner Ref_Key or card number in the state database", EX_DOCS_FAILED
        )
        return
    book = engine.book(customer_id)
    if as_json:
        click.echo(
            json.dumps(customer_report_json(book, engine.rules, now, config.tz), ensure_ascii=False, indent=2)
        )
    else:
        click.echo(customer_report(book, engine.rules, now, config.tz))


@main.command()
@click.argument("who", nargs=-1, metavar="[ID-or-card]...")
@click.option("--all", "everyone", is_flag=True, help="Every customer in the state database.")
@config_option
@now_option
@guarded
def resync(who: tuple[str, ...], everyone: bool, config_path: Path | None, now_text: str | None) -> None:
    """Send customers' current state again: a snapshot to the site, the partner's fields to 1C.

    For a site that lost its data, or one set up after the bridge; queued in the outbox, they go
    out with the next cycle. The snapshots carry no reason (nothing happened) and notify nobody.
    """
    from bridge.service.wiring import composed_engine, load

    if bool(who) == everyone:
        raise click.UsageError("name customers (partner Ref_Key or card number) or pass --all")
    config = load(config_path, secrets=False)
    engine = composed_engine(config)
    if everyone:
        customers = engine.customer_ids()
    else:
        found = {name: engine.resolve_customer(name) for name in who}
        unknown = [name for name, customer_id in found.items() if customer_id is None]
        if unknown:
            fail(
                [
                    f"customer {name!r}: no such partner Ref_Key or card number in the state database"
                    for name in unknown
                ],
                EX_DOCS_FAILED,
            )
        customers = [customer_id for customer_id in found.values() if customer_id is not None]
    count = engine.resync(dict.fromkeys(customers), parse_now(now_text, config.tz))
    click.echo(f"{count} customer(s) queued: the snapshot and 1C's fields go out with the next cycle")


@main.command()
@click.argument("lines", nargs=-1, required=True, metavar="AMOUNT[:GROUP]...")
@config_option
@now_option
@click.option("--customer", "who", default=None, help="Quote at this customer's tier (Ref_Key or card).")
@click.option("--redeem", default="0", help="Points the customer would spend on the basket.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def quote(
    lines: tuple[str, ...],
    config_path: Path | None,
    now_text: str | None,
    who: str | None,
    redeem: str,
    as_json: bool,
) -> None:
    """Points a basket would earn per tier, e.g. `quote 14700:Одежда 500`."""
    from bridge.domain.accrual import quote as make_quote
    from bridge.domain.model import OrderLine
    from bridge.domain.tiers import tier_for
    from bridge.service.report import quote_report, quote_report_json
    from bridge.service.wiring import build_engine, load

    config = load(config_path, secrets=False)
    if not config.bonus_enabled:
        fail("config: bonus: the bonus program is not enabled, there is nothing to quote", EX_CONFIG)
    basket = []
    for i, item in enumerate(lines, start=1):
        amount_text, _, group = item.partition(":")
        try:
            amount = Decimal(amount_text)
        except InvalidOperation:
            raise click.BadParameter(f"{item!r}: expected AMOUNT[:GROUP], e.g. 14700:Одежда") from None
        basket.append(OrderLine(i, f"line{i}", Decimal(1), amount, amount, group=group or None))
    try:
        points = Decimal(redeem)
    except InvalidOperation:
        raise click.BadParameter(f"{redeem!r} is not a number", param_hint="--redeem") from None
    rules = config.bonus_rules(lines_net_of_points=False)
    tier = None
    if who is not None:
        engine = build_engine(config)
        customer_id = engine.resolve_customer(who)
        if customer_id is None:
            fail(
                f"customer {who!r}: no such partner Ref_Key or card number in the state database",
                EX_DOCS_FAILED,
            )
            return
        book = engine.book(customer_id)
        now = parse_now(now_text, config.tz)
        tier = tier_for(rules, book.volume_at(now, rules.volume_window_days))
    result = make_quote(rules, basket, points, tier)
    if as_json:
        click.echo(json.dumps(quote_report_json(result), ensure_ascii=False, indent=2))
    else:
        click.echo(quote_report(result))


@main.command()
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), default=None, help="Keep state here."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Play the demo with this config file's loyalty programs (bonus, discount, cards prefix, "
    "delivery_products) instead of the built-in example's; its 1C, state, site and notify settings "
    "and secrets are not used. No default: without it the built-in example runs.",
)
@guarded
def demo(keep: Path | None, config_path: Path | None) -> None:
    """Run the whole pipeline on built-in sample data and print what happened."""
    from bridge.service.demo import run_demo

    run_demo(keep, config_path)


main.add_command(outbox)
main.add_command(quarantine)

if __name__ == "__main__":
    main()
