"""Errors for files that exist but cannot be read as what they should be.

Libraries report a damaged or truncated file in their own words (safetensors' "invalid
header length", numpy's "buffer size must be a multiple of element size"), without the
file's name. Every loader of the app wraps the library call that parses a file in
:func:`reading`, which re-raises such an error as a :class:`DamagedFileError` naming the
file and what it should have been. This module imports nothing of the app (every layer
may use it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DamagedFileError(ValueError):
    """A file that exists but cannot be read as what it should be; the message starts with
    the file's path, then says what is wrong and what was expected."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


@contextmanager
def reading(path: str | Path, expected: str) -> Iterator[None]:
    """Run the code that parses ``path``; any error it raises becomes a
    :class:`DamagedFileError` naming the file, what it should be (``expected``, e.g.
    ``"a FIF raw file"``) and the library's own words. A missing file stays a
    ``FileNotFoundError``."""
    try:
        yield
    except (DamagedFileError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - whatever the library raises for bad bytes
        raise DamagedFileError(
            path,
            f"cannot be read ({type(err).__name__}: {err}); expected {expected}: the file is "
            "truncated, damaged or of another kind - replace it with a complete copy",
        ) from err
