"""``EmailSender`` against a real SMTP server (aiosmtpd) on 127.0.0.1: the letter on the wire (RFC 2047
subject, UTF-8 body), login, STARTTLS with a throwaway certificate, and how refusals are classified."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from bridge.errors import FatalHTTPError, TransientError
from bridge.notify.email import EmailSender
from bridge.notify.recipients import UndeliverableError
from tests.notify.notify_kit import outbox_message

SUBJECT = "Начислено 639 бонусов"
BODY = (
    "Здравствуйте, Дмитрий!\n\nЗа покупку вам начислено 639 бонусов. Ими можно будет оплатить покупки "
    "с 16.03.2026.\n\nМагазин"
)
PAYLOAD = {"to": "dmitry@example.ru", "subject": SUBJECT, "body": BODY}
USER, PASSWORD = "shop", "smtp-pass-Pq72"


@dataclass
class Mailbox:
    """The aiosmtpd handler: keeps what arrives; refuses the addresses it is told to."""

    received: list[Envelope] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    refuse_data: str | None = None
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return self.refuse_data
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, mailbox: Mailbox, **smtp_options: Any) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self.controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=mailbox.authenticate,
            auth_require_tls=False,
            server_hostname="localhost",
            ready_timeout=5.0,
            **smtp_options,
        )

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def sender(self, **changes: Any) -> EmailSender:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": None,
            "password": None,
            "from_addr": "shop@example.ru",
            "starttls": False,
            "timeout_s": 5.0,
        }
        options.update(changes)
        return EmailSender(**options)


@pytest.fixture
def smtp() -> Iterator[Server]:
    with Server(Mailbox()) as server:
        yield server


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed; STARTTLS is tested without a certificate only")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    # fmt: off
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # fmt: on
    return cert, key


def send(sender: EmailSender, payload: dict[str, Any] | None = None) -> None:
    sender.send(outbox_message("email", payload or dict(PAYLOAD)))


def letter(envelope: Envelope) -> email.message.EmailMessage:
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_utf8_subject_and_body_arrive_intact(smtp: Server) -> None:
    send(smtp.sender(from_name="Магазин"))
    (envelope,) = smtp.mailbox.received
    assert envelope.mail_from == "shop@example.ru" and envelope.rcpt_tos == ["dmitry@example.ru"]
    raw = envelope.original_content or b""
    assert raw.isascii()  # everything Cyrillic is encoded
    assert b"Subject: =?utf-8?" in raw  # RFC 2047 encoded-word
    got = letter(envelope)
    assert got["Subject"] == SUBJECT and got["To"] == "dmitry@example.ru"
    assert got["From"].addresses[0].display_name == "Магазин"
    assert got["From"].addresses[0].addr_spec == "shop@example.ru"
    assert got["Message-ID"] == "<msg_0001@example.ru>" and got["Date"]
    assert got.get_content_type() == "text/plain" and got.get_content_charset() == "utf-8"
    assert got.get_content().replace("\r\n", "\n").rstrip("\n") == BODY


def test_login_when_a_username_is_set(smtp: Server) -> None:
    send(smtp.sender(username=USER, password=PASSWORD))
    assert smtp.mailbox.logins == [USER] and len(smtp.mailbox.received) == 1


def test_a_refused_login_is_transient_and_names_the_keys_to_check(smtp: Server) -> None:
    with structlog.testing.capture_logs() as logs, pytest.raises(TransientError) as caught:
        send(smtp.sender(username=USER, password="wrong-pass-Lk3"))
    assert "notify.email.username" in str(caught.value) and "password_env" in str(caught.value)
    assert "wrong-pass-Lk3" not in f"{caught.value} {caught.value.fields} {logs}"
    assert smtp.mailbox.received == []


def test_550_for_the_recipient_is_undeliverable(smtp: Server) -> None:
    smtp.mailbox.refuse_rcpt["gone@example.ru"] = "550 5.1.1 Mailbox unavailable"
    with pytest.raises(UndeliverableError) as caught:
        send(smtp.sender(), {**PAYLOAD, "to": "gone@example.ru"})
    assert isinstance(caught.value, FatalHTTPError)
    assert caught.value.status == 550 and "Mailbox unavailable" in str(caught.value)


def test_554_for_the_data_is_undeliverable(smtp: Server) -> None:
    smtp.mailbox.refuse_data = "554 5.7.1 Message rejected as spam"
    with pytest.raises(UndeliverableError) as caught:
        send(smtp.sender())
    assert caught.value.status == 554


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_4xx_is_transient(smtp: Server, where: str) -> None:
    if where == "rcpt":
        smtp.mailbox.refuse_rcpt["dmitry@example.ru"] = "451 4.3.0 Try again later"
    else:
        smtp.mailbox.refuse_data = "452 4.3.1 Insufficient system storage"
    with pytest.raises(TransientError) as caught:
        send(smtp.sender())
    assert caught.value.fields["smtp_code"] in (451, 452)


def test_server_down_is_transient() -> None:
    sender = EmailSender("127.0.0.1", free_port(), None, None, "shop@example.ru", False, timeout_s=2.0)
    with pytest.raises(TransientError, match="cannot connect"):
        send(sender)


def test_a_silent_server_times_out_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts the connection (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        sender = EmailSender("127.0.0.1", port, None, None, "shop@example.ru", False, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(TransientError):
            send(sender)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("to", ["не адрес", "a@b", "x@example.ru\r\nBcc: all@example.ru", "", None])
def test_an_unusable_recipient_is_undeliverable_and_nothing_is_sent(smtp: Server, to: Any) -> None:
    with pytest.raises(UndeliverableError):
        send(smtp.sender(), {**PAYLOAD, "to": to})
    assert smtp.mailbox.received == []


def test_a_damaged_payload_is_undeliverable(smtp: Server) -> None:
    with pytest.raises(UndeliverableError):
        send(smtp.sender(), {**PAYLOAD, "subject": "две\nстроки"})
    with pytest.raises(UndeliverableError):
        send(smtp.sender(), {"to": "dmitry@example.ru", "subject": SUBJECT})


def test_starttls_against_a_server_without_it_sends_nothing(smtp: Server) -> None:
    with pytest.raises(TransientError) as caught:
        send(smtp.sender(starttls=True, username=USER, password=PASSWORD))
    assert "does not offer STARTTLS" in str(caught.value) and "notify.email.starttls" in str(caught.value)
    assert smtp.mailbox.received == [] and smtp.mailbox.logins == []


def test_starttls_is_used_when_configured(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    with Server(Mailbox(), tls_context=server_tls, require_starttls=True) as server:
        sender = server.sender(starttls=True, username=USER, password=PASSWORD, ssl_context=client_tls)
        send(sender)
        assert server.mailbox.logins == [USER]
        assert letter(server.mailbox.received[0])["Subject"] == SUBJECT
        # Without STARTTLS the server (require_starttls) refuses the session: nothing goes in clear text.
        with pytest.raises(TransientError):
            send(server.sender(starttls=False))
        assert len(server.mailbox.received) == 1


def test_starttls_verifies_the_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    with Server(Mailbox(), tls_context=server_tls) as server:
        with pytest.raises(TransientError, match=r"STARTTLS with SMTP server .* failed"):
            send(server.sender(starttls=True))  # the system's CAs do not trust the throwaway cert
        assert server.mailbox.received == []


def test_the_password_never_shows(smtp: Server) -> None:
    sender = smtp.sender(username=USER, password=PASSWORD)
    smtp.mailbox.refuse_data = "554 no"
    with structlog.testing.capture_logs() as logs, pytest.raises(UndeliverableError) as caught:
        send(sender)
    shown = f"{sender!r} {caught.value} {caught.value.fields} {logs}"
    assert PASSWORD not in shown and USER in repr(sender)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_server_demanding_a_login_is_a_session_problem_not_the_messages() -> None:
    with Server(Mailbox(), auth_required=True) as server:
        with pytest.raises(TransientError) as caught:
            send(server.sender())  # no username configured: 530 at MAIL FROM
        assert not isinstance(caught.value, FatalHTTPError)
        assert caught.value.fields["smtp_code"] == 530 and "notify.email" in str(caught.value)
        send(server.sender(username=USER, password=PASSWORD))
        assert len(server.mailbox.received) == 1
