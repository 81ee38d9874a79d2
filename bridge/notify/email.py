"""The e-mail channel: one SMTP session per message, plain text, UTF-8 subject and body.

Owns :class:`EmailSender`. The message is an :class:`email.message.EmailMessage`: the subject is
encoded per RFC 2047 (Cyrillic survives any server), the body is ``text/plain; charset=utf-8``, and
``Message-ID`` is built from the outbox ``message_id``, so a repeated send is recognisable as the same
letter. With ``starttls`` the session is upgraded before anything else is said (the server's
certificate is verified); a server that does not offer STARTTLS gets nothing, never a clear-text
fallback. With a ``username`` the sender logs in after STARTTLS.

How failures are classified (one attempt per call; the outbox schedules the retries):
- the message's own transaction (MAIL FROM, RCPT TO, DATA) answered 5xx, e.g. ``550 mailbox
  unavailable``: :class:`~bridge.notify.recipients.UndeliverableError` (a ``FatalHTTPError`` with
  ``status`` = the SMTP code): the message is dead at once — except the 5xx codes that blame the
  session (``530 Must issue a STARTTLS command first``, authentication required, bad sequence:
  :data:`SESSION_CODES`), which are transient like the session failures below;
- 4xx at any step, connection refused or reset, timeouts, TLS failures: ``TransientError``;
- the session itself refused (greeting, EHLO, STARTTLS missing, login rejected): ``TransientError``
  with what to fix in the config. These are the bridge's settings, not the message's fault: retrying
  lets every waiting message go out once the operator fixes them, instead of killing them all;
- a recipient that is not an e-mail address: ``UndeliverableError``, and nothing is sent.

The password never appears in logs, errors or ``repr``. Must not import bridge.onec, bridge.site,
bridge.store or bridge.service.
"""

from __future__ import annotations

import email.policy
import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

import structlog

from bridge.errors import FatalHTTPError, TransientError
from bridge.notify.recipients import Outgoing, UndeliverableError, check_email, mask

__all__ = ["EmailSender"]

log = structlog.get_logger(__name__)


