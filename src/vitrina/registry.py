"""Name -> class registries (models, encoders): one mechanism so every plug-in is found the same way."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, type[T]], Generic[T]):
    """A dict of classes by their `name` attribute, with a decorator to add and a factory to build."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: make `cls` available by its `name`."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.kind} name '{name}' registered twice")
        self[name] = cls
        return cls

    def create(self, name: str, **params: Any) -> T:
        if name not in self:
            raise ValueError(f"unknown {self.kind} '{name}'; known: {', '.join(sorted(self))}")
        return self[name](**params)
