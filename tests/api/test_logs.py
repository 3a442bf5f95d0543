"""What reaches the server's log when something goes wrong: never the letter's content."""

from __future__ import annotations

import httpx
import pytest

import adapter.mapping
from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import Settings
from tests.api.conftest import HOSPITAL, bearer
from tests.support.letter_variants import ins_of, letter_variant
from tests.support.servers import serve_app


def test_an_unexpected_error_answers_500_and_logs_no_patient_data(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def mapping_bug(xml: bytes, **_: object) -> None:
        # a bug whose message quotes the letter, as a failed int() or date parse would
        raise ValueError(f"cannot read patient {ins_of(5)} in {xml[:60]!r}")

    monkeypatch.setattr(adapter.mapping, "convert_letter", mapping_bug)
    headers = {**bearer(issue_token("hospital", organization=HOSPITAL)),
               "Content-Type": "application/hl7-cda+xml"}
    app = create_app(Settings(push_in_server=False, validation_mode="off"))
    with serve_app(app, probe_path="/healthz") as base:
        answer = httpx.post(f"{base}/discharge-letters", content=letter_variant(5),
                            headers=headers, timeout=30)
    assert answer.status_code == 500
    assert answer.json()["issue"][0]["diagnostics"] == "internal error"
    printed = capfd.readouterr()  # what uvicorn's own handlers wrote
    assert "unexpected ValueError on POST /discharge-letters" in caplog.text  # type and place
    assert ins_of(5) not in printed.err + printed.out + caplog.text
