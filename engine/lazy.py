"""A package's public names, imported from its submodules on first use (PEP 562).

``engine.runs`` and ``engine.config`` re-export names from their submodules; importing them all with
the package made every ``from engine.runs.meta import RunMeta`` pay for the run writers, the process
control and the event readers too (the console's first paint does not need them). A package lists
where each name lives and installs the two module hooks this returns:

    __getattr__, __dir__ = lazy_exports(__name__, globals(), {"RunMeta": "meta", ...})

Type checkers see the names through an ``if TYPE_CHECKING:`` import of the same names. Torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], module_of: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` (its ``globals()``: ``namespace``),
    where ``module_of`` maps each public name to the submodule that defines it."""

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # the next look-up is a plain module attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return __getattr__, __dir__
