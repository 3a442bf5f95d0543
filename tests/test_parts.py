"""Late imports between parts: an absent part is skipped, a broken one is not hidden."""

import sys

import pytest

from adapter.parts import optional


def test_an_absent_part_is_none_and_a_present_one_is_returned() -> None:
    assert optional("adapter.no_such_part", "router") is None
    assert optional("adapter.no_such_part.models") is None
    assert optional("adapter.parts", "optional") is optional


def test_an_import_error_inside_an_existing_module_propagates(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "liaison_broken_part.py").write_text("import liaison_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        optional("liaison_broken_part")
    sys.modules.pop("liaison_broken_part", None)
