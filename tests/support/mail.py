"""A real SMTP server on loopback (aiosmtpd) with STARTTLS required, and its certificates.

Stands for liaison's MSSanté relay: it keeps what it accepts, answers 4xx or 5xx to the
recipients a test names, and can be stopped and started again on the same port."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.servers import free_port


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what liaison trusts (LIAISON_MSSANTE_CA_FILE), and what signed liaison's own
    cert: Path  # the relay's certificate, for 127.0.0.1 and localhost
    key: Path
    client_cert: Path  # liaison's, for a relay that asks for one (mutual TLS)
    client_key: Path


def make_tls(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "liaison test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(folder / "ca.pem", folder / "relay.pem", folder / "relay.key",
                     folder / "liaison.pem", folder / "liaison.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, cert_path, key_path in (("127.0.0.1", files.cert, files.key),
                                      ("liaison", files.client_cert, files.client_key)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


@dataclass
class Accepted:
    sender: str
    recipients: list[str]
    raw: bytes
    at: float = field(default_factory=time.perf_counter)  # when the relay took it

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Handler:
    # a mailbox server the relay delivers into, for the recipients it holds
    deliver_to: Any = None
    accepted: list[Accepted] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address → "550 …" for good
    # address → how many more times to answer "451 …" before accepting
    defer: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        with self.arrived:
            self.attempts[address] = self.attempts.get(address, 0) + 1
            if address in self.refuse:
                self.arrived.notify_all()
                return self.refuse[address]
            if self.defer.get(address, 0) > 0:
                self.defer[address] -= 1
                self.arrived.notify_all()
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        for recipient in envelope.rcpt_tos:
            if self.deliver_to is not None and recipient in self.deliver_to.users:
                self.deliver_to.deliver(raw, recipient)
        with self.arrived:
            self.accepted.append(Accepted(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or envelope.content)))
            self.arrived.notify_all()
        return "250 2.0.0 accepted"


class MailRelay:
    """`with MailRelay(tls) as relay:` an SMTP server on 127.0.0.1 requiring STARTTLS."""

    def __init__(self, tls: TlsFiles, port: int | None = None, *,
                 client_certificate: bool = False, deliver_to: Any = None) -> None:
        self.tls = tls
        self.client_certificate = client_certificate  # refuse TLS without one the CA signed
        self.port = port or free_port()
        self.handler = _Handler(deliver_to=deliver_to)
        self._controller: Controller | None = None

    def start(self) -> MailRelay:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        if self.client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(self.tls.ca))
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                      tls_context=context, require_starttls=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailRelay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def accepted(self) -> list[Accepted]:
        return self.handler.accepted

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Accepted]:
        """The first `count` messages accepted, waiting for them (no polling)."""
        deadline = time.monotonic() + timeout
        with self.handler.arrived:
            while len(self.handler.accepted) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self.handler.arrived.wait(left):
                    raise TimeoutError(f"{len(self.handler.accepted)} message(s) accepted, "
                                       f"not {count}, within {timeout}s")
            return list(self.handler.accepted[:count])

    def wait_for_attempts(self, address: str, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.handler.arrived:
            while self.handler.attempts.get(address, 0) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self.handler.arrived.wait(left):
                    raise TimeoutError(f"{address}: {self.handler.attempts.get(address, 0)} "
                                       f"attempt(s), not {count}")

    def settings(self) -> dict[str, Any]:
        """liaison's settings to send through this relay."""
        return {"mssante_smtp_host": "127.0.0.1", "mssante_smtp_port": self.port,
                "mssante_sender": "liaison@hopital-test.mssante.fr",
                "mssante_ca_file": self.tls.ca}
