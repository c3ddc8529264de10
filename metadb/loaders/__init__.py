"""Loaders, one module per on-disk layout; every module in this package registers itself."""

from __future__ import annotations

import importlib
import pkgutil

from metadb.loaders.base import Loader, loaders, register_loader

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Loader", "loaders", "register_loader", "create_loader"]


def create_loader(layout: str, root, **params) -> Loader:
    """Build the loader for a layout name; unknown names fail with the closest matches."""
    return loaders.entry(layout).factory(root, **params)
