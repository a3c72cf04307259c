"""Loaders of recorded data: (EEG window, seen image) pairs selected by a data SPEC.

:func:`load_spec` returns an :class:`EEGImageDataset` split by image (no image in both
train and test; :func:`check_split_disjoint` checks it). Kinds: ``synthetic``
(:mod:`~bci_app.datasets.synthetic`), ``spampinato`` (:mod:`~bci_app.datasets.spampinato`),
``things-eeg2`` (:mod:`~bci_app.datasets.things_eeg2`), ``session`` (FIF or XDF,
:mod:`~bci_app.datasets.sessions`, :mod:`~bci_app.datasets.xdf`).
"""

from __future__ import annotations

from bci_app.datasets.base import EEGImageDataset
from bci_app.datasets.sessions import load_session, read_recording
from bci_app.datasets.spec import (
    SPEC_HELP,
    load_spec,
    marker_mapper,
    parse_spec,
    read_recording_spec,
)
from bci_app.datasets.splits import check_split_disjoint, split_by_image

__all__ = [
    "SPEC_HELP",
    "EEGImageDataset",
    "check_split_disjoint",
    "load_session",
    "load_spec",
    "marker_mapper",
    "parse_spec",
    "read_recording",
    "read_recording_spec",
    "split_by_image",
]
