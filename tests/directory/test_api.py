"""The directory's own FHIR endpoint (/annuaire/fhir) over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.engine import Engine

from adapter.api.directory_routes import create_directory_app
from adapter.auth import issue_token
from tests.support.servers import serve_app

MSS_EXTENSION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"


@pytest.fixture
def base(loaded: Engine) -> Iterator[str]:
    with serve_app(create_directory_app(loaded)) as url:
        yield f"{url}/annuaire/fhir"


def _get(url: str, **params: str) -> httpx.Response:
    token = issue_token("professional", idnat="801234567897")
    return httpx.get(url, params=params or None, timeout=10,
                     headers={"Authorization": f"Bearer {token}"})


def test_practitioner_by_identifier_is_a_valid_searchset(base: str) -> None:
    response = _get(f"{base}/Practitioner", identifier="urn:oid:1.2.250.1.71.4.2.1|801984758437")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    practitioner = bundle["entry"][0]["resource"]
    assert practitioner["name"][0]["family"] == "MEDIONI"
    assert {"system": "https://rpps.esante.gouv.fr", "value": "01984758437"}.items() <= (
        practitioner["identifier"][1].items()
    )
    mailbox = practitioner["telecom"][0]
    assert mailbox["value"] == "stephane.medioni@medecin.mssante.fr"
    assert mailbox["extension"][0]["url"] == MSS_EXTENSION
    assert mailbox["extension"][0]["valueCoding"]["code"] == "MSSANTE"


def test_practitioner_role_by_specialty_and_postcode(base: str) -> None:
    bundle = _get(
        f"{base}/PractitionerRole", specialty="SM27", **{"address-postalcode": "75015"}
    ).json()
    Bundle.model_validate(bundle)
    assert bundle["total"] == 1
    role = bundle["entry"][0]["resource"]
    assert role["practitioner"]["reference"] == "Practitioner/801234567897"
    assert role["organization"]["reference"] == "Organization/1750803447"
    assert role["specialty"][0]["coding"][0]["code"] == "SM27"
    assert role["contained"][0]["address"]["postalCode"] == "75015"
    system = (
        "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
    )
    same = _get(f"{base}/PractitionerRole", specialty=f"{system}|SM27").json()
    assert same["total"] == 2  # both of Dr DAVID's activities


def test_name_contains_and_paging_links(base: str) -> None:
    first = _get(f"{base}/Practitioner", **{"name:contains": "a", "_count": "2"}).json()
    assert first["total"] > 2 and len(first["entry"]) == 2
    relations = {link["relation"]: link["url"] for link in first["link"]}
    assert "next" in relations and "previous" not in relations
    second = _get(relations["next"]).json()
    assert second["total"] == first["total"]
    ids_first = {entry["resource"]["id"] for entry in first["entry"]}
    ids_second = {entry["resource"]["id"] for entry in second["entry"]}
    assert ids_first.isdisjoint(ids_second)
    assert any(link["relation"] == "previous" for link in second["link"])


def test_organization_search_and_reads(base: str) -> None:
    bundle = _get(
        f"{base}/Organization", identifier="https://finess.esante.gouv.fr|750803447"
    ).json()
    assert bundle["total"] == 1
    Bundle.model_validate(bundle)
    organization = bundle["entry"][0]["resource"]
    assert organization["name"] == "HOPITAL EUROPEEN GEORGES POMPIDOU"
    assert [t["value"] for t in organization["telecom"] if t["system"] == "email"] == [
        "secretariat.medecine-interne@hegp.mssante.fr"
    ]
    read = _get(f"{base}/Organization/1750803447").json()
    assert read["id"] == "1750803447"
    practitioner = _get(f"{base}/Practitioner/801234567897").json()
    assert practitioner["resourceType"] == "Practitioner"
    role_id = _get(f"{base}/PractitionerRole", practitioner="801234567897").json()["entry"][0][
        "resource"
    ]["id"]
    assert _get(f"{base}/PractitionerRole/{role_id}").json()["id"] == role_id


def test_errors_are_operation_outcomes(base: str) -> None:
    missing = _get(f"{base}/Practitioner/899999999999")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    unknown = _get(f"{base}/Practitioner", birthdate="1970")
    assert unknown.status_code == 400
    assert "birthdate" in unknown.json()["issue"][0]["diagnostics"]
    bad_count = _get(f"{base}/Organization", _count="many")
    assert bad_count.status_code == 400
