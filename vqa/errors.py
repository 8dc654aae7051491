"""One error hierarchy: everything the package raises on purpose derives from :class:`VqaError`."""

from __future__ import annotations


class VqaError(Exception):
    """Base class of the errors VQA raises on purpose."""


class BadSourceError(VqaError):
    """A source that cannot be analysed at all (not media, empty, unreachable, undecodable).

    ``str(err)`` is one line naming the source and the reason; the CLI prints it and exits 2.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{source}: {self.reason}")


class ConfigError(VqaError):
    """An invalid detector name, threshold or option."""
