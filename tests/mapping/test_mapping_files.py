"""Mapping knowledge is checked when loaded: a key `mappings/schema.yaml` does not declare stops
the loading with the file and the line, instead of being silently ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter.errors import Misconfigured
from adapter.mapping.knowledge import load_knowledge
from adapter.mapping_files import load_mapping_file
from tests.support.paths import REPO

MAPPINGS = REPO / "mappings"


def test_every_mapping_file_has_the_shape_the_schema_declares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = sorted(MAPPINGS.rglob("*.yaml"))
    assert len(files) > 15
    for path in files:
        load_mapping_file(path)  # raises on the first key or shape out of the schema
    monkeypatch.chdir(REPO)  # a path relative to the working directory finds its schema too
    assert load_mapping_file(Path("mappings/ldl-ses.yaml"))["sections"]


def test_libyaml_and_the_pure_python_parser_read_every_mapping_file_alike() -> None:
    """The loader takes libyaml's parser when PyYAML has it (faster start-up); a machine
    without it reads the files with PyYAML's own, and must map letters the same."""
    import yaml

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml: only the pure-Python parser is there")
    for path in sorted(MAPPINGS.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert yaml.load(text, Loader=yaml.CSafeLoader) == yaml.load(
            text, Loader=yaml.SafeLoader), path


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    return folder


def test_a_misspelt_key_is_an_error_naming_the_file_and_the_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    sections = folder / "ldl-ses.yaml"
    lines = sections.read_text(encoding="utf-8").splitlines()
    number = next(n for n, line in enumerate(lines, 1) if line.strip().startswith("becomes:"))
    lines[number - 1] = lines[number - 1].replace("becomes:", "becomess:")
    sections.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(Misconfigured) as refused:
        load_knowledge(folder)
    assert f"ldl-ses.yaml:{number}: unknown key 'becomess' in ldl-ses.yaml.sections[" \
        in refused.value.message
    assert "becomes" in refused.value.message.split("known:")[1]


def test_a_list_where_a_mapping_is_expected_and_an_undeclared_file_are_refused(
    tmp_path: Path,
) -> None:
    folder = _copy(tmp_path)
    roles = folder / "roles.yaml"
    roles.write_text(roles.read_text(encoding="utf-8").replace(
        "careteam_roles:", "careteam_roles:\n  - pcp\nformer_careteam_roles:", 1), encoding="utf-8")
    with pytest.raises(Misconfigured, match=r"roles\.yaml:\d+: roles\.yaml\.careteam_roles "
                                             r"should be a mapping"):
        load_mapping_file(roles)
    stray = folder / "notes.yaml"
    stray.write_text("anything: 1\n", encoding="utf-8")
    with pytest.raises(Misconfigured, match="not declared in"):
        load_mapping_file(stray)
