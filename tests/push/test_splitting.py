"""Cutting a transaction for servers that cap its size: references first, urn:uuid rewritten."""

from __future__ import annotations

from typing import Any

from adapter.push.splitting import dependency_order, send_in_chunks

PATIENT, PLAN, TEAM = "urn:uuid:1", "urn:uuid:2", "urn:uuid:3"


def _bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PLAN,
                "resource": {
                    "resourceType": "CarePlan",
                    "subject": {"reference": PATIENT},
                    "careTeam": [{"reference": TEAM}],
                },
            },
            {
                "fullUrl": TEAM,
                "resource": {"resourceType": "CareTeam", "subject": {"reference": PATIENT}},
            },
            {"fullUrl": PATIENT, "resource": {"resourceType": "Patient"}},
        ],
    }


def test_entries_come_after_the_entries_they_reference() -> None:
    order = [entry["fullUrl"] for entry in dependency_order(_bundle()["entry"])]
    assert order == [PATIENT, TEAM, PLAN]


def test_chunks_refer_to_what_earlier_chunks_created_and_answers_keep_the_bundle_order() -> None:
    sent: list[dict[str, Any]] = []

    def server(chunk: dict[str, Any]) -> dict[str, Any]:
        sent.append(chunk)
        number = len(sent)
        return {
            "entry": [
                {
                    "response": {
                        "status": "201 Created",
                        "location": f"{e['resource']['resourceType']}/{number}/_history/1",
                    }
                }
                for e in chunk["entry"]
            ]
        }

    response = send_in_chunks(_bundle(), 1, server)
    assert [len(chunk["entry"]) for chunk in sent] == [1, 1, 1]
    assert sent[1]["entry"][0]["resource"]["subject"] == {"reference": "Patient/1"}
    assert sent[2]["entry"][0]["resource"]["careTeam"] == [{"reference": "CareTeam/2"}]
    assert [entry["response"]["location"] for entry in response["entry"]] == [
        "CarePlan/3/_history/1",
        "CareTeam/2/_history/1",
        "Patient/1/_history/1",
    ]
