"""``onec.verify_tls`` end to end: the 1C simulator serves HTTPS with a self-signed certificate, and
every client that talks to 1C — OData and SOAP, in ``once``, ``backfill`` and ``check`` — refuses it
with an error naming the key, unless the config turns the check off."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.errors import TransientError
from bridge.runtime.config import load_config
from bridge.service.onec_clients import soap_client
from bridge.simulator import SimStore, Simulator, load_sample
from bridge.simulator.site import SiteReceiver
from bridge.simulator.soap import mount
from tests.e2e.cycle_kit import SECRET, config_data, config_yaml

# Turning the check off is what these tests are about: urllib3's warning about it is expected.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@dataclass
class Install:
    sim: Simulator
    config: Path
    data: dict[str, Any]

    def write(self, **onec: Any) -> str:
        """The config file with these ``onec`` keys set; its path."""
        self.data["onec"].update(onec)
        self.config.write_text(config_yaml(self.data), "utf-8")
        return str(self.config)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made by ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    make = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    make += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"]
    subprocess.run([*make, "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> Iterator[Install]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    store = SimStore()
    load_sample(store)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with Simulator(store, tls=tls) as sim, SiteReceiver(SECRET) as site:
        mount(sim)
        assert sim.odata_url.startswith("https://")
        data = config_data(sim, site, tmp_path / "state.db")
        data["onec"]["soap"] = {"wsdl": f"{sim.base_url}/ws/LoyaltyBridge.1cws?wsdl"}
        monkeypatch.setenv("ONEC_PASSWORD", sim.password)
        monkeypatch.setenv("SITE_WEBHOOK_SECRET", SECRET)
        yield Install(sim, tmp_path / "config.yaml", data)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_once_and_backfill_refuse_a_self_signed_1c_unless_verify_tls_is_false(install: Install) -> None:
    cfg = install.write()  # onec.verify_tls defaults to true
    assert cli("db", "upgrade", "--config", cfg)[0] == 0
    for command in (["once"], ["backfill", "--from", "2026-01-01"]):
        code, out, err = cli(*command, "--config", cfg, "--now", "2026-03-20T12:00:00")
        assert code == 69, out + err
        assert "certificate verify failed" in err and "onec.verify_tls" in err, err
    assert install.sim.store.request_count("GET") == 0  # nothing got past the handshake

    cfg = install.write(verify_tls=False)
    code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code in (0, 1), out + err
    assert "documents applied" in out
    assert sum(install.sim.store.effective_writes.values()) > 0
    assert cli("check", "--config", cfg)[0] == 0


def test_the_soap_client_checks_the_certificate_as_configured(install: Install) -> None:
    install.data["poll"]["changes"] = "soap"
    checked = load_config(Path(install.write()))
    with pytest.raises(TransientError, match=r"certificate verify failed.*onec\.verify_tls"):
        soap_client(checked).get_changes(0)

    trusting = load_config(Path(install.write(verify_tls=False)))
    assert soap_client(trusting).get_changes(0).message_no >= 1


def test_a_private_ca_is_trusted_with_the_check_on(
    install: Install, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The way to keep the check and still reach a 1C whose certificate a private CA signed (here the
    self-signed certificate is its own CA): ``REQUESTS_CA_BUNDLE`` names the CA's PEM file."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    cfg = install.write()  # onec.verify_tls: true
    assert cli("db", "upgrade", "--config", cfg)[0] == 0
    code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code in (0, 1), out + err
    assert "documents applied" in out
