"""User-facing errors.

Anything the user can fix (a missing file, a wrong option, corrupt data) raises a subclass of
:class:`EndogsError` with a one-line message that names the path and the fix. The CLI prints the
message and exits with status 2, without a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class EndogsError(Exception):
    """An error the user can fix; its message is one line."""

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path is not None else None
        message = " ".join(str(message).split())  # keep it on one line
        super().__init__(f"{path}: {message}" if path is not None else message)


class DataError(EndogsError):
    """A dataset on disk is missing, malformed or inconsistent."""


class ConfigError(EndogsError):
    """An option or configuration value is invalid."""
