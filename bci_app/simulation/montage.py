"""The 128-channel montage of the virtual subject (MNE's ``biosemi128``)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MONTAGE_NAME = "biosemi128"


@lru_cache(maxsize=1)
def _montage_positions() -> tuple[tuple[str, ...], np.ndarray]:
    import mne

    montage = mne.channels.make_standard_montage(MONTAGE_NAME)
    ch_pos = montage.get_positions()["ch_pos"]
    names = tuple(montage.ch_names)
    pos = np.array([ch_pos[n] for n in names], dtype=float)
    pos.setflags(write=False)
    return names, pos


def standard_montage_128() -> list[str]:
    """The 128 channel names of MNE's ``'biosemi128'`` montage (``A1`` ... ``D32``)."""
    return list(_montage_positions()[0])


def channel_directions(ch_names: list[str] | None = None) -> np.ndarray:
    """Unit vectors ``[C, 3]`` (head frame: x right, y front, z up) of ``ch_names``.

    Raises ``ValueError`` naming the channels that are not in ``biosemi128``.
    """
    names, pos = _montage_positions()
    if ch_names is None:
        sel = np.arange(len(names))
    else:
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in ch_names if n not in index]
        if missing:
            raise ValueError(
                f"channels {missing[:5]}{'...' if len(missing) > 5 else ''} are not in the "
                f"{MONTAGE_NAME} montage; expected names from standard_montage_128()"
            )
        sel = np.array([index[n] for n in ch_names], dtype=int)
    p = pos[sel]
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def scalp_blob(directions: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    """A smooth topography: Gaussian in the great-circle angle (radians) from ``centre``."""
    c = np.asarray(centre, dtype=float)
    c = c / np.linalg.norm(c)
    ang = np.arccos(np.clip(directions @ c, -1.0, 1.0))
    return np.exp(-0.5 * (ang / width) ** 2)


def direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from azimuth (0 = front/+y, 90 = right/+x) and elevation (up)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
