"""One error type for everything a user can get wrong: it names the culprit and the problem."""

from __future__ import annotations

import re
from pathlib import Path

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class TumorscopeError(Exception):
    """A user-facing error: ``where`` (a file, a config key) and ``problem`` in plain words.

    The CLI prints ``str(err)`` and exits non-zero; no traceback is shown for these.
    """

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = str(where) if where is not None else None
        # library messages may quote an in-memory file's repr: never show it to a user
        self.problem = " ".join(_OBJECT_REPR.sub("(in memory)", problem).split())  # one line
        super().__init__(f"{self.where}: {self.problem}" if self.where else self.problem)


class ScanReadError(TumorscopeError):
    """A scan file is missing, unsupported, corrupt or holds unusable pixels."""


class ConfigError(TumorscopeError):
    """A configuration file or override has an unknown key or a wrong value."""


class CheckpointError(TumorscopeError):
    """A model checkpoint is missing, incomplete or does not match its card."""


class UnsupportedFormatError(ScanReadError):
    """The file type is not one tumorscope reads."""


class ImageTooLargeError(ScanReadError):
    """The image declares (or inflates to) more pixels than allowed: a decompression bomb."""


class BusyError(ScanReadError):
    """The scan cannot be decoded now: the shared decode budget stayed full (server busy)."""
