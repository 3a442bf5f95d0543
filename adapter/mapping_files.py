"""The one loader of `mappings/`: parses a file and checks it against `mappings/schema.yaml`.

Mapping knowledge is data, and a misspelt key in it would otherwise be silently ignored (a
section never mapped, a rule never applied): a key the schema does not declare, or a list where
a mapping is expected, stops the loading with the file and the line.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import Misconfigured

_SCHEMA = "schema.yaml"
# libyaml's parser when PyYAML was built with it: the same nodes, with their lines, in a fifth of
# the time; every process that maps letters loads these files at start.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_mapping_file(path: Path) -> Any:
    """The parsed file (a mapping file of `mappings/`, or any YAML beside a `schema.yaml`)."""
    loader = _Loader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()  # parsed once: checked, then built
        root = _mappings_root(path)
        if root is not None:
            shape = _shape_of(root, path.resolve().relative_to(root).as_posix())
            if shape is None:
                raise Misconfigured(f"{path}: not declared in {root / _SCHEMA}")
            if node is not None:
                _check(node, shape, path, path.name)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _mappings_root(path: Path) -> Path | None:
    for folder in path.resolve().parents:
        if (folder / _SCHEMA).is_file():
            return folder
    return None


@lru_cache(maxsize=4)
def _schema(root: Path) -> dict[str, Any]:
    files: dict[str, Any] = yaml.load((root / _SCHEMA).read_text(encoding="utf-8"),
                                      Loader=_Loader)["files"]
    return files


def _shape_of(root: Path, name: str) -> Any:
    files = _schema(root)
    if name in files:
        return files[name]
    return next((shape for pattern, shape in files.items() if fnmatch.fnmatch(name, pattern)),
                None)


def _check(node: yaml.Node, shape: Any, path: Path, where: str) -> None:
    line = node.start_mark.line + 1
    if shape == "any":
        return
    if shape == "scalar":
        if not isinstance(node, yaml.ScalarNode):
            raise Misconfigured(f"{path}:{line}: {where} should be a single value")
        return
    if isinstance(shape, list):
        if not isinstance(node, yaml.SequenceNode):
            raise Misconfigured(f"{path}:{line}: {where} should be a list")
        for index, item in enumerate(node.value):
            _check(item, shape[0], path, f"{where}[{index}]")
        return
    if not isinstance(node, yaml.MappingNode):
        raise Misconfigured(f"{path}:{line}: {where} should be a mapping")
    for key, value in node.value:
        name = key.value
        if "*" in shape:
            _check(value, shape["*"], path, f"{where}.{name}")
        elif name in shape:
            _check(value, shape[name], path, f"{where}.{name}")
        else:
            known = ", ".join(sorted(shape))
            raise Misconfigured(f"{path}:{key.start_mark.line + 1}: unknown key {name!r} in "
                                f"{where} (known: {known})")
