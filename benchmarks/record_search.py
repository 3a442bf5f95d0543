"""Search latency of the embedded record with many stored resources, through real HTTP.

On SQLite and PostgreSQL, each in a record of its own, stores N resources (quick: 10,000;
full: 100,000) as patients with their care team, care plan,
encounter and message, then times `CarePlan?patient.identifier=` (as the system and as a care
team member, whose search is filtered by access grants) and `CareTeam?participant=`.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

from benchmarks.databases import KINDS, database

INS = "urn:oid:1.2.250.1.213.1.4.10"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
_PRACTITIONERS = 500


def _practitioner(n: int) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": f"pr{n}",
            "identifier": [{"system": IDNAT_PS, "value": f"8{n:011d}"}],
            "name": [{"family": f"Doc{n}"}]}


def _patient_resources(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return patient_resources(n, rng.sample(range(_PRACTITIONERS), 2))


def patient_resources(n: int, members: Sequence[int]) -> list[dict[str, Any]]:
    """Patient n with its care team of practitioners `members`, care plan, stay and message."""
    patient = {"reference": f"Patient/p{n}"}
    return [
        {"resourceType": "Patient", "id": f"p{n}", "identifier": [{"system": INS,
                                                                   "value": f"{n:015d}"}],
         "name": [{"family": f"Name{n}"}], "birthDate": "1950-01-01"},
        {"resourceType": "CareTeam", "id": f"ct{n}", "status": "active", "subject": patient,
         "participant": [{"member": {"reference": f"Practitioner/pr{m}"}} for m in members]},
        {"resourceType": "CarePlan", "id": f"cp{n}", "status": "active", "intent": "plan",
         "subject": patient, "careTeam": [{"reference": f"CareTeam/ct{n}"}],
         "period": {"start": "2024-03-05"}},
        {"resourceType": "Encounter", "id": f"e{n}", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "subject": patient},
        {"resourceType": "Communication", "id": f"c{n}", "status": "completed",
         "subject": patient, "recipient": [{"reference": f"Practitioner/pr{members[0]}"}]},
    ]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered) * 1000, p95 * 1000


def _time(client: httpx.Client, path: str, params_list: list[dict[str, str]]) -> list[float]:
    samples = []
    for params in params_list:
        started = time.perf_counter()
        response = client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return samples


def _letters(client: httpx.Client, count: int) -> tuple[str, list[float]]:
    """Transactions shaped like a discharge letter (conditional creates and updates)."""
    from tests.record.bundles import letter_bundle

    samples = []
    for n in range(count):
        bundle = letter_bundle(ins=f"9{n:014d}", set_id=f"bench-{n}")
        started = time.perf_counter()
        response = client.post("", json=bundle)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return f"letter transaction ({len(bundle['entry'])} entries)", samples


def _measure(total: int, queries: int) -> list[tuple[str, str, str]]:
    from adapter.api.record_app import create_record_app
    from adapter.auth import issue_token
    from tests.support.servers import serve_app

    rng = random.Random(7)
    patients = (total - _PRACTITIONERS) // 5
    resources = [_practitioner(n) for n in range(_PRACTITIONERS)]
    for n in range(patients):
        resources += _patient_resources(n, rng)
    app = create_record_app()
    started = time.perf_counter()
    app.state.record_repository.import_resources(resources)
    load_seconds = time.perf_counter() - started
    label = f"{len(resources):,} stored"
    rows = [(f"record bulk load ({label})", "resources/s", f"{len(resources) / load_seconds:,.0f}")]
    picks = [rng.randrange(patients) for _ in range(queries)]
    member_of = {}
    for n in picks:  # the care team members of patient n, as the generator chose them
        team = resources[_PRACTITIONERS + 5 * n + 1]["participant"]
        member_of[n] = team[0]["member"]["reference"].split("pr")[-1]
    with serve_app(app) as root, \
            httpx.Client(base_url=f"{root}/fhir", timeout=30,
                         headers={"Authorization": f"Bearer {issue_token('system')}"}) as system:
        by_ins = [{"patient.identifier": f"{INS}|{n:015d}"} for n in picks]
        _time(system, "CarePlan", by_ins[:5])  # warm-up
        cases = [("CarePlan?patient.identifier= (system)", _time(system, "CarePlan", by_ins))]
        tokens = [issue_token("professional", idnat=f"8{int(member_of[n]):011d}") for n in picks]
        samples = []
        for token, params in zip(tokens, by_ins, strict=True):
            as_member = {"Authorization": f"Bearer {token}"}
            started = time.perf_counter()
            found = system.get("CarePlan", params=params, headers=as_member)
            samples.append(time.perf_counter() - started)
            assert found.json()["total"] == 1, "the care team member must find the plan"
        cases.append(("CarePlan?patient.identifier= (care team member, filtered)", samples))
        by_member = [{"participant": f"Practitioner/pr{rng.randrange(_PRACTITIONERS)}",
                      "_count": "20"} for _ in range(queries)]
        cases.append(("CareTeam?participant= (_count=20)", _time(system, "CareTeam", by_member)))
        cases.append(_letters(system, queries // 4))
    for name, samples in cases:
        p50, p95 = _percentiles(samples)
        rows.append((f"{name}, {label}", "p50 / p95 ms", f"{p50:.1f} / {p95:.1f}"))
    return rows


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    total, queries = (10_000, 60) if quick else (100_000, 200)
    rows: list[tuple[str, str, str]] = []
    for kind in KINDS:
        with database(kind):
            rows += [(f"{kind}: {name}", unit, value)
                     for name, unit, value in _measure(total, queries)]
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
