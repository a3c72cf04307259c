"""The acquisition thread: source + markers -> epocher -> on_trial callback (+ recorder).

Swaps while the thread runs are safe: :meth:`Acquisition.set_recorder` replaces the
recorder between two steps (each chunk goes to exactly one recorder, or none), and
:meth:`Acquisition.wait_step` tells when the thread no longer writes to the one it
replaced, so that it can be closed (finalised) on another thread. :meth:`swap_epocher`
installs an epocher for another bundle's spec, carrying the pending markers and the
counts over.

The counts live in one :class:`~bci_app.acquisition.stats.AcquisitionStats` (the epocher's,
handed on at a swap), written by this thread only: each chunk's stamps are read once here
for lost samples (:class:`~bci_app.acquisition.stats.GapReader`), and what was read goes to
the recorder (``gaps.tsv``) and the epocher (trials across a gap are rejected). Each marker is
mapped to its stimulus once, by the epocher, and handed to the ``on_markers`` listeners
mapped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from bci_app.acquisition.epocher import Epocher
from bci_app.acquisition.stats import GapReader
from bci_app.messages import Trial

logger = logging.getLogger(__name__)

RAISE_ENV = "BCI_APP_RAISE_IN_THREADS"


def raise_in_threads() -> bool:
    """True when ``BCI_APP_RAISE_IN_THREADS=1`` (tests): thread errors propagate."""
    return os.environ.get(RAISE_ENV, "") not in ("", "0", "false", "False")


class Acquisition:
    """Pull EEG and markers in a loop, feed the epocher, hand out Trials.

    ``on_trial(trial)`` is called from this thread for every Trial, rejected ones
    included (check ``trial.ok``); it must not block (put the Trial on a queue). Listeners
    in :attr:`marker_listeners` get each poll's markers, mapped:
    ``[(marker, stimulus id or None, LSL time)]`` (they must not block either). An
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
        self.marker_listeners: list[Callable[[list[tuple[str, str | None, float]]], None]] = []
        self._gap_reader = GapReader(epocher.sfreq)
        self._recorder = recorder
        self._rec_lock = threading.Lock()  # held only to read or swap the reference
        self._epoch_lock = threading.Lock()  # held while the epocher is used or swapped
        self._steps = 0  # steps finished (written by the acquisition thread only)
        self.recorder_error: str | None = None
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
        rec = self.set_recorder(None)
        if rec is not None:
            rec.close()
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

    # -- swaps (any thread) ----------------------------------------------------------------
    @property
    def recorder(self):
        """The recorder that receives the chunks now (None: not recording)."""
        return self._recorder

    @recorder.setter
    def recorder(self, recorder) -> None:
        self.set_recorder(recorder)

    def set_recorder(self, recorder):
        """Make ``recorder`` (or None) receive the chunks from the next step on; returns the
        previous one, which the current step may still be writing: call :meth:`wait_step`
        with :attr:`steps_done` read before the swap (as :meth:`replace_recorder` does)
        before closing it."""
        with self._rec_lock:
            old, self._recorder = self._recorder, recorder
        return old

    def replace_recorder(self, recorder) -> tuple[object, int]:
        """Like :meth:`set_recorder`; also returns the step count at the swap, for :meth:`wait_step`."""
        with self._rec_lock:
            old, self._recorder = self._recorder, recorder
            seq = self._steps
        return old, seq

    @property
    def steps_done(self) -> int:
        return self._steps

    def wait_step(self, seq: int, timeout: float = 10.0) -> bool:
        """Wait until the step running at ``seq`` has finished (True), or the thread is gone."""
        deadline = time.monotonic() + timeout
        while self._steps <= seq and self._thread.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def swap_epocher(self, epocher: Epocher) -> Epocher:
        """Use ``epocher`` (another bundle's spec) from the next step on; returns the old one.

        Markers still waiting for their window move over (:meth:`Epocher.continue_from`), and
        trial numbers and counts continue."""
        with self._epoch_lock:
            old = self.epocher
            epocher.continue_from(old)
            self.epocher = epocher
        return old

    def seconds_to_next_window(self) -> float | None:
        """Time until the next located stimulus window is complete (None: none pending), from
        any thread; the window uses it to stay off the CPU when a trial is about to be cut."""
        return self.epocher.seconds_to_next_window()

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
        """The counts (:meth:`AcquisitionStats.snapshot`: trials, samples_lost, gaps, rejected,
        unknown_markers), the state, the markers waiting for their window and callback errors."""
        ep = self.epocher
        return {
            **ep.stats.snapshot(),
            "state": self.state,
            "pending_markers": ep.n_pending,
            "callback_errors": self.n_callback_errors,
        }

    # -- loop ----------------------------------------------------------------------------
    def _emit(self, trials: list[Trial], mapped: list[tuple[str, str | None, float]]) -> None:
        for cb in self.marker_listeners if mapped else ():
            try:
                cb(mapped)
            except Exception:
                self.n_callback_errors += 1
                logger.exception("marker listener failed")
                if raise_in_threads():
                    raise
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
        try:
            marks = self.markers.pull() if self.markers is not None else []
            data, ts = self.source.read()
            lost, breaks = self._gap_reader.read(ts)  # the one reading of the stamps
            with self._rec_lock:
                rec = self._recorder  # one reference per step: a swap takes effect next step
            if rec is not None and (ts.size or marks):
                self._record(rec, data, ts, lost, marks)
            with self._epoch_lock:
                self.epocher.stats.add_lost(lost)
                # markers first: a marker and its EEG in the same poll resolve at once
                mapped = self.epocher.map_markers(marks) if marks else []
                trials = self.epocher.push_mapped(mapped) if mapped else []
                if ts.size:
                    trials += self.epocher.push_data(data, ts, breaks=breaks)
        finally:
            self._steps += 1
        self._emit(trials, mapped)
        return int(ts.size)

    def _record(self, rec, data, ts, lost, marks) -> None:
        """Write to the recorder; a failing recorder stops recording, never acquisition."""
        try:
            if ts.size:
                rec.write(data, ts, lost=lost)
            if marks:
                rec.add_markers(marks)
        except Exception as err:
            self.recorder_error = f"recording stopped: {type(err).__name__}: {err}"
            logger.exception("recorder failed; recording stopped, acquisition goes on")
            with self._rec_lock:
                if self._recorder is rec:
                    self._recorder = None

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
