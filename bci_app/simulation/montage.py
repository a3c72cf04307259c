"""Electrode montages of the virtual subject: MNE's standard montages, any subset.

The default subject wears MNE's ``biosemi128`` cap (the seed paper's 128 channels).
:func:`resolve_montage` turns ``"biosemi64"``, ``"standard_1020"`` or a subset such as
``"standard_1020:Fz,Cz,Pz,O1,Oz,O2"`` into a montage name and channel list; topographies
are computed from the electrode directions seen from the head's origin.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MONTAGE_NAME = "biosemi128"


def make_montage(name: str = MONTAGE_NAME):
    """``mne.channels.make_standard_montage(name)``, quietly: MNE 1.13 warns that it will
    rename ``standard_1020``/``standard_1005``, names labs still use."""
    import warnings

    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return mne.channels.make_standard_montage(name)


@lru_cache(maxsize=8)
def _montage_positions(name: str = MONTAGE_NAME) -> tuple[tuple[str, ...], np.ndarray]:
    import mne

    try:
        montage = make_montage(name)
    except ValueError:
        raise ValueError(
            f"unknown montage {name!r}; expected an MNE standard montage, e.g. biosemi64, "
            f"biosemi128, standard_1020, easycap-M1 (all: "
            f"{', '.join(mne.channels.get_builtin_montages())})"
        ) from None
    ch_pos = montage.get_positions()["ch_pos"]
    names = tuple(n for n in montage.ch_names if np.all(np.isfinite(ch_pos[n])))
    pos = np.array([ch_pos[n] for n in names], dtype=float)
    # template montages in MRI coordinates (colin27, fsaverage, mgh) sit ~17 mm off the
    # origin: directions are taken from the centre of the sphere that fits the electrodes
    # (spherical montages such as biosemi* are centred already and are left untouched)
    A = np.c_[2 * pos, np.ones(len(pos))]
    centre = np.linalg.lstsq(A, (pos**2).sum(axis=1), rcond=None)[0][:3]
    if np.linalg.norm(centre) > 2e-3:
        pos = pos - centre
    pos.setflags(write=False)
    return names, pos


def standard_montage_128() -> list[str]:
    """The 128 channel names of MNE's ``'biosemi128'`` montage (``A1`` ... ``D32``)."""
    return list(_montage_positions(MONTAGE_NAME)[0])


def montage_channels(name: str = MONTAGE_NAME) -> list[str]:
    """All channel names of the MNE standard montage ``name``."""
    return list(_montage_positions(name)[0])


def resolve_montage(spec: str | None) -> tuple[str, list[str]]:
    """``"NAME"`` or ``"NAME:CH1,CH2,..."`` -> (montage name, channel names).

    ``None`` is the default subject's ``biosemi128``. Channel names of a subset are
    matched case-insensitively and returned as the montage spells them.
    """
    if spec is None or not str(spec).strip():
        return MONTAGE_NAME, standard_montage_128()
    name, _, subset = str(spec).strip().partition(":")
    names = montage_channels(name)
    if not subset.strip():
        return name, names
    by_lower = {n.lower(): n for n in names}
    wanted = [c.strip() for c in subset.replace("+", ",").split(",") if c.strip()]
    missing = [c for c in wanted if c.lower() not in by_lower]
    if missing:
        raise ValueError(
            f"channels {missing} are not in the {name} montage; expected names such as "
            f"{', '.join(names[:8])}, ... (mne.channels.make_standard_montage({name!r}).ch_names)"
        )
    picked = [by_lower[c.lower()] for c in wanted]
    if len(set(picked)) != len(picked):
        raise ValueError(f"montage {spec!r} names a channel twice; expected distinct channels")
    return name, picked


# the caps a virtual subject is looked up in, most common first
_CAPS = ("biosemi128", "biosemi64", "biosemi32", "biosemi16", "biosemi160", "biosemi256",
         "standard_1020", "standard_1005", "easycap-M1", "easycap-M10")


def montage_for_channels(ch_names: list[str]) -> str:
    """A montage spec (``"NAME"`` or ``"NAME:CH1,..."``) whose channels are exactly
    ``ch_names``: the first standard cap that has them all. The demo uses it so that a
    bundle trained for another cap meets a virtual subject wearing that cap.

    Raises ``ValueError`` naming the channels no standard cap has.
    """
    wanted = [str(c) for c in ch_names]
    lower = [c.lower() for c in wanted]
    for cap in _CAPS:
        names = montage_channels(cap)
        if [n.lower() for n in names] == lower:
            return cap
        have = {n.lower() for n in names}
        if all(c in have for c in lower):
            return f"{cap}:{','.join(wanted)}"
    known = {n.lower() for cap in _CAPS for n in montage_channels(cap)}
    missing = [c for c in wanted if c.lower() not in known]
    raise ValueError(
        f"no standard montage has the channels {missing[:8]}{' ...' if len(missing) > 8 else ''}; "
        f"expected names of one of {', '.join(_CAPS)}; pass --montage NAME[:CH1,CH2,...]"
    )


def channel_directions(ch_names: list[str] | None = None, montage: str = MONTAGE_NAME) -> np.ndarray:
    """Unit vectors ``[C, 3]`` (head frame: x right, y front, z up) of ``ch_names``.

    Raises ``ValueError`` naming the channels that are not in ``montage``.
    """
    names, pos = _montage_positions(montage)
    if ch_names is None:
        sel = np.arange(len(names))
    else:
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in ch_names if n not in index]
        if missing:
            raise ValueError(
                f"channels {missing[:5]}{'...' if len(missing) > 5 else ''} are not in the "
                f"{montage} montage; expected names from montage_channels({montage!r})"
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
