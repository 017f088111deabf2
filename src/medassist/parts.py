"""Registries of named parts (models, featurizers): built by name, stored by name.

A saved bundle records a part's registered name and plain keyword values, never a class, so it
loads without pickle.

Example:
    >>> MODELS = PartRegistry("model")
    >>> @MODELS.register("mlp")
    ... class MLP(nn.Module): ...
    >>> MODELS.get("mpl")
    ConfigError: Unknown model 'mpl'. By 'mpl', did you mean 'mlp'? Valid: mlp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from medassist.exceptions import ConfigError
from medassist.options import unknown_name_error

T = TypeVar("T")


class PartRegistry(Generic[T]):
    """A name → part mapping that rejects duplicates and suggests names for typos."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._parts: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        key = name.lower()

        def decorator(part: T) -> T:
            if key in self._parts:
                raise ConfigError(f"A {self.kind} named '{key}' is already registered.")
            self._parts[key] = part
            return part

        return decorator

    def get(self, name: str) -> T:
        key = str(name).strip().lower()
        if key in self._parts:
            return self._parts[key]
        raise unknown_name_error(name, sorted(self._parts), kind=self.kind)

    def names(self) -> list[str]:
        return sorted(self._parts)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._parts
