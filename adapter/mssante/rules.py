"""The MSSanté message rules (`mappings/mssante.yaml`), loaded once per mappings folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from adapter.config import get_settings
from adapter.mapping_files import load_mapping_file

KIND = "mssante-message"  # the outbox kind of one message to one recipient
# the outbox kind of a Communication's new status: a transaction bundle whose conditional
# references are resolved on the target just before it is sent (`push.references`)
STATUS_KIND = "mssante-status"


@cache
def _rules(folder: Path) -> dict[str, Any]:
    return load_mapping_file(folder / "mssante.yaml") or {}


def mssante_rules() -> dict[str, Any]:
    return _rules(get_settings().mappings_dir)
