"""Where a session's files go without ``--out``: ``runs/<command>-<date>-<time>`` in the
working directory (in a checkout, the folder ``.gitignore`` ignores)."""

from __future__ import annotations

import time
from pathlib import Path

RUNS_DIR = Path("runs")


def run_folder(command: str, now: float | None = None) -> Path:
    """``runs/<command>-YYYYmmdd-HHMMSS`` (local time of ``now``, default: now), with ``-2``,
    ``-3``... appended when a folder of that name exists already."""
    base = RUNS_DIR / f"{command}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    out, k = base, 2
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out
