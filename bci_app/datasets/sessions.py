"""Sessions recorded (or simulated) by the app, and LabRecorder XDF files.

``session:DIR_OR_FILE``: a FIF whose annotations carry the marker strings (a session
directory's ``session_raw.fif``, a ``bci-app simulate`` file), an ``.xdf`` file
(:mod:`bci_app.datasets.xdf`) or any raw file MNE reads (.vhdr, .bdf, .edf, .set, .cnt,
.mff: :mod:`bci_app.datasets.raw_formats`; a trigger channel's codes become markers).
Markers may also map through an event map (``--event-map``,
:class:`~bci_app.stimuli.EventMap`, which is called like a mapper). Markers map to stimulus ids through a
:class:`~bci_app.stimuli.MarkerMapper` (``--marker-pattern``); ids of the demo set resolve
to its procedural images and classes, other ids to ``--images DIR`` (class = the image's
sub-folder, as ``bci-app present --images`` shows them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bci_app.datasets.base import IMAGE_EXTS, EEGImageDataset, find_image, read_image
from bci_app.preprocessing import EpochedData, PreprocessingSpec
from bci_app.stimuli import DemoStimulusSet, MarkerMapper

XDF_SUFFIX = ".xdf"


def default_spec(ch_names: list[str], sfreq: float = 1000.0) -> PreprocessingSpec:
    """The app's default window and filters for ``ch_names`` at ``sfreq``; a filter edge at
    or above the Nyquist frequency (a 50 Hz notch at 100 Hz) is left out: the amplifier's
    anti-alias filter has already removed what lies there."""
    from bci_app.config import EpochConfig

    cfg = EpochConfig(sfreq=sfreq, n_channels=len(ch_names))
    nyquist = sfreq / 2.0
    if cfg.notch is not None and cfg.notch >= nyquist:
        cfg.notch = None
    if cfg.h_freq is not None and cfg.h_freq >= nyquist:
        cfg.h_freq = None
    return PreprocessingSpec.from_epoch_config(cfg, ch_names)


def eeg_channel_names(raw: Any) -> list[str]:
    """Names of the EEG-typed channels of ``raw`` (EOG, AUX, stim... are left out)."""
    types = raw.get_channel_types()
    names = [n for n, t in zip(raw.ch_names, types, strict=True) if t == "eeg"]
    if not names:
        raise ValueError(
            f"the recording has no EEG channel (channel types: {sorted(set(types))}); "
            "expected EEG channels"
        )
    return names


class _FolderImages:
    """Images of non-demo stimuli under ``folder``: ``<id>.<ext>`` anywhere below it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._paths: dict[str, Path] = {}

    def path(self, stim_id: str) -> Path:
        if stim_id not in self._paths:
            hit = find_image(self.folder, stim_id)
            if hit is None:
                for ext in IMAGE_EXTS:
                    hits = sorted(self.folder.rglob(f"{Path(stim_id).name}{ext}"))
                    hits = [h for h in hits if h.with_suffix("").as_posix().endswith(stim_id)]
                    if hits:
                        hit = hits[0]
                        break
            if hit is None:
                raise FileNotFoundError(
                    f"no image for stimulus {stim_id!r} under {self.folder} (tried {IMAGE_EXTS}); "
                    "expected <images>/<class>/<stimulus id>.<ext>"
                )
            self._paths[stim_id] = hit
        return self._paths[stim_id]

    def class_of(self, stim_id: str) -> str:
        rel = self.path(stim_id).relative_to(self.folder).parent.as_posix()
        return "" if rel == "." else rel


def dataset_from_epochs(
    epochs: EpochedData,
    spec: PreprocessingSpec,
    images_dir: str | Path | None = None,
    stimuli: DemoStimulusSet | None = None,
) -> EEGImageDataset:
    """The good trials of ``epochs`` as a data set; rejected/unknown trials are counted."""
    stimuli = stimuli if stimuli is not None else DemoStimulusSet()
    skipped: dict[str, int] = dict(epochs.reject_counts())
    if epochs.n_unknown:
        skipped["unknown_marker"] = int(epochs.n_unknown)
    good = epochs.good()
    ids = list(good.stim_ids)
    keep = list(range(len(ids)))
    demo = all(s in stimuli for s in ids)
    folder = _FolderImages(Path(images_dir)) if images_dir is not None else None
    if not demo and folder is None:
        keep = [i for i, s in enumerate(ids) if s in stimuli]
        skipped["not_demo_stimulus"] = len(ids) - len(keep)
        ids = [ids[i] for i in keep]
        demo = True
    if not ids:
        raise ValueError(
            f"no usable trial in the recording (skipped: {skipped}); expected markers that map to "
            "stimulus ids (check --marker-pattern, and pass --images DIR for your own images)"
        )
    if demo:
        labels = np.array([stimuli.label(s) for s in ids], dtype=np.int64)
        class_names = stimuli.class_names()
        attributes, layout = stimuli.class_attributes(), stimuli.layout(ids)

        def loader(sid: str) -> np.ndarray:
            return np.array(stimuli.image(sid))
    else:
        classes = [folder.class_of(s) for s in ids]
        class_names = sorted(set(classes))
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.array([index[c] for c in classes], dtype=np.int64)
        class_names = [c.split("/")[-1] or folder.folder.name for c in class_names]
        attributes, layout = None, None

        def loader(sid: str) -> np.ndarray:
            return read_image(folder.path(sid))
    return EEGImageDataset(
        X=np.ascontiguousarray(good.X[keep], dtype=np.float32),
        labels=labels,
        stim_ids=ids,
        subjects=np.zeros(len(ids), dtype=np.int64),
        class_names=class_names,
        class_attributes=attributes,
        layout=layout,
        spec=spec,
        image_loader=loader,
        skipped=skipped,
    )


