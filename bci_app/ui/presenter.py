"""Stimulus presentation: ``bci-app present`` and the headless marker publisher.

Two ways to run a presentation schedule, both pushing one LSL string marker
(``format_marker(stim_id)``, stream type ``Markers``) per stimulus:

- :class:`PresenterWindow` (Qt, in :mod:`bci_app.ui.presenter_window`): shows the
  images full screen and pushes each marker right after the frame holding the image
  has been flushed to the window (timestamp taken right after the swap), with an
  optional photodiode patch;
- :class:`MarkerSchedulePublisher`: a plain thread, no window, used by the headless
  demo, tests and benchmarks.

This module does not import Qt, so headless sessions can use the publisher.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.stimuli import DemoStimulusSet, Schedule, format_marker, make_schedule

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def make_marker_outlet(name: str = "bci-app-markers", source_id: str | None = None):
    """An LSL outlet for string markers (irregular rate, one channel, type ``Markers``)."""
    import pylsl

    info = pylsl.StreamInfo(
        name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id or f"{name}-{uuid.uuid4().hex[:8]}"
    )
    return pylsl.StreamOutlet(info)


class ImageFolderSet:
    """Images of a folder (sub-folders = classes); stimulus id = path relative to the folder
    without suffix, e.g. ``"dogs/img_001"``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {self.folder} does not exist")
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"no images in {self.folder}; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
            )
        self._files = {p.relative_to(self.folder).with_suffix("").as_posix(): p for p in files}
        classes = sorted({sid.split("/")[0] if "/" in sid else "" for sid in self._files})
        self._class_index = {c: i for i, c in enumerate(classes)}

    @property
    def stim_ids(self) -> list[str]:
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, stim_id: object) -> bool:
        return stim_id in self._files

    def label(self, stim_id: str) -> int:
        return self._class_index[stim_id.split("/")[0] if "/" in stim_id else ""]

    def image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        from PIL import Image

        img = Image.open(self._files[stim_id]).convert("RGB")
        if size:
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def schedule_for(stimuli: Any, n_trials: int, *, on: float, off: float, order: str, seed: int,
                 start: float = 1.0) -> Schedule:
    """A schedule over any stimulus set with ``stim_ids`` and ``label(stim_id)``."""
    ids = stimuli.stim_ids
    return make_schedule(ids, [stimuli.label(s) for s in ids], n_trials, on=on, off=off,
                         order=order, seed=seed, start=start)


class MarkerSchedulePublisher:
    """Push one LSL marker per stimulus of ``schedule`` from a thread, without a window.

    Onsets are kept on the LSL clock relative to the start (no drift accumulates), and
    each marker is stamped with the time it was meant for.

    Parameters
    ----------
    schedule : Schedule
        Stimulus ids and onsets (seconds from :meth:`start`).
    name, source_id : str
        LSL stream name and source id of the marker outlet.
    on_marker : callable, optional
        ``on_marker(stim_id, marker, timestamp)`` after each push (from this thread).
    outlet : pylsl.StreamOutlet, optional
        An existing outlet (else one is made).
    wait_for_consumers : float
        Seconds to wait at start for an inlet to connect (markers pushed before any
        consumer is subscribed would be lost); 0 to skip.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        name: str = "bci-app-markers",
        source_id: str | None = None,
        on_marker: Callable[[str, str, float], None] | None = None,
        outlet: Any = None,
        wait_for_consumers: float = 0.0,
    ) -> None:
        self.schedule = schedule
        self.name = name
        self.outlet = outlet if outlet is not None else make_marker_outlet(name, source_id)
        self.on_marker = on_marker
        self.wait_for_consumers = float(wait_for_consumers)
        self.pushed = 0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0: float | None = None
        self.error: BaseException | None = None

    def start(self) -> MarkerSchedulePublisher:
        if self._thread is not None:
            raise RuntimeError("MarkerSchedulePublisher already started")
        self._thread = threading.Thread(target=self._run, name="marker-publisher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        import pylsl

        try:
            if self.wait_for_consumers > 0:
                self.outlet.wait_for_consumers(self.wait_for_consumers)
            self.t0 = pylsl.local_clock()
            for stim_id, onset in zip(self.schedule.stim_ids, self.schedule.onsets, strict=True):
                target = self.t0 + float(onset)
                while not self._stop.is_set():
                    left = target - pylsl.local_clock()
                    if left <= 0:
                        break
                    self._stop.wait(min(left, 0.05) if left > 0.002 else 0)
                if self._stop.is_set():
                    break
                marker = format_marker(stim_id)
                self.outlet.push_sample([marker], target)
                self.pushed += 1
                if self.on_marker is not None:
                    self.on_marker(stim_id, marker, target)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller
            log.exception("marker publisher failed")
            self.error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every marker has been pushed (or the publisher stopped)."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def __getattr__(name: str) -> Any:  # lazy: importing this module never imports Qt
    if name == "PresenterWindow":
        from bci_app.ui.presenter_window import PresenterWindow

        return PresenterWindow
    raise AttributeError(name)


def load_stimuli(args: Any) -> Any:
    if getattr(args, "images", None):
        return ImageFolderSet(args.images)
    return DemoStimulusSet(seed=0)


def run_present(args: Any) -> int:
    """``bci-app present``: show the stimuli full screen (or windowed) and push markers."""
    from bci_app.ui.qt import ensure_app, has_display

    if not has_display():
        raise RuntimeError(
            "bci-app present needs a display (QT_QPA_PLATFORM is offscreen or no DISPLAY); "
            "for a presentation without a window, use MarkerSchedulePublisher or `bci-app demo --headless`"
        )
    stimuli = load_stimuli(args)
    n = args.trials or len(stimuli)
    schedule = schedule_for(stimuli, n, on=args.on, off=args.off, order=args.order, seed=args.seed)
    app = ensure_app()
    from bci_app.ui.presenter_window import PresenterWindow

    win = PresenterWindow(stimuli, schedule, stream_name=args.stream_name,
                          photodiode=args.photodiode)
    win.show_on_screen(args.screen, fullscreen=not args.windowed)
    win.finished.connect(app.quit)
    win.start()
    print(f"presenting {n} stimuli on stream {args.stream_name!r} (Esc to stop)")
    app.exec()
    print(f"pushed {win.pushed} markers")
    return 0
