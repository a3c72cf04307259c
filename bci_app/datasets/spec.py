"""Data SPEC strings -> data sets: ``load_spec("session:rec.xdf,markers=PsychoPy")``.

    synthetic[:N][,seed=S][,design=rapid|block][,snr=X][,montage=M][,sfreq=F][,model=attributes|components][,classes=K]
    spampinato:EEG.pth[,SPLITS.pth][,split=I][,subject=K][,start=A][,stop=B]
    things-eeg2:DIR[,subject=K][,average=1]
    session:DIR_OR_FILE[,eeg=NAME][,markers=NAME][,units=uV][,trigger=NAME][,event_map=FILE.tsv][,photodiode=NAME]

A session FILE is a ``.fif``, an ``.xdf`` or any raw file MNE reads (.vhdr, .bdf, .edf, .set,
.cnt, .mff); ``trigger`` names its stim channel (codes -> markers) and ``event_map`` maps
markers and codes to stimulus ids (``--event-map``/``--trigger-channel`` on the commands);
``photodiode`` names a light-sensor channel that each trial is re-timed to
(``--photodiode``; the data set's ``photodiode`` holds the marker-to-light delays).
``model=components`` simulates the other generative structure (shared ERP components
mixed per class) instead of the attribute-driven virtual subject; ``classes=K`` shows only
``K`` of the 40 classes (spread over shapes and colours, the same for every seed).
``eeg``/``markers`` choose an XDF file's streams by name (default: by type), ``units``
overrides its channel units. ``marker_pattern`` (``--marker-pattern``) maps the marker
strings of a session to stimulus ids, as on ``bci-app live``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from bci_app.datasets.base import EEGImageDataset
from bci_app.datasets.splits import check_split_disjoint, split_by_image
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import MarkerMapper

log = logging.getLogger(__name__)

SPEC_HELP = (
    "expected one of: synthetic[:N][,seed=S][,design=rapid|block][,snr=X][,montage=M][,sfreq=F][,model=attributes|components][,classes=K], "
    "spampinato:EEG.pth[,SPLITS.pth], things-eeg2:DIR, "
    "session:DIR_OR_FILE[,eeg=NAME][,markers=NAME][,units=uV][,trigger=NAME][,event_map=FILE.tsv]"
    "[,photodiode=NAME] "
    "(FILE: .fif, .xdf, .vhdr, .bdf, .edf, .set, .cnt, .mff)"
)


def marker_mapper(pattern: str | None) -> MarkerMapper:
    """The marker mapper of ``--marker-pattern`` (None: the app's ``stim/<id>`` markers).

    The pattern must have a named group ``id`` (the stimulus id), as on ``bci-app live``.
    """
    if pattern is None:
        return MarkerMapper()
    mapper = MarkerMapper(pattern)  # ValueError for an invalid regex
    if "id" not in re.compile(pattern).groupindex:
        raise ValueError(
            f"--marker-pattern {pattern!r} has no named group 'id'; expected a regular "
            r"expression whose group (?P<id>...) captures the stimulus id, e.g. '^stim/(?P<id>.+)$'"
        )
    return mapper


def parse_spec(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """``"kind:a,b,k=v"`` -> ``(kind, [a, b], {k: v})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty data spec; {SPEC_HELP}")
    kind, _, rest = spec.strip().partition(":")
    if kind.startswith("synthetic") and "," in kind:  # "synthetic,seed=1"
        kind, _, more = kind.partition(",")
        rest = f",{more}" + (f",{rest}" if rest else "")
    pos, kw = [], {}
    for part in [p for p in rest.split(",") if p != ""]:
        if re.match(r"^[a-z_]+=", part):
            k, _, v = part.partition("=")
            kw[k] = v
        else:
            pos.append(part)
    return kind, pos, kw


def load_spec(
    spec: str,
    images_dir: str | Path | None = None,
    preprocessing: PreprocessingSpec | None = None,
    split_seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
    marker_pattern: str | None = None,
    event_map: str | Path | None = None,
    trigger_channel: str | None = None,
    photodiode: str | None = None,
) -> EEGImageDataset:
    """Load the data set named by ``spec`` (see the module docstring), split by image.

    ``event_map`` (``--event-map``), ``trigger_channel`` (``--trigger-channel``) and
    ``photodiode`` (``--photodiode``) apply to sessions, as the spec options
    ``event_map=FILE``, ``trigger=NAME`` and ``photodiode=NAME`` do."""
    mapper = marker_mapper(marker_pattern)
    kind, pos, kw = parse_spec(spec)
    given = [flag for flag, v in (("--event-map", event_map), ("--trigger-channel", trigger_channel),
                                  ("--photodiode", photodiode)) if v is not None]
    if given and kind != "session":
        raise ValueError(
            f"option(s) {', '.join(given)} apply to recorded sessions (session:...), not to "
            f"{kind!r} data ({spec!r}); drop them or use a session spec"
        )
    if marker_pattern is not None and kind != "session":
        raise ValueError(
            f"--marker-pattern applies to recorded sessions (session:...), not to {kind!r} data "
            f"({spec!r}), whose markers are fixed; drop the flag or use a session spec"
        )
    if kind == "synthetic":
        from bci_app.datasets.synthetic import load_synthetic

        ds = load_synthetic(
            n_trials=int(pos[0]) if pos else 2000,
            seed=int(kw.pop("seed", 0)),
            design=kw.pop("design", "rapid"),
            snr=float(kw.pop("snr", 1.0)),
            preprocessing=preprocessing,
            montage=kw.pop("montage", None),
            sfreq=float(kw.pop("sfreq")) if "sfreq" in kw else None,
            model=kw.pop("model", "attributes"),
            classes=_int_option(kw.pop("classes"), "classes", spec) if "classes" in kw else None,
        )
        _no_left(kw, spec)
        ds.splits = split_by_image(ds.stim_ids, ds.subjects, test_frac, val_frac, split_seed)
    elif kind == "spampinato":
        from bci_app.datasets.spampinato import load_spampinato

        if not pos:
            raise ValueError(f"data spec {spec!r}: spampinato needs a file; {SPEC_HELP}")
        ds = load_spampinato(
            pos[0], pos[1] if len(pos) > 1 else None, images_dir=images_dir,
            split=int(kw.pop("split", 0)),
            subject=int(kw.pop("subject")) if "subject" in kw else None,
            start=int(kw.pop("start", 20)), stop=int(kw.pop("stop", 460)),
            split_seed=split_seed, test_frac=test_frac, val_frac=val_frac,
        )
        _no_left(kw, spec)
    elif kind == "things-eeg2":
        from bci_app.datasets.things_eeg2 import load_things_eeg2

        if not pos:
            raise ValueError(f"data spec {spec!r}: things-eeg2 needs a directory; {SPEC_HELP}")
        ds = load_things_eeg2(
            pos[0], images_dir=images_dir,
            subject=int(kw.pop("subject")) if "subject" in kw else None,
            average=bool(int(kw.pop("average", 0))),
            split_seed=split_seed, val_frac=val_frac,
        )
        _no_left(kw, spec)
    elif kind == "session":
        from bci_app.datasets.sessions import load_session

        if not pos:
            raise ValueError(
                f"data spec {spec!r}: session needs a directory or a recording file; {SPEC_HELP}"
            )
        xdf_opts = {"eeg_stream": kw.pop("eeg", None), "marker_stream": kw.pop("markers", None),
                    "units": kw.pop("units", None)}
        event_map = kw.pop("event_map", None) or event_map
        trigger_channel = kw.pop("trigger", None) or trigger_channel
        photodiode = kw.pop("photodiode", None) or photodiode
        _no_left(kw, spec)
        if event_map is not None:
            from bci_app.stimuli import DemoStimulusSet, EventMap

            # the demo set is the stimulus set unless --images names another
            known = DemoStimulusSet() if images_dir is None else None
            mapper = EventMap.load(event_map, known).with_fallback(
                mapper if marker_pattern is not None else None)
        ds = load_session(pos[0], images_dir=images_dir, preprocessing=preprocessing,
                          mapper=mapper, trigger_channel=trigger_channel, photodiode=photodiode,
                          **xdf_opts)
        ds.splits = split_by_image(ds.stim_ids, ds.subjects, test_frac, val_frac, split_seed)
    else:
        raise ValueError(f"unknown data spec kind {kind!r} in {spec!r}; {SPEC_HELP}")
    ds.source = spec
    check_split_disjoint(ds.stim_ids, ds.splits, spec)
    if ds.skipped:
        log.warning("%s: skipped trials %s", spec, ds.skipped)
    return ds


def read_recording_spec(text: str):
    """``[session:]PATH[,eeg=NAME][,markers=NAME][,units=U]`` -> the recording's ``mne.io.Raw``
    (markers as annotations, volts): what ``bci-app replay`` streams for an XDF file."""
    spec = text if str(text).startswith("session:") else f"session:{text}"
    _kind, pos, kw = parse_spec(spec)
    if len(pos) != 1:
        raise ValueError(f"{text!r}: expected one recording path with options; {SPEC_HELP}")
    from bci_app.datasets.sessions import read_recording

    opts = {"eeg_stream": kw.pop("eeg", None), "marker_stream": kw.pop("markers", None),
            "units": kw.pop("units", None), "trigger_channel": kw.pop("trigger", None)}
    kw.pop("event_map", None)  # applies to the receiving pipeline, not to the raw
    _no_left(kw, spec)
    return read_recording(pos[0], **opts)


def _int_option(value: str, name: str, spec: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"data spec {spec!r}: {name}={value!r} is not an integer; {SPEC_HELP}"
        ) from None


def _no_left(kw: dict[str, str], spec: str) -> None:
    if kw:
        raise ValueError(f"data spec {spec!r}: unknown option(s) {sorted(kw)}; {SPEC_HELP}")
