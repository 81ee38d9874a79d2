"""``loyalty-bridge check``: is this installation ready to run, and if not, what must be done?

Owns :func:`run_check` (config → mapping → 1C ``$metadata`` → additional attributes → card kind →
change source → state database) and :func:`format_report` (✓/✗ lines grouped by area). Every
failed item says who must do what: the 1C administrator publishes an object in the OData content
or creates an additional attribute (name, type, object); the bridge's administrator fixes a config
or mapping key or runs ``db upgrade``. Nothing in 1C is written and no change is taken from a queue
(``SelectChanges``/``GetChanges`` are never called). ``CheckReport.unreachable`` (1C or the
database could not be reached) is told apart from ``problems`` (something is missing or wrong), so
the CLI can exit 69 or 78 (``CheckReport.exit_code``).

May import anything of the bridge (service layer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zeep
import zeep.exceptions
from sqlalchemy.engine import make_url

from bridge.errors import (
    BridgeError,
    ConfigError,
    ContractError,
    FatalHTTPError,
    OneCError,
    StateError,
    TransientError,
)
from bridge.net import RetryPolicy
from bridge.onec.mapping import REF_KEY, load_mapping, resolve_attributes
from bridge.onec.mapping import Mapping as OneCMapping
from bridge.onec.metadata import Metadata, parse_metadata
from bridge.onec.odata import ODataClient
from bridge.onec.writes import card_kind_key
from bridge.runtime.config import Config
from bridge.service.onec_clients import onec_client, soap_client

__all__ = [
    "CheckItem",
    "CheckReport",
    "format_report",
    "metadata_drift",
    "odata_client",
    "onec_name",
    "run_check",
]

EX_OK, EX_UNAVAILABLE, EX_CONFIG = 0, 69, 78
AREAS: tuple[str, ...] = ("Config", "Mapping", "1C connection", "1C metadata", "Additional attributes")
AREAS += ("Loyalty cards", "Change source", "State database")
ODATA_CONTENT = (
    "1C: Администрирование → Общие настройки → Интеграция с другими программами → "
    "Настройка стандартного интерфейса OData (the menu path may vary by release)"
)
SOAP_OPERATIONS = ("GetChanges", "ConfirmChanges", "GetOrder", "GetCustomer", "WriteOrderLoyalty")
_PREFIXES = dict(
    pair.split(":")
    for pair in "Document_:Документ Catalog_:Справочник ChartOfCharacteristicTypes_:ПланВидовХарактеристик "
    "InformationRegister_:РегистрСведений AccumulationRegister_:РегистрНакопления "
    "ExchangePlan_:ПланОбмена Enum_:Перечисление".split()
)
Kind = Literal["ok", "warning", "problem", "unreachable"]


@dataclass(frozen=True)
class CheckItem:
    """One line of the report: what was checked, and for a failure what to do."""

    area: str
    kind: Kind
    text: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """Nothing stops the bridge here (a warning does not: it runs, maybe not as meant)."""
        return self.kind in ("ok", "warning")

    def line(self) -> str:
        return f"{self.area}: {self.text}" + (f" — {self.fix}" if self.fix else "")


@dataclass
class CheckReport:
    """Everything ``check`` found. ``ok`` only when nothing failed."""

    items: list[CheckItem] = field(default_factory=list)

    def add(self, area: str, kind: Kind, text: str, fix: str = "") -> None:
        self.items.append(CheckItem(area, kind, text, fix))

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def unreachable(self) -> bool:
        """1C (OData or SOAP) or the state database could not be reached."""
        return any(i.kind == "unreachable" for i in self.items)

    @property
    def problems(self) -> list[str]:
        """One line per mismatch (missing object, field, attribute; bad config, mapping, database)."""
        return [i.line() for i in self.items if i.kind == "problem"]

    @property
    def exit_code(self) -> int:
        """0 ok; 78 when something must be fixed (even if something else was unreachable); 69."""
        if self.problems:
            return EX_CONFIG
        return EX_UNAVAILABLE if self.unreachable else EX_OK


def onec_name(entity_set: str) -> str:
    """``Document_ЗаказКлиента`` → ``Документ.ЗаказКлиента`` (the name in 1C's OData content list)."""
    for prefix, word in _PREFIXES.items():
        if entity_set.startswith(prefix):
            return f"{word}.{entity_set[len(prefix) :]}"
    return entity_set


def _publish(entity_set: str) -> str:
    return f"the 1C administrator publishes it — {ODATA_CONTENT}: mark «{onec_name(entity_set)}»"


def odata_client(
    config: Config, password: str | None = None, retry: RetryPolicy | None = None
) -> ODataClient:
    """An ODataClient for ``config.onec`` (on the one 1C session: TLS checked as configured)."""
    return onec_client(config, password=password, retry_policy=retry)


def run_check(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    client: ODataClient | None = None,
    exchange_plan: str | None = None,
    exchange_node: str | None = None,
) -> CheckReport:
    """Check everything the bridge needs; never raises for what it can report.

    Args:
        config: the loaded config (loading already reported config errors).
        environ: where to look up ``onec.password_env`` again (default: the value the config holds).
        client: an OData client to use instead of one built from the config.
        exchange_plan: for ``poll.changes: exchange_plan``, the plan's entity set instead of
            ``poll.exchange_plan``.
        exchange_node: the node's ``Ref_Key`` instead of ``poll.exchange_node``.
    """
    report = CheckReport()
    report.add("Config", "ok", f"{config.config_path} is valid (change source: {config.poll.changes})")
    mapping = _mapping(report, config)
    password = _password(config, environ)
    if mapping is not None:
        client = client or odata_client(config, password, RetryPolicy(max_attempts=3, deadline_s=30))
        metadata = _metadata(report, client, config)
        if metadata is not None:
            present = _contract(report, mapping, metadata)
            if mapping.attributes.entity_set in present:
                _attributes(report, client, mapping)
            if config.discount_enabled and mapping.cards.kinds.entity_set in present:
                _card_kind(report, client, mapping, config)
            if config.poll.changes == "exchange_plan":
                plan = exchange_plan or config.poll.exchange_plan
                node = exchange_node or config.poll.exchange_node
                _exchange_plan(report, client, metadata, plan, node)
    if config.poll.changes == "soap" or config.onec.soap.wsdl:
        _soap(report, config, password)
    _database(report, config)
    _go_live(report, config)
    report.items.sort(key=lambda i: AREAS.index(i.area) if i.area in AREAS else len(AREAS))
    return report


def format_report(report: CheckReport) -> str:
    """The report as text: areas in order, ✓/✗ lines, the fix under each failure, a summary."""
    lines: list[str] = []
    area = None
    for item in report.items:
        if item.area != area:
            area = item.area
            lines += ["", f"{area}"] if lines else [f"{area}"]
        mark = "!" if item.kind == "warning" else "✓" if item.ok else "✗"
        lines.append(f"  {mark} {item.text}")
        if item.fix:
            lines.append(f"      → {item.fix}")
    failed = [i for i in report.items if not i.ok]
    lines.append("")
    warned = [i for i in report.items if i.kind == "warning"]
    if not failed:
        lines.append("All checks passed: the bridge can run.")
        if warned:
            lines.append(f"Read the {len(warned)} warning(s) marked ! before its first cycle.")
    else:
        what = "unreachable" if report.unreachable and not report.problems else "to fix"
        lines.append(f"{len(failed)} item(s) {what}; the bridge will not start until they are resolved.")
    return "\n".join(lines)


# --- the steps ---------------------------------------------------------------------------------


def _password(config: Config, environ: Mapping[str, str] | None) -> str:
    if environ is not None and environ.get(config.onec.password_env, "").strip():
        return environ[config.onec.password_env].strip()
    return config.onec.password.get_secret_value()


def _mapping(report: CheckReport, config: Config) -> OneCMapping | None:
    try:
        mapping = load_mapping(config.mapping_path)
    except ConfigError as exc:
        for problem in exc.problems:
            report.add("Mapping", "problem", problem, "fix the mapping file (see docs: adapting the mapping)")
        return None
    report.add("Mapping", "ok", f"{config.mapping_path} is valid")
    return mapping


def _metadata(report: CheckReport, client: ODataClient, config: Config) -> Metadata | None:
    url = config.onec.odata_url
    try:
        metadata = parse_metadata(client.metadata())
    except TransientError as exc:
        # The client's message already says what to check when 1C did not answer at all (or its
        # certificate was refused): the fix line is added only for other failures (a timeout, 503).
        said = "check onec." in str(exc) or "verify_tls" in str(exc)
        fix = "check that the 1C server and its web server are running and onec.odata_url is right"
        report.add("1C connection", "unreachable", f"{url}: {exc}", "" if said else fix)
        return None
    except (FatalHTTPError, OneCError) as exc:
        status = getattr(exc, "status", None)
        if status == 401:
            fix = (
                f"1C refused the user «{config.onec.username}»: check onec.username and the password in "
                f"${config.onec.password_env}; the user needs the right to use the OData interface"
            )
        else:
            fix = (
                "check onec.odata_url (…/<infobase>/odata/standard.odata) and that the infobase is "
                "published on the web server with «Публиковать стандартный интерфейс OData» ticked"
            )
        report.add("1C connection", "problem", f"no usable OData at {url}: {exc}", fix)
        return None
    report.add("1C connection", "ok", f"{url}: $metadata read, {len(metadata.entity_sets)} objects published")
    return metadata


def metadata_drift(client: ODataClient, mapping: OneCMapping) -> list[str]:
    """What the mapping names and 1C's ``$metadata`` lacks *now*: the ✗ lines ``check`` prints
    under "1C metadata", each with its fix. For a running bridge whose reads 1C starts refusing
    (someone changed the OData content). Empty when nothing is missing, or when ``$metadata``
    cannot be read (then there is nothing to tell)."""
    try:
        metadata = parse_metadata(client.metadata())
    except BridgeError:
        return []
    report = CheckReport()
    _contract(report, mapping, metadata)
    return [i.text + (f" — {i.fix}" if i.fix else "") for i in report.items if i.kind == "problem"]


def _contract(report: CheckReport, mapping: OneCMapping, metadata: Metadata) -> set[str]:
    """Verify every (set, field) the mapping needs; returns the sets that are present."""
    required = mapping.required_metadata()
    missing = metadata.missing(required)
    gone_sets = {s for s, name in missing if name is None}
    bad_fields: dict[str, list[str]] = {}
    for entity_set, name in missing:
        if name is not None:
            bad_fields.setdefault(entity_set, []).append(name)
    for entity_set in dict.fromkeys(s for s, _ in required):
        needed = sum(1 for s, _ in required if s == entity_set)
        if entity_set in gone_sets:
            report.add(
                "1C metadata",
                "problem",
                f"{entity_set} is not published in 1C's OData"
                f" (mapping: {_keys_for_set(mapping, entity_set)})",
                _publish(entity_set),
            )
        elif entity_set not in bad_fields:
            report.add("1C metadata", "ok", f"{entity_set}: all {needed} fields the mapping names exist")
        for name in bad_fields.get(entity_set, []):
            keys = _keys_for_field(mapping, entity_set, name)
            report.add(
                "1C metadata",
                "problem",
                f"{entity_set} has no {'field' if '.' not in name else 'section field'} {name}"
                + (f" (mapping: {', '.join(keys)})" if keys else ""),
                "if this configuration names it differently, put its name at that mapping key "
                "(override in your own mapping file that extends ut11.yaml); if the field exists in 1C, "
                f"re-save «{onec_name(entity_set)}» in the OData content ({ODATA_CONTENT})",
            )
    return {s for s, _ in required if s not in gone_sets}


def _attributes(report: CheckReport, client: ODataClient, mapping: OneCMapping) -> None:
    chart = mapping.attributes
    wanted = mapping.attribute_descriptions()
    if not wanted:
        return
    select = [REF_KEY, chart.description_field, chart.title_field, chart.deletion_mark_field]
    try:
        rows = list(client.iter_all(chart.entity_set, select=[s for s in select if s]))
    except TransientError as exc:
        report.add("Additional attributes", "unreachable", f"cannot read {chart.entity_set}: {exc}")
        return
    except BridgeError as exc:
        report.add("Additional attributes", "problem", f"cannot read {chart.entity_set}: {exc}")
        return
    try:
        resolve_attributes(mapping, rows)
        failed: list[str] = []
    except ContractError as exc:
        failed = exc.missing
    targets = {(o, t.attribute): t for o, _, t in mapping.attribute_targets() if t.attribute}
    for obj, names in wanted.items():
        title = getattr(mapping, obj).title
        found = 0
        for name in names:
            lines = [line for line in failed if f"«{name}»" in line]
            if not lines:
                found += 1
                continue
            text = f"«{name}» ({targets[(obj, name)].type}) of {title} is missing or ambiguous"
            report.add("Additional attributes", "problem", text, lines[0])
        if found:
            report.add("Additional attributes", "ok", f"{found} of {len(names)} attributes of {title} found")


def _card_kind(report: CheckReport, client: ODataClient, mapping: OneCMapping, config: Config) -> None:
    kinds = mapping.cards.kinds
    try:
        rows = list(client.iter_all(kinds.entity_set, select=[REF_KEY, kinds.name_field]))
        card_kind_key(rows, mapping, config.cards.kind)
    except TransientError as exc:
        report.add("Loyalty cards", "unreachable", f"cannot read {kinds.entity_set}: {exc}")
    except ConfigError as exc:
        fix = (
            f"set cards.kind to one of the kinds listed, or have the 1C administrator create the kind "
            f"«{config.cards.kind}» («{onec_name(kinds.entity_set)}»)"
            if config.cards.kind
            else "set cards.kind to the kind to use"
        )
        report.add("Loyalty cards", "problem", exc.problems[0], fix)
    except BridgeError as exc:
        report.add("Loyalty cards", "problem", f"cannot read {kinds.entity_set}: {exc}")
    else:
        report.add("Loyalty cards", "ok", f"card kind «{config.cards.kind or 'the only one'}» exists")


def _exchange_plan(
    report: CheckReport, client: ODataClient, metadata: Metadata, plan: str | None, node: str | None
) -> None:
    area = "Change source"
    functions = {"SelectChanges", "NotifyChangesReceived"} - metadata.functions
    if functions:
        report.add(
            area,
            "problem",
            f"1C's OData lacks {', '.join(sorted(functions))}",
            "the exchange-plan functions need platform 8.3.14 or later; or use poll.changes: scan",
        )
    if not plan or not node:
        plans = sorted(s for s in metadata.entity_sets if s.startswith("ExchangePlan_"))
        try:
            hint = ", ".join(_nodes(client, plans)) or "no exchange plan is published"
        except BridgeError:
            hint = ", ".join(plans)
        report.add(
            area,
            "problem",
            "poll.changes is exchange_plan but no exchange-plan node is configured",
            "name the plan and the node's Ref_Key (poll.exchange_plan, poll.exchange_node); "
            f"published: {hint}",
        )
        return
    if plan not in metadata:
        return report.add(area, "problem", f"{plan} is not published in 1C's OData", _publish(plan))
    try:
        row = client.get_entity(plan, node, select=[REF_KEY, "Description"])
    except TransientError as exc:
        report.add(area, "unreachable", f"cannot read {plan}: {exc}")
        return
    except (BridgeError, ValueError) as exc:
        report.add(area, "problem", f"cannot read node {node} of {plan}: {exc}", "check poll.exchange_node")
        return
    if row is not None:
        return report.add(area, "ok", f"exchange plan {plan}: node «{row.get('Description') or node}» exists")
    fix = f"the 1C administrator creates the node in «{onec_name(plan)}», or fix poll.exchange_node"
    report.add(area, "problem", f"{plan} has no node {node}", fix)


def _nodes(client: ODataClient, plans: list[str]) -> Iterator[str]:
    for plan in plans:
        rows = client.iter_all(plan, select=[REF_KEY, "Description"])
        yield from (f"{plan} «{row.get('Description')}» {row.get(REF_KEY)}" for row in rows)


def _soap(report: CheckReport, config: Config, password: str) -> None:
    area = "Change source"
    wsdl = config.wsdl_location
    if wsdl is None:
        return  # config validation already refused poll.changes: soap without a WSDL
    soap = soap_client(config, password)
    try:
        service = zeep.Client(wsdl, transport=soap.transport, settings=soap.settings)  # type: ignore[no-untyped-call]
        operations = _operations(service)
    except TransientError as exc:
        report.add(area, "unreachable", f"cannot load the WSDL {wsdl}: {exc}")
        return
    except (BridgeError, zeep.exceptions.Error, OSError, ValueError) as exc:
        report.add(
            area,
            "problem",
            f"the WSDL {wsdl} is unusable: {exc}",
            "check onec.soap.wsdl; the 1C extension publishes …/ws/LoyaltyBridge.1cws?wsdl (docs: SOAP)",
        )
        return
    absent = [op for op in SOAP_OPERATIONS if op not in operations]
    if absent:
        report.add(
            area,
            "problem",
            f"the web service lacks {', '.join(absent)}",
            "install the current LoyaltyBridge extension in 1C (docs/onec-extension.md)",
        )
    else:
        report.add(area, "ok", f"web service {wsdl}: {len(SOAP_OPERATIONS)} operations found (none called)")


def _operations(client: Any) -> set[str]:
    names: set[str] = set()
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            names.update(port.binding._operations)
    return names


def _go_live(report: CheckReport, config: Config) -> None:
    from datetime import UTC, datetime

    from bridge.service.golive import FIX, poll_start_problem

    problem = poll_start_problem(config, datetime.now(UTC))
    if problem:
        report.add("Change source", "warning", problem, FIX)


def _database(report: CheckReport, config: Config) -> None:
    from bridge.store import access
    from bridge.store.db import current_revision, head_revision, make_engine

    area = "State database"
    url = make_url(config.state.url)
    shown = url.render_as_string(hide_password=True)
    upgrade = "run `loyalty-bridge db upgrade`"
    denied = access.unwritable(config.state.url)
    if denied:  # e.g. created by root: the service user could read it, but never write
        what, fix = access.describe(denied, config.state.url)
        report.add(area, "problem", f"state database files {what}", fix)
        return
    rooted = access.owned_by_root(config.state.url)
    if rooted and os.geteuid() == 0:  # root writes anything: say what the service user will meet
        report.add(
            area,
            "warning",
            f"checked as root, and root owns {', '.join(map(str, rooted))}: a service running as "
            "another user (User=loyalty-bridge) cannot write them",
            "run check as the service user (README: as_bridge check); it names the chown to run",
        )
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database or "").expanduser().exists():  # connecting would create it empty
            report.add(area, "problem", f"{shown} does not exist yet", upgrade)
            return
    try:
        engine = make_engine(config.state.url)
    except StateError as exc:
        report.add(area, "problem", str(exc), "fix state.url")
        return
    try:
        current = current_revision(engine)
    except StateError as exc:
        report.add(area, "unreachable", f"cannot open {shown}: {exc}", "check that the database server is up")
        return
    finally:
        engine.dispose()
    head = head_revision()
    if current is None:
        report.add(area, "problem", f"{shown} is empty (no schema)", upgrade)
    elif current != head:
        report.add(area, "problem", f"{shown} is at revision {current}, this bridge needs {head}", upgrade)
    else:
        report.add(area, "ok", f"{shown} is at the current revision ({head})")


# --- which mapping keys name a set or a field ----------------------------------------------------------


def _walk(data: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    else:
        yield path, data


def _keys_for_set(mapping: OneCMapping, entity_set: str) -> str:
    paths = [p for p, v in _walk(mapping.model_dump()) if v == entity_set]
    return ", ".join(paths) or entity_set


_PREFIX = {
    "card_kinds": "cards.kinds",
    "vat_rates": "orders.lines.vat_rate",
    "categories": "products.categories",
}


def _keys_for_field(mapping: OneCMapping, entity_set: str, name: str) -> list[str]:
    leaf = name.rpartition(".")[2]
    stem = leaf.removesuffix("_Type")
    objects = [o for o, s in mapping.entity_sets().items() if s == entity_set]
    prefixes = (*(f"{_PREFIX.get(o, o)}." for o in objects), "attributes.")
    found = [p for p, v in _walk(mapping.model_dump()) if v in (leaf, stem) and p.startswith(prefixes)]
    return found[:3]
