"""Late, by-name imports between liaison's parts.

Some parts reach others only at run time (the app mounts routers, the pusher queues subscription
notifications, the store creates every part's tables): importing them by name here avoids import
cycles, and a part that is absent is skipped rather than breaking the others.
"""

from __future__ import annotations

import importlib
from typing import Any


def optional(module_name: str, attribute: str | None = None) -> Any:
    """The module (or its `attribute`), or None when that module does not exist. An import
    error raised *inside* an existing module is a real bug and propagates."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name == module_name or module_name.startswith(f"{missing.name}."):
            return None
        raise
    return module if attribute is None else getattr(module, attribute, None)
