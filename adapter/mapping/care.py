"""The coordination resources: DocumentReference, CareTeam, CarePlan, Communication, Provenance."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from adapter.cda import datatypes as cda
from adapter.cda.datatypes import child, path
from adapter.mapping.bundle import PER_LETTER, PER_VERSION
from adapter.mapping.context import Actor, Context


def document_identifiers(ctx: Context) -> dict[str, dict[str, str]]:
    return {
        "document": {"system": ctx.knowledge.liaison_system("document_version"),
                     "value": ctx.doc_key},
        "set": {"system": ctx.knowledge.liaison_system("document_set"), "value": ctx.set_key},
    }


def map_document_reference(ctx: Context, xml: bytes) -> str:
    root = ctx.root
    ids = document_identifiers(ctx)
    master = cda.ii_identifier(child(root, "id"))
    code = cda.codeable(child(root, "code"), ctx.uris)
    sets = ctx.knowledge.valuesets
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [ids["document"], ids["set"],
                       {"system": ctx.knowledge.liaison_system("document_version"),
                        "value": f"{ctx.set_key}/v{ctx.version}"}],
        "status": "current",
        "docStatus": ctx.doc_status or "final",
        "type": code or {"coding": [sets["document_type"]]},
        "category": [{"coding": [sets["document_class"]]}],
        "subject": {"reference": ctx.patient_url},
    }
    if master and master.get("system"):
        document["masterIdentifier"] = master
    if ctx.effective:
        document["date"] = cda.as_instant(ctx.effective)
    authors = [ctx.ref(ctx.author.member_url)] if ctx.author else []
    if ctx.custodian_url:
        authors.append(ctx.ref(ctx.custodian_url))
        document["custodian"] = {"reference": ctx.custodian_url}
    if authors:
        document["author"] = authors
    legal = next((a for a in ctx.members.values() if "legal_authenticator" in a.roles), None)
    if legal:
        document["authenticator"] = {"reference": legal.member_url}
    replaced = path(root, "relatedDocument", "parentDocument")
    relation = path(root, "relatedDocument")
    if replaced is not None and relation is not None and relation.get("typeCode") == "RPLC":
        parent = cda.ii(child(replaced, "id"))
        if parent:
            document["relatesTo"] = [{"code": "replaces", "target": {
                "type": "DocumentReference",
                "identifier": {"system": ids["document"]["system"],
                               "value": _key(*parent)}}}]
    title = cda.text_of(child(root, "title"))
    if title:
        document["description"] = title
    confidentiality = child(root, "confidentialityCode")
    label = sets["confidentiality"].get(confidentiality.get("code") if confidentiality is not None
                                        else "N")
    if label:
        document["securityLabel"] = [{"coding": [label]}]
    language = child(root, "languageCode")
    attachment: dict[str, Any] = {
        "contentType": "text/xml",
        "data": base64.b64encode(xml).decode("ascii"),
        "size": len(xml),
        "hash": base64.b64encode(ctx.letter_sha1 or hashlib.sha1(xml).digest()).decode("ascii"),
    }
    if language is not None and language.get("code"):
        attachment["language"] = language.get("code")
    if title:
        attachment["title"] = title
    if ctx.effective:
        attachment["creation"] = ctx.effective
    document["content"] = [{"attachment": attachment}]
    body = path(root, "component", "nonXMLBody", "text")
    if body is not None:
        raw = body.text or ""
        # B64 bodies are already base64; a TXT body (text/plain) is encoded here
        data = ("".join(raw.split()) if (body.get("representation") or "TXT") == "B64"
                else base64.b64encode(raw.encode("utf-8")).decode("ascii"))
        embedded: dict[str, Any] = {"contentType": body.get("mediaType") or "application/pdf",
                                    "data": data}
        if title:
            embedded["title"] = title
        content: dict[str, Any] = {"attachment": embedded}
        if embedded["contentType"] == "application/pdf":
            content["format"] = sets["document_format"]["pdf"]
        document["content"].append(content)
    context: dict[str, Any] = {}
    if ctx.encounter_url:
        context["encounter"] = [{"reference": ctx.encounter_url}]
        encounter = _encounter(ctx)
        if encounter.get("period"):
            context["period"] = encounter["period"]
        if encounter.get("type"):
            context["facilityType"] = encounter["type"][0]
    context["sourcePatientInfo"] = {"reference": ctx.patient_url}
    document["context"] = context
    return ctx.builder.add(document, ids["document"], PER_VERSION)


def _key(root: str, extension: str) -> str:
    return f"{root}^{extension}" if extension else root


def _encounter(ctx: Context) -> dict[str, Any]:
    return ctx.builder.resource(ctx.encounter_url) if ctx.encounter_url else {}


def _role_concept(ctx: Context, key: str) -> dict[str, Any]:
    role = ctx.knowledge.role(key)
    return {"coding": [{k: role[k] for k in ("system", "code", "display")}],
            "text": role["display"]}


def map_care_team(ctx: Context) -> str:
    identifier = {"system": ctx.knowledge.liaison_system("careteam"), "value": ctx.set_key}
    start = ctx.effective or _encounter(ctx).get("period", {}).get("start")
    team: dict[str, Any] = {
        "resourceType": "CareTeam", "identifier": [identifier], "status": "active",
        "name": f"Cercle de soins de {ctx.patient_display}".strip(),
        "subject": {"reference": ctx.patient_url},
    }
    if ctx.encounter_url:
        team["encounter"] = {"reference": ctx.encounter_url}
    if start:
        team["period"] = {"start": start}
    participants = []
    for actor in ctx.members.values():
        roles = [_role_concept(ctx, key) for key in actor.roles]
        if actor.profession:
            roles.append(actor.profession)
        participant: dict[str, Any] = {"role": roles, "member": _member(actor)}
        if start:
            participant["period"] = {"start": start}
        participants.append(participant)
    if participants:
        team["participant"] = participants
    if ctx.custodian_url:
        team["managingOrganization"] = [{"reference": ctx.custodian_url}]
    return ctx.builder.add(team, identifier, PER_LETTER)


def _member(actor: Actor) -> dict[str, str]:
    member = {"reference": actor.member_url}
    if actor.display:
        member["display"] = actor.display
    return member


def map_care_plan(ctx: Context, care_team_url: str, document_url: str) -> str:
    identifier = {"system": ctx.knowledge.liaison_system("careplan"), "value": ctx.set_key}
    encounter = _encounter(ctx)
    plan: dict[str, Any] = {
        "resourceType": "CarePlan", "identifier": [identifier], "status": "active",
        "intent": "plan",
        "category": [{"coding": [ctx.knowledge.valuesets["careplan_category"]]}],
        "title": cda.text_of(child(ctx.root, "title")) or "Suites à donner après la sortie",
        "subject": {"reference": ctx.patient_url},
    }
    if ctx.description:
        plan["description"] = ctx.description
    if ctx.encounter_url:
        plan["encounter"] = {"reference": ctx.encounter_url}
    discharge = encounter.get("period", {}).get("end") or ctx.effective
    if discharge:
        plan["period"] = {"start": discharge}
    if ctx.effective:
        plan["created"] = ctx.effective
    if ctx.author:
        plan["author"] = {"reference": ctx.author.member_url}
    plan["careTeam"] = [{"reference": care_team_url}]
    plan["supportingInfo"] = [{"reference": url} for url in [document_url, *ctx.supporting]]
    if ctx.activities:
        plan["activity"] = [{"reference": {"reference": url}} for url in ctx.activities]
    notes = list(ctx.notes)
    if ctx.doc_status == "preliminary":  # carers must not take it for the final word
        notes.insert(0, "Lettre de liaison provisoire : son contenu peut encore changer.")
        plan["meta"] = {"profile": [ctx.knowledge.profile("CarePlan")],
                        "tag": [ctx.knowledge.valuesets["provisional_tag"]]}
    if notes:
        plan["note"] = [{"text": note} for note in notes]
    return ctx.builder.add(plan, identifier, PER_LETTER)


def is_transfer(ctx: Context) -> bool:
    """The patient leaves for another establishment (the discharge mode says so)."""
    codes = {c.get("code") for c in (ctx.discharge_disposition or {}).get("coding") or []}
    transfers = ctx.section_rules.get(
        "transfer_dispositions") or []
    return bool(codes & set(transfers))


def _follow_up(ctx: Context) -> str:
    if is_transfer(ctx):
        where = (ctx.discharge_disposition or {}).get("text") or "autre établissement"
        return f"transfert ({where}) : informations pour la suite de la prise en charge"
    return "suites à donner après la sortie"


def map_communications(ctx: Context, document_url: str, care_plan_url: str) -> list[str]:
    """One Communication per recipient, plus one for the médecin traitant when not a recipient."""
    addressees = list(ctx.recipients)
    if ctx.pcp and ctx.pcp not in addressees:
        addressees.append(ctx.pcp)
    title = cda.text_of(child(ctx.root, "title")) or "Lettre de liaison"
    day = cda.french_date(ctx.effective) if ctx.effective else ""
    urls = []
    for actor in addressees:
        identifier = {"system": ctx.knowledge.liaison_system("communication"),
                      "value": f"{ctx.doc_key}/{actor.key}"}
        communication: dict[str, Any] = {
            "resourceType": "Communication", "identifier": [identifier], "status": "completed",
            "category": [{"coding": [ctx.knowledge.valuesets["communication_category"]]}],
            "subject": {"reference": ctx.patient_url},
            "about": [{"reference": care_plan_url}],
            "recipient": [_member(actor)],
            "payload": [
                {"contentString": f"{title} du {day} : {_follow_up(ctx)}."
                 if day else f"{title} : {_follow_up(ctx)}."},
                {"contentReference": {"reference": document_url}},
            ],
        }
        if ctx.encounter_url:
            communication["encounter"] = {"reference": ctx.encounter_url}
        if ctx.effective:
            communication["sent"] = ctx.effective
        sender = ctx.author.member_url if ctx.author else ctx.custodian_url
        if sender:
            communication["sender"] = {"reference": sender}
        urls.append(ctx.builder.add(communication, identifier, PER_VERSION))
    return urls


def map_provenance(ctx: Context, document_url: str) -> None:
    targets = [{"reference": url} for url in ctx.builder.urls()]
    recorded = cda.as_instant(ctx.effective) if ctx.effective else "1970-01-01T00:00:00+00:00"
    sets = ctx.knowledge.valuesets
    who = ctx.author.member_url if ctx.author else ctx.custodian_url or ctx.patient_url
    provenance: dict[str, Any] = {
        "target": targets, "recorded": recorded,
        "activity": {"coding": [sets["provenance_activity"]]},
        "agent": [{"type": {"coding": [sets["provenance_agent_type"]]},
                   "who": {"reference": who}}],
        "entity": [{"role": "source", "what": {"reference": document_url}}],
    }
    if ctx.effective:
        provenance["occurredDateTime"] = ctx.effective
    if ctx.custodian_url and who != ctx.custodian_url:
        provenance["agent"][0]["onBehalfOf"] = {"reference": ctx.custodian_url}
    legal = next((a for a in ctx.members.values() if "legal_authenticator" in a.roles), None)
    if legal is not None and ctx.signed:
        provenance["signature"] = [{"type": [sets["signature_type"]],
                                    "when": cda.as_instant(ctx.signed),
                                    "who": {"reference": legal.member_url}}]
    ctx.builder.add_provenance(provenance, ctx.knowledge.liaison_system("provenance_tag"),
                               ctx.doc_key)
