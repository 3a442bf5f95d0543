"""A section added to `mappings/ldl-ses.yaml` alone is mapped: the active problems section
(11450-4) becomes a CarePlan note instead of an unmapped section of the report."""

from __future__ import annotations

from adapter.mapping import convert_letter
from tests.support.paths import LDL_SES_EXAMPLE

PROBLEMS = b"""<component><section>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.3.6"/>
  <code code="11450-4" codeSystem="2.16.840.1.113883.6.1" displayName="Problem list"/>
  <title>Probl\xc3\xa8mes actifs</title>
  <text>Insuffisance cardiaque chronique, suivie en cardiologie.</text>
</section></component>"""


def _with_problems() -> bytes:
    letter = LDL_SES_EXAMPLE.read_bytes()
    body = letter.index(b"<structuredBody>") + len(b"<structuredBody>")
    return letter[:body] + PROBLEMS + letter[body:]


def test_the_active_problems_section_becomes_a_care_plan_note() -> None:
    conversion = convert_letter(_with_problems())
    [plan] = [e["resource"] for e in conversion.bundle["entry"]
              if e["resource"]["resourceType"] == "CarePlan"]
    notes = [note["text"] for note in plan.get("note", [])]
    assert any("Insuffisance cardiaque chronique" in note for note in notes)
    unmapped = [issue["diagnostics"] for issue in conversion.report["issue"]]
    assert not any("Problèmes actifs" in message for message in unmapped)
