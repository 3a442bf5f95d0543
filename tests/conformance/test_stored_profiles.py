"""What the record holds after coordination, a care-team merge and a corrected letter passes
liaison's own profiles; the value set of care-team roles comes from where roles are declared;
the check before the 202 lists profile problems in the receipt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adapter.cli import app as cli
from adapter.config import get_settings
from adapter.conformance.valuesets import load_value_sets
from adapter.directory.importer import import_path
from adapter.ingest.delivery import delivery_pusher
from adapter.ingest.ingestion import ingest_letter
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.support.letter_variants import letter_variant
from tests.support.paths import FIXTURES

ROLES = "urn:liaison:valueset:careteam-roles"


def _deliver(*letters: bytes) -> list[dict]:
    engine = get_engine()
    settings = get_settings().model_copy(update={"validation_mode": "off"})
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    receipts = [ingest_letter(xml, content_type="application/xml", engine=engine,
                              settings=settings).receipt for xml in letters]
    assert delivery_pusher(engine, threads=1).drain(timeout=60)
    return receipts


def test_everything_stored_after_coordination_merge_and_a_new_version_passes(
        tmp_path: Path) -> None:
    _deliver(letter_variant(601), letter_variant(602, patient=601),  # two stays: a merge
             letter_variant(601, version=2))  # and a corrected letter
    record = Repository(get_engine())
    stored = [entry for kind in ("CarePlan", "CareTeam", "Communication")
              for entry in record.search(kind, [("_count", "500")])["entry"]]
    kinds = {entry["resource"]["resourceType"] for entry in stored}
    assert kinds == {"CarePlan", "CareTeam", "Communication"}
    roles = {coding["code"] for entry in stored if entry["resource"]["resourceType"] == "CareTeam"
             for participant in entry["resource"]["participant"]
             for role in participant.get("role", []) for coding in role.get("coding", [])}
    assert {"coordinator", "PCP"} <= roles  # coordination's roles are among them
    dump = tmp_path / "stored.json"
    dump.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": stored}), encoding="utf-8")
    answer = CliRunner().invoke(cli, ["conformance", "check", str(dump)])
    assert answer.exit_code == 0, answer.output
    assert answer.output.strip().endswith(f"{len(stored)} resource(s) checked, 0 problem(s)")


def test_the_roles_value_set_is_read_from_where_roles_are_declared(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(get_settings().mappings_dir, mappings)
    rules = yaml.safe_load((mappings / "coordination.yaml").read_text(encoding="utf-8"))
    rules["coordinator"]["role"]["code"] = "pathway-lead"
    (mappings / "coordination.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    value_set = load_value_sets(mappings)[ROLES]
    assert value_set.has_coding("urn:liaison:careteam-role", "pathway-lead")
    assert not value_set.has_coding("urn:liaison:careteam-role", "coordinator")
    real = load_value_sets(get_settings().mappings_dir)[ROLES]
    for code in ("coordinator", "known-carer"):
        assert real.has_coding("urn:liaison:careteam-role", code)
    pcp = "https://mos.esante.gouv.fr/NOS/TRE_R259-HL7ParticipationFunction/FHIR/" \
          "TRE-R259-HL7ParticipationFunction"
    assert real.has_coding(pcp, "PCP")  # an alias of roles.yaml resolved


def test_the_receipt_lists_what_does_not_pass_the_profiles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the coordinator's role taken out of the value set, a coordinated letter says so
    before its 202."""
    mappings = tmp_path / "mappings"
    shutil.copytree(get_settings().mappings_dir, mappings)
    roles = mappings / "valuesets" / "careteam-roles.yaml"
    roles.write_text(roles.read_text(encoding="utf-8").replace(
        "  - coordination.yaml#coordinator.role", "  # (taken out)"), encoding="utf-8")
    monkeypatch.setenv("LIAISON_MAPPINGS_DIR", str(mappings))
    get_settings.cache_clear()
    [receipt] = _deliver(letter_variant(611))
    problems = [issue["diagnostics"] for issue in receipt["unmapped"]["issue"]
                if issue["diagnostics"].startswith("profile: ")]
    assert problems and all("CareTeam" in problem for problem in problems)
    assert any("coordinator" in problem for problem in problems)
