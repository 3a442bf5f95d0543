"""CDA datatypes read into FHIR fragments: II, TS, IVL_TS, CD/CE, PN, AD, TEL."""

from __future__ import annotations

from lxml import etree

from adapter.cda import datatypes as cda


def element(xml: str) -> etree._Element:
    return etree.fromstring(
        f'<x xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"{xml}</x>")[0]


def uris(oid: str) -> str:
    return {"2.16.840.1.113883.6.1": "http://loinc.org"}.get(oid, f"urn:oid:{oid}")


def test_ts_keeps_time_zone_and_seconds() -> None:
    assert cda.ts("20191203133000+0100") == "2019-12-03T13:30:00+01:00"
    assert cda.ts("202101040735+0100") == "2021-01-04T07:35:00+01:00"
    assert cda.ts("20191203133000.25-0500") == "2019-12-03T13:30:00.25-05:00"


def test_ts_keeps_partial_dates_partial() -> None:
    assert cda.ts("2019") == "2019"
    assert cda.ts("201912") == "2019-12"
    assert cda.ts("20191203") == "2019-12-03"


def test_ts_without_zone_is_read_as_french_local_time() -> None:
    assert cda.ts("20250115083000") == "2025-01-15T08:30:00+01:00"
    assert cda.ts("20250715083000") == "2025-07-15T08:30:00+02:00"


def test_ts_rejects_garbage() -> None:
    assert cda.ts("yesterday") is None
    assert cda.ts_of(element('<effectiveTime nullFlavor="UNK"/>')) is None


def test_ivl_ts_becomes_a_period() -> None:
    period = cda.ivl_ts(element('<effectiveTime><low value="20191029"/>'
                                '<high value="20191203133000+0100"/></effectiveTime>'))
    assert period == {"start": "2019-10-29", "end": "2019-12-03T13:30:00+01:00"}
    assert cda.ivl_ts(element('<effectiveTime><low nullFlavor="UNK"/></effectiveTime>')) is None


def test_ii_with_extension_is_an_oid_system_and_value() -> None:
    assert cda.ii_identifier(element('<id root="1.2.250.1.71.4.2.1" extension="8001"/>')) == {
        "system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8001"}


def test_ii_root_only_is_an_rfc3986_uri() -> None:
    assert cda.ii_identifier(element('<id root="1.2.3.4"/>')) == {
        "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4"}
    assert cda.ii_identifier(element('<id root="2DB3E431-03B4-4FC4-99E5-AA2E3CE1D12A"/>')) == {
        "system": "urn:ietf:rfc:3986", "value": "urn:uuid:2db3e431-03b4-4fc4-99e5-aa2e3ce1d12a"}


def test_ii_with_null_flavor_is_none() -> None:
    assert cda.ii(element('<id nullFlavor="UNK"/>')) is None
    assert cda.ii(element('<id root="1.2.250.1.213.1.4.8" nullFlavor="MSK"/>')) is None


def test_cd_with_translations_and_original_text() -> None:
    concept = cda.codeable(element(
        '<code code="62552920" displayName="LEPONEX 100 mg" codeSystem="1.2.250.1.213.2.3.1">'
        '<originalText><reference value="#MED-2"/></originalText>'
        '<translation code="N05AH02" displayName="Clozapine" codeSystem="2.16.840.1.113883.6.73"/>'
        "</code>"), uris, {"MED-2": "LEPONEX 100 mg comprimé"})
    assert concept == {"coding": [
        {"system": "urn:oid:1.2.250.1.213.2.3.1", "code": "62552920", "display": "LEPONEX 100 mg"},
        {"system": "urn:oid:2.16.840.1.113883.6.73", "code": "N05AH02", "display": "Clozapine"}],
        "text": "LEPONEX 100 mg comprimé"}


def test_cd_with_null_flavor_keeps_only_its_translations() -> None:
    concept = cda.codeable(element(
        '<code nullFlavor="OTH"><translation code="11490-0" codeSystem="2.16.840.1.113883.6.1"/>'
        "</code>"), uris)
    assert concept == {"coding": [{"system": "http://loinc.org", "code": "11490-0"}]}
    assert cda.codeable(element('<code nullFlavor="NA"/>'), uris) is None


def test_pn_splits_birth_and_used_names() -> None:
    names = cda.person_names(element(
        '<name><family qualifier="BR">PAT-TROIS</family><given>DOMINIQUE MARIE-LOUISE</given>'
        '<given qualifier="BR">DOMINIQUE</given><family qualifier="CL">DUPONT</family>'
        '<given qualifier="CL">DOMI</given></name>'))
    assert names == [
        {"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE MARIE-LOUISE"]},
        {"use": "usual", "family": "DUPONT", "given": ["DOMI"]}]


def test_pn_of_a_professional_keeps_prefix_and_suffix() -> None:
    assert cda.person_names(element(
        "<name><prefix>M</prefix><given>Léon </given><family>AUGUIN</family>"
        "<suffix>PR</suffix></name>")) == [
        {"prefix": ["M"], "given": ["Léon"], "family": "AUGUIN", "suffix": ["PR"]}]


def test_ad_builds_lines_from_parts() -> None:
    assert cda.address(element(
        '<addr use="H"><houseNumber>28</houseNumber><streetName>Avenue de Breteuil</streetName>'
        "<unitID>Escalier A</unitID><postalCode>75007</postalCode><city>PARIS</city>"
        "<county>75107</county></addr>")) == {
        "line": ["28 Avenue de Breteuil", "Escalier A"], "postalCode": "75007", "city": "PARIS",
        "district": "75107", "use": "home"}
    assert cda.address(element('<addr nullFlavor="NAV"/>')) is None


def test_tel_schemes_and_uses() -> None:
    assert cda.telecom(element('<telecom value="tel:0647151010" use="MC"/>')) == {
        "system": "phone", "value": "0647151010", "use": "mobile"}
    assert cda.telecom(element('<telecom value="mailto:a@b.mssante.fr"/>')) == {
        "system": "email", "value": "a@b.mssante.fr"}
    assert cda.telecom(element('<telecom value="fax:0142" use="WP"/>')) == {
        "system": "fax", "value": "0142", "use": "work"}
    assert cda.telecom(element('<telecom nullFlavor="NASK"/>')) is None
