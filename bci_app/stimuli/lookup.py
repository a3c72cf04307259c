"""Looking up the seen image of a trial without letting an unknown stimulus stop a session."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def seen_image_or_none(lookup: Callable[[str], np.ndarray | None] | None,
                       stim_id: str | None) -> np.ndarray | None:
    """``lookup(stim_id)``, or None when there is no lookup, no stimulus id, or the stimulus
    set does not know the id (a marker of another experiment, a missing image file)."""
    if stim_id is None or lookup is None:
        return None
    try:
        return lookup(stim_id)
    except (KeyError, ValueError, FileNotFoundError):
        return None
