"""Errors a user can act on.

Every failure a user can cause (a missing file, a bad value, a store in use) is raised as a
`MetadbError` whose message is one line naming the offending thing and what to do. The CLI prints
that line and exits 1; it never shows a traceback for these.
"""

from __future__ import annotations


class MetadbError(Exception):
    """A user-facing error: `str(err)` is one line, with the fix after a '; '."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class UnknownNameError(MetadbError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class StoreInUseError(MetadbError):
    """Another process holds the store's write lock."""


class ImageError(MetadbError):
    """An image that cannot be decoded; ingest records it and goes on unless --strict."""