class EmailSender:
    """Sends ``email`` outbox messages through an SMTP server.

    Args:
        host: ``notify.email.smtp_host``.
        port: ``notify.email.smtp_port`` (587 for submission with STARTTLS; 25 for a local relay).
        username: SMTP login, or None when the server needs none.
        password: the password for ``username`` (``notify.email.password``'s secret value).
        from_addr: the sender address (``notify.email.from``).
        starttls: upgrade the connection with STARTTLS before anything else (``notify.email.starttls``).
        timeout_s: seconds for connecting and for each server answer (``notify.email.timeout_s``).
        from_name: a display name for ``From`` (e.g. the shop's name), or None for the bare address.
        ssl_context: the TLS settings for STARTTLS; the system's trusted CAs by default.
        local_hostname: the name given in EHLO; the machine's FQDN by default.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        from_addr: str,
        starttls: bool,
        *,
        timeout_s: float,
        from_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password or ""
        self.from_addr = from_addr
        self.from_name = from_name
        self.starttls = starttls
        self.timeout_s = float(timeout_s)
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname

    def __repr__(self) -> str:
        return (
            f"EmailSender(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"starttls={self.starttls})"
        )

    def build(self, msg: Outgoing) -> EmailMessage:
        """The letter for one outbox message (raises ``UndeliverableError`` for an unusable payload)."""
        payload = msg.payload
        to = check_email(payload.get("to"), message_id=msg.message_id)
        subject, body = payload.get("subject"), payload.get("body")
        if not isinstance(subject, str) or not isinstance(body, str) or "\n" in subject or "\r" in subject:
            raise UndeliverableError(
                "e-mail message lacks a one-line subject or a body; the outbox payload is damaged",
                message_id=msg.message_id,
            )
        letter = EmailMessage(policy=email.policy.SMTP)
        letter["From"] = (
            email.utils.formataddr((self.from_name, self.from_addr)) if self.from_name else self.from_addr
        )
        letter["To"] = to
        letter["Subject"] = subject
        letter["Date"] = email.utils.formatdate(localtime=True)
        domain = self.from_addr.rpartition("@")[2] or "localhost"
        letter["Message-ID"] = f"<{msg.message_id}@{domain}>"
        letter.set_content(body, charset="utf-8")
        return letter

    def send(self, msg: Outgoing) -> None:
        """Deliver one message to the SMTP server; return once the server accepted it.

        Raises:
            TransientError: worth retrying later (4xx, network, TLS, or a session-level refusal).
            FatalHTTPError: the server refused this message for good
                (:class:`~bridge.notify.recipients.UndeliverableError`, ``status`` = SMTP code).
        """
        letter = self.build(msg)
        to = str(letter["To"])
        where = f"{self.host}:{self.port}"
        fields: dict[str, Any] = {"message_id": msg.message_id, "smtp": where, "to": mask(to)}
        try:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout_s
            )
        except smtplib.SMTPConnectError as exc:
            raise _session_error(exc, f"SMTP server {where} refused the connection", fields) from exc
        except OSError as exc:  # refused, unreachable, DNS, timeout
            raise TransientError(f"cannot connect to SMTP server {where}: {exc}", **fields) from exc
        try:
            self._open_session(smtp, where, fields)
            try:
                smtp.send_message(letter, from_addr=self.from_addr, to_addrs=[to])
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(to, (None, b""))
                raise _message_error(
                    code, text, f"SMTP server {where} refused recipient {mask(to)}", fields
                ) from exc
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                raise _message_error(
                    exc.smtp_code, exc.smtp_error, f"SMTP server {where} refused the message", fields
                ) from exc
            except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address and no SMTPUTF8
                raise UndeliverableError(
                    f"SMTP server {where} cannot take this message: {exc}", **fields
                ) from exc
        except (TransientError, FatalHTTPError):
            raise
        except smtplib.SMTPResponseException as exc:
            raise _session_error(exc, f"SMTP server {where} answered", fields) from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, resets, TLS errors
            raise TransientError(
                f"SMTP session with {where} failed: {type(exc).__name__}: {exc}", **fields
            ) from exc
        finally:
            _close(smtp)
        log.debug("email sent", message_id=msg.message_id, to=mask(to), smtp=where)

    def _open_session(self, smtp: smtplib.SMTP, where: str, fields: dict[str, Any]) -> None:
        smtp.ehlo()
        if self.starttls:
            if not smtp.has_extn("starttls"):
                raise TransientError(
                    f"SMTP server {where} does not offer STARTTLS and notify.email.starttls is true, so "
                    "nothing was sent; enable STARTTLS on the server, or set starttls: false only for a "
                    "relay on a trusted network",
                    **fields,
                )
            try:
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
            except ssl.SSLError as exc:
                raise TransientError(
                    f"STARTTLS with SMTP server {where} failed ({exc}); check the server's certificate "
                    "and notify.email.smtp_host (the name must match the certificate)",
                    **fields,
                ) from exc
            smtp.ehlo()
        if self.username:
            try:
                smtp.login(self.username, self._password)
            except smtplib.SMTPAuthenticationError as exc:
                raise TransientError(
                    f"SMTP server {where} refused the login of {self.username!r} "
                    f"({exc.smtp_code}); check notify.email.username and the password in "
                    "notify.email.password_env",
                    smtp_code=exc.smtp_code,
                    **fields,
                ) from exc
            except smtplib.SMTPNotSupportedError as exc:
                raise TransientError(
                    f"SMTP server {where} offers no login (AUTH) here; set notify.email.username: null "
                    "if it needs none, or enable STARTTLS (many servers offer AUTH only after it)",
                    **fields,
                ) from exc


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:300]


#: 5xx answers inside a transaction that blame the session, not the message: unknown command or bad
#: sequence (500, 502-504), STARTTLS or login required (530), login too weak or refused (534, 535, 538).
SESSION_CODES = frozenset({500, 502, 503, 504, 530, 534, 535, 538})


def _message_error(code: int | None, raw: bytes | str, what: str, fields: dict[str, Any]) -> Exception:
    message = f"{what}: {code} {_text(raw)}"
    if code in SESSION_CODES:
        return TransientError(
            message + "; the server wants another session setup: check notify.email.starttls, "
            "username and password_env",
            smtp_code=code,
            **fields,
        )
    if code is not None and 500 <= code < 600:
        return UndeliverableError(message, status=code, body=_text(raw), **fields)
    return TransientError(message, smtp_code=code, **fields)


def _session_error(exc: smtplib.SMTPResponseException, what: str, fields: dict[str, Any]) -> TransientError:
    return TransientError(
        f"{what}: {exc.smtp_code} {_text(exc.smtp_error)}", smtp_code=exc.smtp_code, **fields
    )


def _close(smtp: smtplib.SMTP) -> None:
    # The letter is accepted once DATA got its 250: a failing QUIT must not make it look unsent
    # (a retry would deliver it twice).
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
