"""Sending through a real SMTP relay on loopback, and what each answer means: a relay that
cannot be trusted or reached, or says "later", is tried again; a 5xx refuses for good. The
operator's mutual TLS: liaison presents its client certificate when configured."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from adapter.config import Settings
from adapter.errors import TargetUnavailable
from adapter.mssante import smtp
from tests.support.mail import MailRelay, TlsFiles, make_tls

TO = "elsa.ducout@infirmier.mssante.fr"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


def _mail() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "liaison@hopital-test.mssante.fr", TO, "essai"
    mail.set_content("bonjour")
    return mail


def _settings(relay: MailRelay, **overrides: Any) -> Settings:
    return Settings(**{**relay.settings(), "mssante_timeout_seconds": 5, **overrides})


def test_the_relay_takes_the_message_over_tls(tls: TlsFiles) -> None:
    with MailRelay(tls) as relay:
        smtp.send(_mail(), TO, _settings(relay))
        assert relay.wait_for(1)[0].recipients == [TO]


def test_a_relay_whose_certificate_is_not_trusted_gets_nothing(tls: TlsFiles) -> None:
    with MailRelay(tls) as relay:
        with pytest.raises(TargetUnavailable):
            smtp.send(_mail(), TO, _settings(relay, mssante_ca_file=None))
        assert relay.accepted == []


def test_an_unreachable_relay_is_tried_again(tls: TlsFiles) -> None:
    relay = MailRelay(tls)  # never started
    with pytest.raises(TargetUnavailable):
        smtp.send(_mail(), TO, _settings(relay))


def test_later_is_tried_again_and_a_5xx_is_refused_for_good(tls: TlsFiles) -> None:
    with MailRelay(tls) as relay:
        relay.handler.defer[TO] = 1
        with pytest.raises(TargetUnavailable) as later:
            smtp.send(_mail(), TO, _settings(relay))
        assert later.value.status == 451
        relay.handler.refuse[TO] = "550 5.1.1 mailbox unknown"
        with pytest.raises(smtp.MailRefused) as refused:
            smtp.send(_mail(), TO, _settings(relay))
        assert refused.value.code == 550
        assert relay.accepted == []


def test_mutual_tls_needs_liaison_s_client_certificate(tls: TlsFiles) -> None:
    with MailRelay(tls, client_certificate=True) as relay:
        with pytest.raises(TargetUnavailable):
            smtp.send(_mail(), TO, _settings(relay))
        smtp.send(_mail(), TO, _settings(relay, mssante_client_cert=tls.client_cert,
                                         mssante_client_key=tls.client_key))
        assert len(relay.wait_for(1)) == 1
