"""The acquisition thread: source + markers -> epocher -> on_trial callback (+ recorder)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from bci_app.acquisition.epocher import Epocher
from bci_app.acquisition.trial import Trial

logger = logging.getLogger(__name__)

RAISE_ENV = "BCI_APP_RAISE_IN_THREADS"


def raise_in_threads() -> bool:
    """True when ``BCI_APP_RAISE_IN_THREADS=1`` (tests): thread errors propagate."""
    return os.environ.get(RAISE_ENV, "") not in ("", "0", "false", "False")


class Acquisition:
    """Pull EEG and markers in a loop, feed the epocher, hand out Trials.

    ``on_trial(trial)`` is called from this thread for every Trial, rejected ones
    included (check ``trial.ok``); it must not block (put the Trial on a queue). An
    error inside the loop is logged and moves ``state`` to ``"disconnected"``; with
    ``BCI_APP_RAISE_IN_THREADS=1`` it is re-raised by :meth:`stop` / :meth:`join`
    instead.

    Parameters
    ----------
    source : EEGSource
        Connected or not (``start`` connects it when needed).
    markers : marker source or None
        Anything with ``pull() -> [(str, t)]`` (and optionally connect/disconnect/state),
        e.g. :class:`LSLMarkerSource`, or the BrainFlow source itself.
    epocher : Epocher
    recorder : Recorder, optional
        Receives every raw chunk and marker.
    poll_interval : float
        Sleep between polls when nothing arrived (s).
    """

    def __init__(
        self,
        source,
        markers,
        epocher: Epocher,
        on_trial: Callable[[Trial], None] | None = None,
        recorder=None,
        *,
        poll_interval: float = 0.001,
        name: str = "bci-acquisition",
    ) -> None:
        self.source = source
        self.markers = markers
        self.epocher = epocher
        self.on_trial = on_trial
        self.recorder = recorder
        self.poll_interval = float(poll_interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None
        self._state_override: str | None = None
        self.n_callback_errors = 0
        self.started = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Acquisition:
        if getattr(self.source, "state", "disconnected") == "disconnected":
            self.source.connect()
        if self.markers is not None and self.markers is not self.source:
            if getattr(self.markers, "state", "connected") == "disconnected":
                self.markers.connect()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.recorder is not None:
            self.recorder.close()
        for s in {id(self.source): self.source, id(self.markers): self.markers}.values():
            if s is not None and hasattr(s, "disconnect"):
                try:
                    s.disconnect()
                except Exception as err:  # already gone: nothing to do
                    logger.debug("disconnect failed: %s", err)
        self._reraise()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        self._reraise()

    def _reraise(self) -> None:
        if self._error is not None and raise_in_threads():
            err, self._error = self._error, None
            raise RuntimeError(f"acquisition thread failed: {err!r}") from err

    def __enter__(self) -> Acquisition:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def state(self) -> str:
        if self._state_override is not None:
            return self._state_override
        return getattr(self.source, "state", "connected")

    @property
    def stats(self) -> dict:
        ep = self.epocher
        return {
            "trials": ep.n_trials,
            "rejected": dict(ep.rejected),
            "samples_lost": int(getattr(self.source, "samples_lost", ep.samples_lost)),
            "unknown_markers": ep.unknown_markers,
            "state": self.state,
            "pending_markers": ep.n_pending,
            "callback_errors": self.n_callback_errors,
        }

    # -- loop ----------------------------------------------------------------------------
    def _emit(self, trials: list[Trial]) -> None:
        if self.on_trial is None:
            return
        for trial in trials:
            try:
                self.on_trial(trial)
            except Exception:
                self.n_callback_errors += 1
                logger.exception("on_trial callback failed for trial %d", trial.index)
                if raise_in_threads():
                    raise

    def step(self) -> int:
        """One poll of markers and EEG; returns the number of samples read."""
        marks = self.markers.pull() if self.markers is not None else []
        data, ts = self.source.read()
        if self.recorder is not None:
            if ts.size:
                self.recorder.write(data, ts)
            if marks:
                self.recorder.add_markers(marks)
        # markers first: a marker and its EEG in the same poll resolve at once
        trials = self.epocher.push_markers(marks) if marks else []
        if ts.size:
            trials += self.epocher.push_data(data, ts)
        self._emit(trials)
        return int(ts.size)

    def _run(self) -> None:
        self.started.set()
        try:
            while not self._stop.is_set():
                if self.step() == 0:
                    time.sleep(self.poll_interval)
        except BaseException as err:  # logged, state -> disconnected; raised in tests
            self._error = err
            self._state_override = "disconnected"
            logger.exception("acquisition thread stopped by an error")
