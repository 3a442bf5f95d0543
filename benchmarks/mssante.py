"""MSSanté delivery: letters posted to a real `liaison serve` process (its defaults: SQLite, the
embedded record, a pusher process) whose MSSanté relay is a real SMTP server on loopback
(aiosmtpd in this process, STARTTLS with a certificate checked against a test CA). The
directory holds the recipients' mailboxes, so each letter makes three messages.

Reports the messages the relay took per second (first 202 → last message taken), the delay
from a letter's 202 to the relay taking each of its messages (p50 / p95), and the delay from
the last 202 to every Communication of the record being `completed` (the status update went
back through the outbox to the record).
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from tests.support.letter_variants import letter_variant
from tests.support.mail import MailRelay, make_tls
from tests.support.servers import ServerProcess, free_port

CDA = {"Content-Type": "application/hl7-cda+xml"}


def _document_of(raw: bytes) -> str:
    """sha1 of the letter inside a message's XDM package."""
    from email import message_from_bytes, policy

    message = message_from_bytes(raw, policy=policy.default)
    for part in message.iter_attachments():  # type: ignore[attr-defined]
        if part.get_filename() == "IHE_XDM.ZIP":
            archive = zipfile.ZipFile(io.BytesIO(part.get_content()))
            return hashlib.sha1(archive.read("IHE_XDM/SUBSET01/DOC0001.XML")).hexdigest()
    return ""


def _import_directory(data_dir: Path) -> None:
    """The national extract and the MSSanté mailboxes, into the server's database."""
    from adapter.directory.importer import import_path
    from adapter.store.db import engine_for, init_db
    from tests.directory.conftest import MSSANTE_SAMPLE, NATIONAL_SAMPLE

    engine = engine_for(f"sqlite:///{(data_dir / 'liaison.db').resolve()}")
    init_db(engine)
    for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE):
        import_path(engine, sample)
    engine.dispose()


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    letters = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="liaison-mssante-") as name:
        scratch = Path(name)
        data_dir = scratch / "data"
        data_dir.mkdir()
        _import_directory(data_dir)
        tls = make_tls(scratch)
        port = free_port()
        with MailRelay(tls) as relay:
            env = {
                "LIAISON_DATA_DIR": str(data_dir), "LIAISON_VALIDATION_MODE": "off",
                "LIAISON_DATABASE_URL": "", "LIAISON_TARGET_URL": "",
                "LIAISON_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                **{f"LIAISON_{key.upper()}": str(value) for key, value in relay.settings().items()},
            }
            argv = [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)]
            with ServerProcess(argv, f"http://127.0.0.1:{port}/healthz", env=env):
                base = f"http://127.0.0.1:{port}"
                hospital = _token(data_dir, "hospital", organization="1750803447")
                headers = {"Authorization": f"Bearer {hospital}", **CDA}
                bodies = [letter_variant(n) for n in range(letters)]
                answered: dict[str, float] = {}
                with httpx.Client(base_url=base, timeout=60) as client:
                    first = time.perf_counter()
                    for body in bodies:
                        answer = client.post("/discharge-letters", content=body, headers=headers)
                        answer.raise_for_status()
                        answered[hashlib.sha1(body).hexdigest()] = time.perf_counter()
                    last = time.perf_counter()
                    expected = 3 * letters
                    accepted = relay.wait_for(expected, timeout=600)
                    system = {"Authorization": f"Bearer {_token(data_dir, 'system')}"}
                    while client.get("/fhir/Communication?status=in-progress&_summary=count",
                                     headers=system).json().get("total"):
                        time.sleep(0.05)
                    settled = time.perf_counter() - last
        delays = [m.at - answered[_document_of(m.raw)] for m in accepted]
        span = max(m.at for m in accepted) - first
    quantiles = statistics.quantiles(delays, n=20)
    return [
        (f"mssante: {len(accepted)} messages ({letters} letters) taken by the relay",
         "messages/s", f"{len(accepted) / span:.1f}"),
        ("mssante: 202 → relay took the message", "s (p50 / p95)",
         f"{statistics.median(delays):.2f} / {quantiles[18]:.2f}"),
        ("mssante: last 202 → every Communication completed", "s", f"{settled:.2f}"),
    ]


def _token(data_dir: Path, kind: str, **claims: str) -> str:
    """A token signed with the key of `data_dir` (the server's)."""
    from adapter.auth import issue_token
    from adapter.config import get_settings

    previous = os.environ.get("LIAISON_DATA_DIR")
    os.environ["LIAISON_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        return issue_token(kind, **claims)
    finally:
        if previous is not None:
            os.environ["LIAISON_DATA_DIR"] = previous
        get_settings.cache_clear()
