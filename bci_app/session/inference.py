"""The inference thread: Trials in (bounded queue), Reconstructions out.

The acquisition thread calls :meth:`InferenceWorker.submit` from its ``on_trial``
callback. ``submit`` never waits under the default policies: when the queue is full,
``drop_oldest`` (default, keep the newest) or ``drop_newest`` decides which trial is
skipped, and every skipped trial is counted and reported as an
:class:`InferenceResult` with ``outcome="dropped"``. The ``block`` policy is lossless
(for replays and benchmarks where back-pressure is wanted): the caller waits for room,
at most ``block_timeout`` seconds, after which the trial is dropped and counted.

Every trial yields exactly one :class:`InferenceResult` (reconstructed, dropped,
rejected or error), so ``reconstructed + dropped + rejected + errors == submitted``.
Results go to ``on_result`` callbacks, called from the worker thread (or from the
caller's thread for dropped/rejected trials): handlers must be thread-safe and quick, e.g.
put the result on a queue that another thread drains.

The reconstructor is used by the worker thread only. Changes to it - sampling settings
(:meth:`InferenceWorker.set_sampling`) and another bundle (:meth:`InferenceWorker.use`) -
are messages the worker applies between two batches; the caller waits until it has (at most
the rest of the batch running), so a change is in force for every trial after the call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from bci_app.messages import InferenceResult, Trial

log = logging.getLogger(__name__)

POLICIES = ("drop_oldest", "drop_newest", "block")
#: longest wait of a change for the batch running to finish (s)
CHANGE_TIMEOUT_S = 120.0


def local_clock() -> float:
    """The LSL clock (seconds), the one Trial timestamps are on."""
    from pylsl import local_clock as _lc

    return _lc()


class InferenceWorker:
    """A thread running a Reconstructor on Trials from a bounded queue.

    Parameters
    ----------
    reconstructor : Reconstructor-like
        Anything with ``reconstruct(x[B, C, T], seeds=[...]) -> list[Reconstruction]``
        and ``warmup(n)``; it is used only from the worker thread. Each trial's seed is
        :func:`~bci_app.models.reconstructor.trial_seed` of its stimulus id and onset
        sample, so a trial gives the same image here as in ``evaluate``.
    queue_size : int
        Trials waiting at most (not counting the one being reconstructed).
    policy : {"drop_oldest", "drop_newest", "block"}
        What to do when the queue is full.
    max_batch : int
        Trials reconstructed together when several are waiting (raises throughput
        under load; 1 disables batching).
    warmup : int
        Warm-up passes before the worker takes trials (first real trial not slow).
    block_timeout : float
        Longest wait of ``submit`` under the ``block`` policy before dropping.
    on_result, on_error : callables
        ``on_result(InferenceResult)`` for every trial, ``on_error(exc, trial)`` when the
        model raised (the worker goes on with the next trial).
    """

    def __init__(
        self,
        reconstructor: Any,
        *,
        queue_size: int = 8,
        policy: str = "drop_oldest",
        max_batch: int = 1,
        warmup: int = 2,
        block_timeout: float = 10.0,
        on_result: Callable[[InferenceResult], None] | None = None,
        on_error: Callable[[BaseException, Trial | None], None] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.reconstructor = reconstructor
        self.queue_size = int(queue_size)
        self.policy = policy
        self.max_batch = int(max_batch)
        self.warmup_n = int(warmup)
        self.block_timeout = float(block_timeout)
        self._result_cbs: list[Callable[[InferenceResult], None]] = []
        self._error_cbs: list[Callable[[BaseException, Trial | None], None]] = []
        if on_result is not None:
            self._result_cbs.append(on_result)
        if on_error is not None:
            self._error_cbs.append(on_error)

        self._q: deque[tuple[Trial, float]] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None
        self._busy = False
        self._running = False  # the loop takes changes (under self._cond)
        self._changes: list[tuple[Callable[[], None], threading.Event]] = []
        # counters (under self._cond)
        self.submitted = 0
        self.reconstructed = 0
        self.dropped = 0
        self.errors = 0
        self.rejected: dict[str, int] = {}
        self.max_queue_depth = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ callbacks
    def add_result_callback(self, cb: Callable[[InferenceResult], None]) -> None:
        self._result_cbs.append(cb)

    def add_error_callback(self, cb: Callable[[BaseException, Trial | None], None]) -> None:
        self._error_cbs.append(cb)

    def _emit(self, result: InferenceResult) -> None:
        for cb in list(self._result_cbs):
            try:
                cb(result)
            except Exception:  # a broken consumer must not kill the worker
                log.exception("on_result callback failed")

    def _emit_error(self, exc: BaseException, trial: Trial | None) -> None:
        for cb in list(self._error_cbs):
            try:
                cb(exc, trial)
            except Exception:
                log.exception("on_error callback failed")

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: bool = True, timeout: float = 120.0) -> InferenceWorker:
        """Start the thread; with ``wait``, return once warm-up is done (or raise its error)."""
        if self._thread is not None:
            raise RuntimeError("InferenceWorker already started; make a new one to restart")
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()
        if wait:
            if not self._ready.wait(timeout):
                raise RuntimeError(f"inference warm-up did not finish within {timeout} s")
            if self._startup_error is not None:
                raise RuntimeError(f"inference warm-up failed: {self._startup_error}") from self._startup_error
        return self

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._startup_error is None

    def stop(self, drain: bool = False, timeout: float = 30.0) -> None:
        """Stop the thread. With ``drain``, reconstruct what is queued first."""
        if drain and self._thread is not None and self._thread.is_alive():
            self.wait_idle(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        # anything still queued is reported as dropped so every trial has an outcome
        with self._cond:
            left = list(self._q)
            self._q.clear()
        for trial, _ in left:
            self._drop(trial, "stopped")

    @property
    def busy(self) -> bool:
        """Whether a batch is being reconstructed now."""
        return self._busy

    def set_sampling(self, steps: int, strength: float, guidance: float | None) -> None:
        """Sample with these refiner settings (checked by the caller) from the next batch on."""
        def change() -> None:
            rec = self.reconstructor
            rec.steps, rec.strength, rec.guidance = steps, strength, guidance
        self._between_batches(change)

    def use(self, reconstructor: Any) -> None:
        """Reconstruct with ``reconstructor`` (another bundle) from the next batch on."""
        def change() -> None:
            self.reconstructor = reconstructor
        self._between_batches(change)

    def _between_batches(self, change: Callable[[], None]) -> None:
        """Have the worker thread run ``change`` before its next batch and wait until it has
        (run here when the thread is not running)."""
        done = threading.Event()
        with self._cond:
            if not self._running:
                change()
                return
            self._changes.append((change, done))
            self._cond.notify_all()
        if not done.wait(CHANGE_TIMEOUT_S):
            raise RuntimeError(
                f"the inference thread did not finish its batch within {CHANGE_TIMEOUT_S:g} s; "
                "the change will apply after it"
            )

    def _apply_changes(self) -> None:
        """Run the changes waiting (worker thread, under self._cond)."""
        for change, done in self._changes:
            try:
                change()
            except Exception:  # a change is checked before it is sent; never kill the worker
                log.exception("applying a change to the reconstructor failed")
            done.set()
        self._changes.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is empty and no trial is being reconstructed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._q or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # ------------------------------------------------------------------ producer side
    def submit(self, trial: Trial) -> bool:
        """Offer a trial (called from the acquisition thread). Returns False if it was dropped
        or rejected. Never waits, except under the ``block`` policy."""
        t_sub = local_clock()
        if not trial.ok:
            with self._cond:
                self.submitted += 1
                reason = str(trial.reject_reason)
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
            times = {}
            if np.isfinite(trial.epoch_latency_ms):
                times["epoch"] = trial.epoch_latency_ms
            self._emit(InferenceResult(trial, "rejected", None, times, reason, t_sub))
            return False
        dropped: Trial | None = None
        accepted = True
        with self._cond:
            self.submitted += 1
            if len(self._q) >= self.queue_size:
                if self.policy == "drop_oldest":
                    dropped = self._q.popleft()[0]
                elif self.policy == "drop_newest":
                    dropped, accepted = trial, False
                else:  # block: lossless back-pressure, bounded wait
                    deadline = time.monotonic() + self.block_timeout
                    while len(self._q) >= self.queue_size and not self._stop.is_set():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    if len(self._q) >= self.queue_size or self._stop.is_set():
                        dropped, accepted = trial, False
            if accepted:
                self._q.append((trial, t_sub))
                self.max_queue_depth = max(self.max_queue_depth, len(self._q))
                self._cond.notify_all()
        if dropped is not None:
            self._drop(dropped, self.policy)
        return accepted

    __call__ = submit  # so the worker itself can be Acquisition's on_trial

    def _drop(self, trial: Trial, reason: str) -> None:
        with self._cond:
            self.dropped += 1
        times = {"epoch": trial.epoch_latency_ms} if np.isfinite(trial.epoch_latency_ms) else {}
        self._emit(InferenceResult(trial, "dropped", None, times, reason, local_clock()))

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        try:
            if self.warmup_n > 0 and hasattr(self.reconstructor, "warmup"):
                self.reconstructor.warmup(self.warmup_n)
        except BaseException as exc:  # noqa: BLE001 - reported to start() and the GUI
            log.exception("inference warm-up failed")
            self._startup_error = exc
            self.last_error = f"warm-up failed: {exc}"
            self._emit_error(exc, None)
            self._ready.set()
            return
        with self._cond:
            self._running = True
        self._ready.set()
        try:
            self._loop()
        finally:
            with self._cond:  # changes sent from now on apply at once, in their caller
                self._running = False
                self._apply_changes()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._q and not self._changes and not self._stop.is_set():
                    self._cond.wait(0.5)
                self._apply_changes()  # between two batches
                if self._stop.is_set():
                    return
                if not self._q:
                    continue
                batch = [self._q.popleft() for _ in range(min(self.max_batch, len(self._q)))]
                self._busy = True
                self._cond.notify_all()  # room for a blocked producer
            try:
                self._process(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _process(self, batch: list[tuple[Trial, float]]) -> None:
        t_start = local_clock()
        trials = [t for t, _ in batch]
        rec = self.reconstructor
        try:
            from bci_app.models.reconstructor import trial_seed

            x = np.stack([np.asarray(t.data, dtype=np.float32) for t in trials])
            # per-trial seeds (stimulus id, onset sample): the image evaluate/replay give too
            base = int(getattr(rec, "seed", 0))
            seeds = [trial_seed(t.stim_id, t.onset_sample, base) for t in trials]
            recs = rec.reconstruct(x, seeds=seeds)
            if len(recs) != len(trials):
                raise RuntimeError(
                    f"reconstruct returned {len(recs)} results for a batch of {len(trials)} trials"
                )
        except Exception as exc:
            log.exception("reconstruction failed for trial(s) %s", [t.index for t in trials])
            msg = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self.errors += len(trials)
                self.last_error = msg
            t_now = local_clock()
            for trial, _ in batch:
                self._emit(InferenceResult(trial, "error", None, {}, msg, t_now))
            self._emit_error(exc, trials[0])
            return
        t_ready = local_clock()
        with self._cond:
            self.reconstructed += len(trials)
        for (trial, t_sub), rec in zip(batch, recs, strict=True):
            times: dict[str, float] = {}
            if np.isfinite(trial.epoch_latency_ms):
                times["epoch"] = trial.epoch_latency_ms
            times["queue"] = 1000.0 * (t_start - t_sub)
            for k, v in (getattr(rec, "times_ms", None) or {}).items():
                times[k] = float(v)
            if np.isfinite(trial.last_sample_time):
                times["end_to_end"] = 1000.0 * (t_ready - trial.last_sample_time)
            self._emit(InferenceResult(trial, "reconstructed", rec, times, None, t_ready))

    # ------------------------------------------------------------------ state
    @property
    def queue_depth(self) -> int:
        return len(self._q)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "submitted": self.submitted,
                "reconstructed": self.reconstructed,
                "dropped": self.dropped,
                "rejected": dict(self.rejected),
                "errors": self.errors,
                "queue_depth": len(self._q),
                "max_queue_depth": self.max_queue_depth,
                "policy": self.policy,
                "last_error": self.last_error,
            }
