"""Stimulus presentation without Qt: schedules counted in frames, the marker outlet, and the
headless marker publisher.

Two ways to run a presentation schedule, both pushing one LSL string marker
(``format_marker(stim_id)``, stream type ``Markers``) per stimulus:

- :class:`~bci_app.ui.presenter_window.PresenterWindow` (Qt, with ``bci-app present``):
  shows the images full screen and pushes each marker right after the frame holding the
  image has been flushed to the window (timestamp taken right after the swap), with an
  optional photodiode patch; it builds on this module;
- :class:`MarkerSchedulePublisher`: a plain thread, no window, used by the headless
  demo, tests and benchmarks.

This module does not import Qt (nor the window's module), so headless sessions can use
the publisher.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from bci_app.stimuli import DemoStimulusSet, ImageFolderSet, Schedule, format_marker, make_schedule

log = logging.getLogger(__name__)


def make_marker_outlet(name: str = "bci-app-markers", source_id: str | None = None):
    """An LSL outlet for string markers (irregular rate, one channel, type ``Markers``)."""
    import pylsl

    info = pylsl.StreamInfo(
        name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id or f"{name}-{uuid.uuid4().hex[:8]}"
    )
    return pylsl.StreamOutlet(info)


def schedule_for(stimuli: Any, n_trials: int, *, on: float, off: float, order: str, seed: int,
                 start: float = 1.0) -> Schedule:
    """A schedule over any stimulus set with ``stim_ids`` and ``label(stim_id)``."""
    ids = stimuli.stim_ids
    return make_schedule(ids, [stimuli.label(s) for s in ids], n_trials, on=on, off=off,
                         order=order, seed=seed, start=start)


def visual_angle_px(degrees: float, distance_cm: float, px_per_cm: float) -> int:
    """Pixels subtended by ``degrees`` of visual angle at ``distance_cm`` from the screen.

    ``size = 2 * d * tan(deg / 2)``; e.g. 8 degrees at 57 cm on 38 px/cm is 303 px.
    """
    if not 0 < degrees < 180:
        raise ValueError(f"visual angle must be in (0, 180) degrees, got {degrees}")
    if distance_cm <= 0 or px_per_cm <= 0:
        raise ValueError(
            f"viewing distance and pixel density must be > 0, got {distance_cm} cm, "
            f"{px_per_cm} px/cm; pass --distance-cm and --screen-width-cm"
        )
    return max(1, int(round(2.0 * distance_cm * math.tan(math.radians(degrees) / 2) * px_per_cm)))


class FrameSchedule:
    """A presentation schedule counted in display frames, as PsychoPy times stimuli.

    Trial ``i`` is on from frame ``start[i]`` for ``n_on`` frames, then blank for ``n_off``
    frames; frame 0 is the first flip after the presentation starts. Durations are rounded
    to whole frames (``on``/``off`` give the seconds actually shown at ``refresh_hz``).
    """

    def __init__(self, schedule: Schedule, refresh_hz: float) -> None:
        if not 1.0 <= refresh_hz <= 1000.0:
            raise ValueError(f"refresh rate must be in 1..1000 Hz, got {refresh_hz}; pass --refresh")
        self.refresh_hz = float(refresh_hz)
        self.n_on = int(round(schedule.on * refresh_hz))
        if self.n_on < 1:
            raise ValueError(
                f"--on {schedule.on} s is shorter than one frame at {refresh_hz:g} Hz "
                f"({1000 / refresh_hz:.1f} ms); expected at least one frame"
            )
        self.n_off = int(round(schedule.off * refresh_hz))
        self.stim_ids = list(schedule.stim_ids)
        self.start = np.round(np.asarray(schedule.onsets) * refresh_hz).astype(np.int64)
        if len(self.start) > 1 and np.any(np.diff(self.start) < self.n_on):
            raise ValueError("stimulus onsets closer than the on-time; expected a schedule "
                             "whose onsets are at least --on apart")
        self.n_frames = int(self.start[-1] + self.n_on + self.n_off) if len(self.start) else 0
        self._by_frame = {int(f): i for i, f in enumerate(self.start)}

    @property
    def on(self) -> float:
        return self.n_on / self.refresh_hz

    @property
    def off(self) -> float:
        return self.n_off / self.refresh_hz

    def onset_trial(self, frame: int) -> int | None:
        """The trial whose first frame is ``frame``, else None."""
        return self._by_frame.get(int(frame))

    def content(self, frame: int) -> int | None:
        """The trial shown on ``frame`` (None: blank)."""
        i = int(np.searchsorted(self.start, frame, side="right")) - 1
        if i >= 0 and frame < self.start[i] + self.n_on:
            return i
        return None


class FrameCounter:
    """Flip times -> frames, dropped frames (a flip more than 1.5 periods after the last)."""

    def __init__(self, refresh_hz: float) -> None:
        self.period = 1.0 / float(refresh_hz)
        self.flips: list[float] = []
        self.dropped = 0

    def flip(self, t: float) -> None:
        if self.flips:
            dt = t - self.flips[-1]
            if dt > 1.5 * self.period:
                self.dropped += int(round(dt / self.period)) - 1
        self.flips.append(float(t))

    def report(self) -> dict[str, Any]:
        """``frames``, ``dropped``, nominal and measured (median) frame period in ms."""
        d = np.diff(self.flips)
        return {
            "frames": len(self.flips),
            "dropped": int(self.dropped),
            "period_ms": round(1000 * self.period, 3),
            "measured_period_ms": round(1000 * float(np.median(d)), 3) if d.size else None,
        }


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


def load_stimuli(args: Any) -> Any:
    if getattr(args, "images", None):
        return ImageFolderSet(args.images)
    return DemoStimulusSet(seed=0)


def display_options(args: Any) -> dict[str, Any]:
    """PresenterWindow keyword arguments from ``--refresh``, ``--size-px``, ``--size-deg``,
    ``--distance-cm`` and ``--screen-width-cm`` (absent flags: the window's defaults)."""
    keys = {"refresh": "refresh_hz", "size_px": "size_px", "size_deg": "size_deg",
            "distance_cm": "distance_cm", "screen_width_cm": "screen_width_cm"}
    out = {kw: getattr(args, flag) for flag, kw in keys.items()
           if getattr(args, flag, None) is not None}
    if "size_px" in out and "size_deg" in out:
        raise ValueError("give the image size once: --size-px or --size-deg, not both")
    if "size_deg" in out and "distance_cm" not in out:
        raise ValueError(f"--size-deg {out['size_deg']} needs the viewing distance: add "
                         "--distance-cm (eye to screen, in cm)")
    for kw, value in out.items():
        if value <= 0:
            raise ValueError(f"--{kw.replace('_hz', '').replace('_', '-')} must be > 0, got {value}")
    return out
