"""One registry per kind of plug-in (loader, extractor, measure, metric, backbone, query).

Modelled on timm's `register_model` / `create_model` / `list_models`: a decorator registers a
factory under a name and version, `create` builds by name and fails at once on an unknown name
with the closest matches, and `list` filters with fnmatch patterns in natural order. Adding a
plug-in is adding one module; nothing central is edited.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, TypeVar

from metadb.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    version: str
    factory: Callable[..., T]
    summary: str


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name.lower())]


class Registry(Generic[T]):
    """Name -> factory, with versions and one-line summaries taken from docstrings."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, version: str = "1") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name].factory is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, str(version), factory, doc[0] if doc else "")
            return factory

        return decorate

    def register_class(self, cls):
        """Class decorator for plug-ins that carry their own `name` and `version` attributes."""
        self.register(cls.name, cls.version)(cls)
        return cls

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(self.names())}"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {hint}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the named plug-in; None-valued kwargs are dropped so plug-in defaults win."""
        return self.entry(name).factory(**{k: v for k, v in kwargs.items() if v is not None})

    def names(self, include: str | Iterable[str] = "*", exclude: Iterable[str] = ()) -> list[str]:
        patterns = [include] if isinstance(include, str) else list(include)
        chosen = [n for n in self._entries if any(fnmatch.fnmatch(n, p) for p in patterns)]
        chosen = [n for n in chosen if not any(fnmatch.fnmatch(n, p) for p in exclude)]
        return sorted(chosen, key=_natural_key)

    def entries(self, include: str | Iterable[str] = "*") -> list[Entry[T]]:
        return [self._entries[n] for n in self.names(include)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
