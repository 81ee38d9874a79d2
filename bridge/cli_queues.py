"""The ``outbox`` and ``quarantine`` commands: what waits to go out, and the documents the
bridge could not apply — listed, and put back in line.

Must not import bridge.service or bridge.store at module level (imported inside the commands).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bridge.cli_kit import EX_DOCS_FAILED, config_option, fail, guarded, now_option, parse_now


@click.group(invoke_without_command=True)
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also list sent and superseded messages.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def outbox(ctx: click.Context, config_path: Path | None, show_all: bool, as_json: bool) -> None:
    """List pending and dead outgoing messages (write-backs, webhooks, SMS, e-mail)."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.service.wiring import load, open_database
    from bridge.store import outbox as box

    config = load(config_path, secrets=False)
    engine = open_database(config)
    statuses = (box.PENDING, box.DEAD, box.SENT, box.SUPERSEDED) if show_all else (box.PENDING, box.DEAD)
    with engine.connect() as conn:
        messages = box.listing(conn, statuses)
    if as_json:
        rows = [
            {
                "id": m.id,
                "message_id": m.message_id,
                "channel": m.channel,
                "kind": m.kind,
                "customer_id": m.customer_id,
                "target": m.target,
                "sequence": m.sequence,
                "status": m.status,
                "attempts": m.attempts,
                "created_at": m.created_at.isoformat(),
                "next_attempt_at": m.next_attempt_at.isoformat(),
                "last_error": m.last_error,
            }
            for m in messages
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not messages:
        click.echo("outbox is empty: nothing pending, nothing dead")
        return
    for m in messages:
        when = m.next_attempt_at.astimezone(config.tz).strftime("%d.%m.%Y %H:%M")
        error = f"  error: {m.last_error}" if m.last_error else ""
        click.echo(
            f"{m.id:>6} {m.status:<10} {m.channel:<7} {m.kind:<16} customer={m.customer_id} "
            f"attempts={m.attempts} next={when} id={m.message_id}{error}"
        )


@outbox.command("retry")
@click.argument("message", required=False)
@click.option("--all-dead", is_flag=True, help="Re-send every dead message.")
@config_option
@now_option
@guarded
def outbox_retry(message: str | None, all_dead: bool, config_path: Path | None, now_text: str | None) -> None:
    """Put a dead message (by id or message id) or all dead messages back in line, same webhook-id."""
    from bridge.service.wiring import load, open_database
    from bridge.store import outbox as box

    if (message is None) == (not all_dead):
        raise click.UsageError("name one message (ID) or pass --all-dead")
    config = load(config_path, secrets=False)
    engine = open_database(config)
    with engine.begin() as conn:
        count = box.retry(conn, parse_now(now_text, config.tz), message, all_dead=all_dead)
    if count == 0 and all_dead:
        click.echo("nothing to retry: no dead messages")
        return
    if count == 0:
        fail(
            f"outbox: no dead message {message} to retry (`loyalty-bridge outbox` lists them)", EX_DOCS_FAILED
        )
    click.echo(f"{count} message(s) back in line; they go out with the next cycle")


@click.group(invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def quarantine(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """List the documents set aside because they could not be applied, each with its reason."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.service.wiring import load, open_database
    from bridge.store import tracking

    config = load(config_path, secrets=False)
    engine = open_database(config)
    with engine.connect() as conn:
        rows = tracking.quarantined(conn)
    if as_json:
        out = [
            {
                "doc_id": r["doc_id"],
                "kind": r["kind"],
                "number": r["number"],
                "version": r["version"],
                "field": r["field"],
                "reason": r["reason"],
                "failures": r["failures"],
                "first_failed_at": r["first_failed_at"].isoformat(),
                "last_failed_at": r["last_failed_at"].isoformat(),
            }
            for r in rows
        ]
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("quarantine is empty: every document read so far was applied")
        return
    for r in rows:
        since = r["first_failed_at"].astimezone(config.tz).strftime("%d.%m.%Y %H:%M")
        number = f"№ {r['number']} " if r["number"] else ""
        click.echo(
            f"{r['kind']} {number}({r['doc_id']}) since {since}, {r['failures']} time(s): {r['reason']}"
        )


@quarantine.command("retry")
@click.argument("documents", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every quarantined document.")
@config_option
@guarded
def quarantine_retry(documents: tuple[str, ...], everything: bool, config_path: Path | None) -> None:
    """Read quarantined documents (Ref_Key or number) again with the next cycle, e.g. after the
    mapping or config was fixed; a document fixed in 1C needs no retry (its new version is read)."""
    from bridge.service.wiring import load, open_database
    from bridge.store import tracking

    if bool(documents) == everything:
        raise click.UsageError("name the documents (Ref_Key or number) or pass --all")
    config = load(config_path, secrets=False)
    if config.poll.changes != "scan":
        fail(
            f"quarantine retry: with poll.changes: {config.poll.changes} the bridge reads what 1C "
            "registers as changed; re-save the document in 1C to have it read again",
            EX_DOCS_FAILED,
        )
    engine = open_database(config)
    with engine.begin() as conn:
        requeued, others = tracking.requeue_quarantined(conn, None if everything else set(documents))
    for doc in others:
        click.echo(
            f"{doc}: not a document the bridge re-checks every cycle; re-save it in 1C to have it read"
        )
    if not requeued and not others:
        fail(
            "quarantine: "
            + ("nothing is quarantined" if everything else f"no quarantined document {', '.join(documents)}")
            + " (`loyalty-bridge quarantine` lists them)",
            EX_DOCS_FAILED,
        )
    if requeued:
        click.echo(f"{len(requeued)} document(s) will be read again by the next cycle")
