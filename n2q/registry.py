"""Name -> class registries: the classes an INI ``Type=`` value (or option value) selects.

Each package keeps its own table (``DATABASES``, ``TRANSFORMATIONS``, ...) so that tests can
parametrize over it; ``registrar`` makes the class decorator that fills one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

C = TypeVar("C", bound=type)


def registrar(table: dict[str, C], attribute: str) -> Callable[[str], Callable[[C], C]]:
    """A decorator factory: ``@register("Name")`` stores the class in ``table`` under
    ``"Name"`` and sets the class attribute ``attribute`` to ``"Name"``. Two different classes
    under one name is a programming error (a re-imported module re-registers its own class)."""

    def register(name: str) -> Callable[[C], C]:
        def decorate(cls: C) -> C:
            old = table.get(name)
            if old is not None and (old.__module__, old.__qualname__) != (
                    cls.__module__, cls.__qualname__):
                raise ValueError(f"{name!r} is registered twice: {old.__module__}."
                                 f"{old.__qualname__} and {cls.__module__}.{cls.__qualname__}")
            setattr(cls, attribute, name)
            table[name] = cls
            return cls

        return decorate

    return register
