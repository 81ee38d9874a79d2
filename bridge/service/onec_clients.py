"""The clients that talk to 1C, built from the config — one place for every command (``run``,
``once``, ``backfill``, ``check``…): the OData client and the ``LoyaltyBridge`` web-service client
share one session setup, with the config's timeouts and its check of 1C's certificate
(``onec.verify_tls``). A certificate the check refuses fails with an error naming that key.

Imports only the bridge's edges and the config: ``wiring`` and ``check`` both build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.net import TimeoutSession, make_session
from bridge.onec.odata import ODataClient
from bridge.runtime.config import Config

if TYPE_CHECKING:  # zeep is imported only by the commands that use the SOAP source
    from bridge.onec.soap import SoapClient

__all__ = ["ONEC_TLS_HINT", "onec_client", "onec_session", "soap_client"]

#: What to do when 1C's certificate is refused: appended to the TLS error wherever it is reported.
ONEC_TLS_HINT = (
    "1C's HTTPS certificate is not trusted: give its CA's PEM file in REQUESTS_CA_BUNDLE, "
    "or set onec.verify_tls: false (a trusted LAN only)"
)


def onec_session(config: Config) -> TimeoutSession:
    """A new session for talking to 1C: ``(connect, read)`` timeouts from ``onec.timeout_s``, 1C's
    certificate checked unless ``onec.verify_tls`` is false."""
    onec = config.onec
    return make_session(
        timeout=(min(float(onec.timeout_s), 10.0), float(onec.timeout_s)),
        verify=onec.verify_tls,
        tls_hint=ONEC_TLS_HINT,
    )


def onec_client(config: Config, *, password: str | None = None, **kwargs: Any) -> ODataClient:
    """The OData client for ``config.onec``; ``password`` replaces the config's, ``kwargs`` go to
    :class:`~bridge.onec.odata.ODataClient` (``retry_policy``…)."""
    onec = config.onec
    kwargs.setdefault("session", onec_session(config))
    return ODataClient(
        onec.odata_url,
        onec.username,
        onec.password.get_secret_value() if password is None else password,
        config.tz,
        timeout_s=float(onec.timeout_s),
        page_size=onec.page_size,
        url_budget=onec.url_budget,
        **kwargs,
    )


def soap_client(config: Config, password: str | None = None) -> SoapClient:
    """The ``LoyaltyBridge`` web-service client for ``onec.soap`` (``password`` as above)."""
    from bridge.onec.soap import SoapClient

    onec = config.onec
    return SoapClient(
        config.wsdl_location or "",
        onec.username,
        onec.password.get_secret_value() if password is None else password,
        address=onec.soap.address,
        timeout_s=float(onec.timeout_s),
        tz=config.tz,
        session=onec_session(config),
    )
