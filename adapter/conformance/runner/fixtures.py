"""Named inputs the scenarios send: liaison's own transaction bundles and letters.

Bundles come from the mapping (`adapter.mapping.convert_letter`) run on the official LDL-SES
example when both are available, so the record is tested with exactly what liaison pushes;
otherwise from the hand-written copies in conformance/data/. Every fixture may use `${run_id}`
to get values unique to one run (so runs against a long-lived server do not collide).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from adapter.config import get_settings
from adapter.errors import BadRequest

LDL_SES_EXAMPLE = "LDL-SES_2022.01.xml"
CDA_NS = "urn:hl7-org:v3"
_DATA_TYPES = ((".json", "application/fhir+json"), (".xml", "application/xml"))


@dataclass(frozen=True)
class Fixture:
    content: bytes
    content_type: str
    origin: str  # where it came from, shown in the report

    def json(self) -> Any:
        return json.loads(self.content)


def _official_letter() -> bytes | None:
    path = get_settings().cisis_dir / LDL_SES_EXAMPLE
    return path.read_bytes() if path.is_file() else None


def _next_version(letter: bytes) -> bytes:
    """The same letter as version 2: same setId, another document id, versionNumber + 1."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(letter, parser)
    document_id = root.find(f"{{{CDA_NS}}}id")
    version = root.find(f"{{{CDA_NS}}}versionNumber")
    if document_id is None or version is None:
        raise BadRequest("the example letter has no id or versionNumber to revise")
    document_id.set("extension", f"{document_id.get('extension', '')}v2")
    version.set("value", str(int(version.get("value", "1")) + 1))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _converted(letter: bytes) -> bytes:
    from adapter.mapping import convert_letter  # the mapping: paid only by the runs that use it

    return json.dumps(convert_letter(letter).bundle, ensure_ascii=False).encode("utf-8")


class Fixtures:
    """Loads and caches the named fixtures for one run."""

    def __init__(self, conformance_dir: Path, run_id: str, letter: bytes | None = None) -> None:
        self.data_dir = conformance_dir / "data"
        self.run_id = run_id
        self.letter = letter  # the LDL-SES the bundles come from; default the official example
        self._cache: dict[str, Fixture] = {}
        self._generated: dict[str, Callable[[], Fixture | None]] = {
            "letter-bundle": self._letter_bundle,
            "letter-bundle-v2": self._letter_bundle_v2,
            "ldl-ses-letter": self._ldl_ses_letter,
        }

    def get(self, name: str) -> Fixture:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def loaded(self) -> dict[str, Fixture]:
        return dict(self._cache)

    def _load(self, name: str) -> Fixture:
        generate = self._generated.get(name)
        fixture = generate() if generate else None
        if fixture is None:
            fixture = self._from_data_folder(name)
        return fixture

    def _from_data_folder(self, name: str) -> Fixture:
        for suffix, content_type in _DATA_TYPES:
            path = self.data_dir / f"{name}{suffix}"
            if path.is_file():
                text = path.read_text(encoding="utf-8").replace("${run_id}", self.run_id)
                return Fixture(text.encode("utf-8"), content_type, f"conformance/data/{path.name}")
        raise BadRequest(f"no fixture named {name!r} (looked in {self.data_dir})")

    def _source_letter(self) -> tuple[bytes | None, str]:
        if self.letter is not None:
            return self.letter, "the given letter"
        return _official_letter(), LDL_SES_EXAMPLE

    def _letter_bundle(self) -> Fixture | None:
        letter, name = self._source_letter()
        bundle = _converted(letter) if letter else None
        if bundle is None:
            return None
        return Fixture(bundle, "application/fhir+json", f"convert_letter({name})")

    def _letter_bundle_v2(self) -> Fixture | None:
        letter, name = self._source_letter()
        bundle = _converted(_next_version(letter)) if letter else None
        if bundle is None:
            return None
        return Fixture(bundle, "application/fhir+json", f"convert_letter({name}, version 2)")

    def _ldl_ses_letter(self) -> Fixture | None:
        letter, name = self._source_letter()
        if letter is None:
            return None
        return Fixture(letter, "application/xml", name)
