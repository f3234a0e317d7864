"""PEP 562 module ``__getattr__`` for a package whose public names live in heavy modules:
the package imports without Keras (so ``python -m mobilenet_zoo.<package>`` parses its flags
first) and each name loads on first use. The names are also imported under
``TYPE_CHECKING`` in the package, so IDEs, type checkers and import-linter see them."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from mobilenet_zoo.backend import prepare_backend


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a public name to the module
    that defines it; any other name is tried as a submodule (``package.name``)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            prepare_backend()  # as the package root's names do: the TF-free fallback, quietly
            value = getattr(importlib.import_module(exports[name]), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def lazy_dir(module_globals: dict[str, Any]) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing its ``__all__`` (the lazy names included)."""
    return lambda: sorted(set(module_globals.get("__all__", ())) | {
        k for k in module_globals if not k.startswith("_")})