def read_recording(
    path: str | Path,
    *,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
    units: str | None = None,
    trigger_channel: str | None = None,
):
    """The raw (annotations = markers) of a session directory, an ``.xdf`` file or any raw
    file MNE reads (:mod:`bci_app.datasets.raw_formats`: .fif, .vhdr, .bdf, .edf, .set,
    .cnt, .mff...).

    XDF options (``eeg_stream``, ``marker_stream``, ``units``) are those of
    :func:`bci_app.datasets.xdf.read_raw_xdf`; other formats give them as errors.
    ``trigger_channel`` names a stim channel whose codes become markers (default: the
    stim-typed channel of a file without marker annotations); a name the file lacks is an
    error listing its channels.
    """
    from bci_app.datasets.raw_formats import (
        FORMATS_HELP,
        events_from_trigger,
        is_mne_raw,
        read_raw_file,
    )

    path = Path(path)
    if path.suffix.lower() == XDF_SUFFIX:
        from bci_app.datasets.xdf import read_raw_xdf

        raw = read_raw_xdf(path, eeg_stream=eeg_stream, marker_stream=marker_stream, units=units)
        return events_from_trigger(raw, trigger_channel)
    given = {k: v for k, v in (("eeg", eeg_stream), ("markers", marker_stream), ("units", units)) if v}
    if given:
        raise ValueError(
            f"session {path}: option(s) {sorted(given)} apply to XDF files only; a FIF session "
            "has one EEG recording in volts"
        )
    if path.is_dir() and not is_mne_raw(path):  # a session directory (an .mff is a directory too)
        fifs = sorted(path.glob("*.fif")) + sorted(path.glob("*.fif.gz"))
        if not fifs:
            hint = (" (its chunks/ are an unfinished recording: write session_raw.fif with "
                    "bci_app.acquisition.recorder.finalize_session(DIR))"
                    if (path / "chunks").is_dir() else "")
            raise FileNotFoundError(
                f"session directory {path} holds no .fif file{hint}; expected a recording "
                "(session_raw.fif) or pass the recording file itself"
            )
        path = fifs[0]
    if not path.exists():
        raise FileNotFoundError(f"session {path} does not exist; expected {FORMATS_HELP}")
    if not is_mne_raw(path):
        raise ValueError(f"session {path}: unknown file format {path.suffix!r}; expected {FORMATS_HELP}")
    return events_from_trigger(read_raw_file(path), trigger_channel)


def load_session(
    path: str | Path,
    images_dir: str | Path | None = None,
    preprocessing: PreprocessingSpec | None = None,
    mapper: MarkerMapper | None = None,
    *,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
    units: str | None = None,
    photodiode: str | None = None,
    trigger_channel: str | None = None,
) -> EEGImageDataset:
    """A recorded session (FIF + marker annotations, or XDF) epoched like the live path.

    Without ``preprocessing`` the EEG-typed channels of the recording are used at its
    own rate with the default window; with it, its channels are picked by name.
    With ``photodiode`` (``--photodiode CHANNEL``) each trial is re-timed to the light edge
    after its marker (:func:`~bci_app.preprocessing.epochs.epoch_raw`); the data set's
    ``photodiode`` attribute then holds the delays' summary
    (:func:`~bci_app.preprocessing.photodiode.photodiode_summary`).
    ``trigger_channel`` (``--trigger-channel``): as in :func:`read_recording`; with a
    ``mapper`` that is an :class:`~bci_app.stimuli.EventMap` its codes map to stimulus ids.
    The recording's lost data (``BAD_gap`` stretches, joins such as an XDF clock reset) are
    counted in the data set's ``gaps``; the windows they touch in ``skipped["gap"]``.
    """
    from bci_app.preprocessing import epoch_raw
    from bci_app.preprocessing.epochs import lost_summary

    raw = read_recording(path, eeg_stream=eeg_stream, marker_stream=marker_stream, units=units,
                         trigger_channel=trigger_channel)
    if preprocessing is None:
        names = eeg_channel_names(raw)
        if photodiode is not None:
            from bci_app.preprocessing.epochs import photodiode_channel

            pd_name = raw.ch_names[photodiode_channel(raw, photodiode)]
            names = [n for n in names if n != pd_name]
        spec = default_spec(names, float(raw.info["sfreq"]))
    else:
        spec = preprocessing
    epochs = epoch_raw(raw, spec, mapper if mapper is not None else MarkerMapper(),
                       photodiode=photodiode)
    ds = dataset_from_epochs(epochs, spec, images_dir)
    ds.gaps = lost_summary(raw)
    if epochs.photodiode_delays_ms is not None:
        from bci_app.preprocessing.photodiode import photodiode_summary

        # delays of the trials that map to a stimulus (missing edges as NaN)
        ds.photodiode = photodiode_summary(epochs.photodiode_delays_ms)
    return ds
