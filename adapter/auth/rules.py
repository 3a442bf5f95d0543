"""Who may write what: liaison's write rules per actor, in one place, deny by default
(`WRITE_RULES` below says them; the README's "Access" section shows them as a table).

Nobody but liaison (its pusher, on behalf of an accepted letter) and system tokens writes the
shared record through `/fhir`: a resource a client wrote could name itself a custodian or a
care-team member and so widen who reads. Who reads is derived from liaison's own facts only
(the organisation a letter was accepted for, the care team liaison built, coordinator rules,
consent): see `adapter/record/access.py` and `adapter/record/grants.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapter.auth.principal import Principal
from adapter.errors import Forbidden
from adapter.national_ids import national_id, national_ids

# The rules above as data, for the CapabilityStatement's documentation and the README.
WRITE_RULES: tuple[tuple[str, str], ...] = (
    ("hospital", "letters whose custodian (or author organisation) is one of the token's "
                 "organisations, and later versions of the setIds those organisations sent "
                 "first; through /discharge-letters or an MHD Provide Document Bundle only"),
    ("hospital", "discharge notices (planned, done, cancelled) of its own stays, before the "
                 "letter: POST /discharge-notices or HL7 v2 over the MLLP listener of its "
                 "organisations"),
    ("hospital", "consent of the patients it sent letters for"),
    ("professional", "consent of the patients whose active care team lists them; Subscriptions; "
                     "messages in those patients' threads (POST /fhir/Communication), to "
                     "members of their care team, as themselves"),
    ("coordinator", "consent of its CPTS's patients; availabilities; messages in those "
                    "patients' threads; the D+7 reviews its CPTS owns; those patients' plans "
                    "from its page: notes, items marked done (scope user/CarePlan.u), "
                    "professionals of the living directory added to their care team and told "
                    "(user/CareTeam.u and user/Communication.c)"),
    ("system", "everything"),
)


def token_organizations(principal: Principal) -> set[str]:
    """The idNat_Struct of every organisation a hospital token acts for."""
    return {national_id(value, "organization") for value in principal.organizations}


def require_notice_sender(principal: Principal, hospital: str) -> None:
    """A hospital announces the discharges of its own stays (`hospital`: the idNat_Struct the
    notice names); liaison's system token any."""
    if principal.kind == "system":
        return
    if principal.kind != "hospital":
        raise Forbidden("discharge notices are sent by hospitals")
    if national_id(hospital, "organization") not in token_organizations(principal):
        raise Forbidden("a hospital announces the discharges of its own stays only: this "
                        "notice names another organisation")


def letter_organization(principal: Principal,
                        organizations: Iterable[tuple[str, str] | None]) -> str | None:
    """The organisation (idNat_Struct) a letter is accepted for: the first of `organizations`
    (the letter's custodian, then its author's organisation, as (system, value)) that the
    caller acts for. A system token sends for the first one the letter identifies. Forbidden
    when a hospital token acts for none of them: a hospital sends only its own letters."""
    named = [next(iter(national_ids([{"system": s, "value": v}], "organization")), None)
             for s, v in (pair for pair in organizations if pair)]
    identified = [value for value in named if value]
    if principal.kind == "system":
        return identified[0] if identified else None
    if principal.kind != "hospital":
        raise Forbidden(f"a {principal.kind} token cannot submit discharge letters")
    mine = token_organizations(principal)
    for value in identified:
        if value in mine:
            return value
    shown = ", ".join(identified) or "none identified by idNat_Struct or FINESS"
    raise Forbidden(f"this letter's custodian and author organisations ({shown}) are not "
                    f"organisations this token acts for ({', '.join(sorted(mine)) or 'none'})")


def require_record_write(principal: Principal | None) -> None:
    """Only liaison itself (no principal) and system tokens write the record through /fhir."""
    if principal is None or (principal.kind == "system" and principal.has_scope("c")):
        return
    if principal.kind == "hospital":
        raise Forbidden("hospitals send letters (POST /discharge-letters or an MHD Provide "
                        "Document Bundle); the record itself is written by liaison only")
    raise Forbidden(f"a {principal.kind} token may not write to the record")


def require_thread_writer(principal: Principal, in_care_of_patient: Any) -> None:
    """A patient's thread is written by the members of its active care team and the
    coordinators of its CPTS (`in_care_of_patient()` answers for the caller), and the system;
    hospitals write letters, not messages."""
    if principal.kind == "system":
        return
    if principal.kind not in ("professional", "coordinator") \
            or not principal.has_scope("c", "Communication"):
        raise Forbidden(f"a {principal.kind} token may not write in a patient's thread")
    if not in_care_of_patient():
        raise Forbidden("only the patient's care team and its CPTS coordinator write in its "
                        "thread")


def require_review_completer(principal: Principal, owned_by_callers_cpts: Any) -> None:
    """A D+7 review is completed by a coordinator of the CPTS that owns it
    (`owned_by_callers_cpts()` answers), or the system."""
    if principal.kind == "system":
        return
    if principal.kind != "coordinator" or not owned_by_callers_cpts():
        raise Forbidden("a review is completed by a coordinator of the CPTS that owns it")


def require_consent_filer(principal: Principal, cares_for_patient: Any) -> None:
    """Consent is filed by the system or by someone the record lets read the patient (its
    care team, a hospital that sent its letters, a coordinator of its CPTS).
    `cares_for_patient()` answers that last question."""
    if principal.kind == "system":
        return
    if principal.kind not in ("hospital", "professional", "coordinator") \
            or not cares_for_patient():
        raise Forbidden("only the system or those caring for this patient may file its consent")


def require_plan_keeper(principal: Principal, coordinates_patient: Any,
                        scopes: tuple[tuple[str, str], ...]) -> None:
    """A patient's plan is kept from the coordinator's page (a note, an item done, a
    professional added to the care team) by a coordinator of the CPTS that owns the patient's
    care team — `coordinates_patient()` answers: the record lets the coordinator read the plan,
    which it does for its own CPTS's patients only — holding every (action, resource type) of
    `scopes`, and by the system. A professional, even in the team, and a hospital may not."""
    if principal.kind == "system":
        return
    if principal.kind != "coordinator":
        raise Forbidden(f"a {principal.kind} token may not change a patient's plan from the "
                        "coordinator's page")
    lacking = [f"{kind}.{action}" for action, kind in scopes if not principal.has_scope(action,
                                                                                        kind)]
    if lacking:
        raise Forbidden(f"this token lacks the scope(s) {', '.join(lacking)}")
    if not coordinates_patient():
        raise Forbidden("only a coordinator of the CPTS that owns the patient's care team may "
                        "change its plan")
