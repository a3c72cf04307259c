"""Session report: ``report.json``, ``trials.jsonl`` and ``grid.png`` (contract files).

:class:`SessionReport` collects one :class:`~bci_app.session.inference.InferenceResult` per
trial (thread-safe ``add``; in a session it runs on the pipeline's report thread, off the
inference thread) and writes the three files of a session:

- ``report.json``: counts, per-stage latency percentiles (p50/p95/max), and quality
  (top-1 of the bundle's image classifier on the reconstruction against the seen
  image's class, ``ways`` = number of classes, ``chance`` = 1/ways, mean SSIM
  reconstruction vs seen image, and ``ssim_shuffled``: mean SSIM of shuffled pairs, each
  reconstruction against the seen image of a random earlier trial of another stimulus)
  where the seen image is known; for a bundle that held classes out of its training
  (``training.holdout_classes``) also ``quality["held_out"]``: ``classes`` (those the bundle's
  class list knows), ``n``, ``top1`` (the judge's N-way among the held-out classes, as
  ``evaluate``'s ``zero_shot.recon_acc``: right when the seen class scores above every other
  held-out class), ``ways``, ``chance``; and what the figures were measured with: ``bundle``,
  ``montage``, ``n_channels``, ``sfreq``, ``date`` (session start, ISO, UTC), ``version``;
- ``trials.jsonl``: one line per trial, with (when the model gives them) the encoder's
  decoded class, the semantic head's most probable caption and the class the image
  classifier judges the drawing to be; ``held_out: true`` (and ``held_out_top1_correct``) for
  a trial of a held-out class; and the window's ``display`` time
  (:meth:`SessionReport.add_display`: image ready -> shown) where a window showed it;
- ``grid.png``: rows of seen image | saliency | reconstruction, each under a label band
  (trial, stimulus, seen class, decoded caption and judged class, green right / red wrong;
  a "held out" tag on the rows of held-out classes).

Errors raised by the model are reported under ``rejected["error"]`` so that
``reconstructed + dropped + sum(rejected.values()) == trials`` always holds.

Memory stays flat over hours: a trial's EEG window and images are not kept. Each outcome
becomes one ``trials.jsonl`` line spooled to a temporary file at once, plus counters and
one float per latency stage; only the ``grid_rows`` trials of ``grid.png`` keep their
images (``keep_results=True`` keeps every :class:`InferenceResult`, for benchmarks).
"""

from __future__ import annotations

import datetime
import json
import math
import tempfile
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.messages import EXTRA_LATENCIES, LATENCIES
from bci_app.session.inference import InferenceResult
from bci_app.stimuli.lookup import seen_image_or_none

#: seen stimulus ids kept (reservoir sample) to draw the shuffled SSIM pairs from
SHUFFLE_POOL = 64
#: how a class's caption reads (the label caption of the seed paper, as DemoStimulusSet.caption)
CAPTION_TEMPLATE = "an image of a {}"
#: the colour of the "held out" tag in grid.png
HELD_OUT_RGB = (250, 190, 60)


def percentiles(values: list[float] | np.ndarray) -> dict[str, float | None]:
    """``{"p50", "p95", "max"}`` in ms (None for an empty list)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(float(np.percentile(v, 50)), 3),
        "p95": round(float(np.percentile(v, 95)), 3),
        "max": round(float(v.max()), 3),
    }


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the seen image ``a`` and the reconstruction ``b`` (uint8 ``[H, W, 3]``),
    computed exactly as ``bci-app evaluate`` computes it (:func:`bci_app.models.ssim.image_ssim`)."""
    from bci_app.models.ssim import image_ssim

    return image_ssim(a, b)


class SessionReport:
    """Collects trial outcomes and writes the report files.

    Parameters
    ----------
    seen_image : callable, optional
        ``stim_id -> uint8 [H, W, 3]`` or None when unknown (e.g. ``DemoStimulusSet.image``
        guarded for unknown ids).
    seen_label : callable, optional
        ``stim_id -> int`` class or None when unknown.
    n_classes : int, optional
        ``ways`` of the top-1 accuracy (40 for the demo set).
    classify : callable, optional
        ``images uint8 [N, H, W, 3] -> probs [N, n_classes]``, used when a
        Reconstruction carries no ``class_probs``.
    grid_rows : int
        Trials shown in ``grid.png`` (the first ones reconstructed).
    keep_results : bool
        Also keep every :class:`InferenceResult` in ``results`` (EEG windows and images:
        about 225 KB a trial; for short benchmark runs only).
    reconstructor : optional
        The session's Reconstructor: its bundle (``bundle_dir``, ``spec.ch_names``,
        ``spec.sfreq``) is named in ``report.json`` and its ``classes`` name the decoded
        classes. Default: the object ``classify`` is a bound method of, if any.
    class_names : list of str, optional
        Class index -> name (default: the reconstructor's ``classes``).
    holdout_classes : list of str, optional
        Names of the classes the bundle never trained on (default: the reconstructor's bundle
        config, ``training.holdout_classes``; none for an ordinary bundle).
    """

    def __init__(
        self,
        *,
        seen_image: Callable[[str], np.ndarray | None] | None = None,
        seen_label: Callable[[str], int | None] | None = None,
        n_classes: int | None = None,
        classify: Callable[[np.ndarray], np.ndarray | None] | None = None,
        grid_rows: int = 8,
        keep_results: bool = False,
        reconstructor: Any = None,
        class_names: list[str] | None = None,
        holdout_classes: list[str] | None = None,
    ) -> None:
        if reconstructor is None:
            reconstructor = getattr(classify, "__self__", None)
        self.reconstructor = reconstructor
        if class_names is None:
            class_names = list(getattr(reconstructor, "classes", None) or [])
        self.class_names = [str(c) for c in class_names]
        if holdout_classes is None:
            training = (getattr(reconstructor, "config", None) or {}).get("training") or {}
            holdout_classes = training.get("holdout_classes") or []
        held = {str(c) for c in holdout_classes}
        #: indices of the held-out classes the class list knows, in class order
        self.held_out = [k for k, c in enumerate(self.class_names) if c in held]
        self.date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._stream: tuple[int, float] | None = None  # (channels, sfreq) of the first trial
        self._pool: list[str] = []  # reservoir of seen stim ids, for ssim_shuffled
        self._pool_seen = 0
        self._rng = np.random.default_rng(0)
        self._n_shuffled = 0
        self._shuffled_sum = 0.0
        self.seen_image = seen_image
        self.seen_label = seen_label
        self.n_classes = n_classes
        self.classify = classify
        self.grid_rows = int(grid_rows)
        self._lock = threading.Lock()
        self.keep_results = bool(keep_results)
        self.results: list[InferenceResult] = []
        self._grid: list[tuple[np.ndarray | None, np.ndarray, np.ndarray, dict[str, Any]]] = []
        self._correct = 0
        self._n_quality = 0
        self._held_correct = 0
        self._n_held = 0
        self._ssim_sum = 0.0
        self._n = 0
        self._outcomes: dict[str, int] = {"reconstructed": 0, "dropped": 0}
        self._rejected: dict[str, int] = {}
        self._lat: dict[str, array] = {k: array("d") for k in (*LATENCIES, *EXTRA_LATENCIES)}
        self._display: dict[int, float] = {}  # trial index -> display ms (the window's)
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="bci-app-trials-")
        self.samples_lost = 0  # the acquisition's count, set when the session stops
        # --photodiode: the epocher's marker-to-light delays
        # (bci_app.preprocessing.photodiode.photodiode_summary), set by whoever owns the epocher
        self.photodiode: dict[str, Any] | None = None

    # ------------------------------------------------------------------ collecting
    def fetch_seen(self, result: InferenceResult) -> None:
        """Look the seen image of a reconstructed trial up into ``result.seen`` (once: kept
        there for the window and for :meth:`add`)."""
        if result.outcome == "reconstructed" and result.seen is None:
            result.seen = self._seen(result.trial.stim_id)

    def add(self, result: InferenceResult) -> None:
        """Record one outcome (thread-safe; quality is computed here, once per trial)."""
        quality = None
        shuffled = None
        self.fetch_seen(result)
        if result.outcome == "reconstructed" and result.reconstruction is not None:
            quality = self._quality(result)
            if quality is not None:
                shuffled = self._shuffled_ssim(result)
        record = self.trial_record(result)
        record.update(self._readout(result))
        label = self._label(result.trial.stim_id) if self.held_out else None
        held = label is not None and int(label) in self.held_out
        held_correct = None
        if held:
            record["held_out"] = True
        if quality is not None:  # per trial, so a reader can score any subset of trials
            record["top1_correct"], record["ssim"] = bool(quality[0]), round(float(quality[1]), 4)
            held_correct = self._held_out_correct(quality[2], label) if held else None
            if held_correct is not None:
                record["held_out_top1_correct"] = held_correct
        line = json.dumps(record)
        with self._lock:
            if self._stream is None:
                t = result.trial
                n_ch = len(t.ch_names or []) or (np.shape(t.data)[0] if np.ndim(t.data) == 2 else 0)
                if n_ch:
                    self._stream = (int(n_ch), float(t.sfreq))
            if shuffled is not None:
                self._n_shuffled += 1
                self._shuffled_sum += shuffled
            if self.keep_results:
                self.results.append(result)
            self._n += 1
            self._spool.write(line + "\n")
            if result.outcome in ("reconstructed", "dropped"):
                self._outcomes[result.outcome] += 1
            else:
                key = "error" if result.outcome == "error" else (result.reason or "unknown")
                self._rejected[key] = self._rejected.get(key, 0) + 1
            if result.outcome == "reconstructed":
                for key in (*LATENCIES, "queue"):
                    self._lat[key].append(float(result.times_ms.get(key, math.nan)))
            if quality is not None:
                correct, s, _ = quality
                self._n_quality += 1
                self._correct += int(correct)
                self._ssim_sum += float(s)
            if held_correct is not None:
                self._n_held += 1
                self._held_correct += int(held_correct)
            if result.outcome == "reconstructed" and len(self._grid) < self.grid_rows:
                rec = result.reconstruction
                self._grid.append((result.seen, np.asarray(rec.saliency), np.asarray(rec.image), record))

    __call__ = add

    def add_display(self, index: int, ms: float) -> None:
        """The live window showed trial ``index``'s image ``ms`` after it was ready (any
        thread, before or after :meth:`add` of that trial): ``display`` in report.json's
        latencies and in the trial's ``trials.jsonl`` line."""
        with self._lock:
            self._display[int(index)] = float(ms)
            self._lat["display"].append(float(ms))

    def _seen(self, stim_id: str | None) -> np.ndarray | None:
        return seen_image_or_none(self.seen_image, stim_id)

    def _label(self, stim_id: str | None) -> int | None:
        if stim_id is None or self.seen_label is None:
            return None
        try:
            return self.seen_label(stim_id)
        except (KeyError, ValueError):
            return None

    def held_out_class(self, stim_id: str | None) -> str | None:
        """The class name of ``stim_id`` when the bundle held that class out, else None (any
        thread: the window marks held-out trials with it)."""
        label = self._label(stim_id) if self.held_out else None
        return self._name(int(label)) if label is not None and int(label) in self.held_out else None

    def _held_out_correct(self, probs: np.ndarray, label: int) -> bool | None:
        """The judge's N-way among the held-out classes: right when the seen class scores above
        every other held-out class (ties count against, as in ``evaluate``); None when the
        judge scores another number of classes than the class list has."""
        p = np.asarray(probs, dtype=float).ravel()
        if p.size != len(self.class_names):
            return None
        others = [k for k in self.held_out if k != int(label)]
        return bool(not others or p[int(label)] > p[others].max())

    def _name(self, k: int | None) -> str | None:
        if k is None:
            return None
        return self.class_names[k] if 0 <= k < len(self.class_names) else f"class {k}"

    @staticmethod
    def _argmax(probs: Any) -> int | None:
        if probs is None:
            return None
        p = np.asarray(probs, dtype=float).ravel()
        return int(np.argmax(p)) if p.size and np.isfinite(p).any() else None

    def _readout(self, result: InferenceResult) -> dict[str, Any]:
        """The trial's ``trials.jsonl`` read-outs: seen class, the encoder's decoded class,
        the semantic head's most probable caption (its mixture is over the class captions)
        and the class the image classifier judges the drawing to be - each when known."""
        out: dict[str, Any] = {}
        label = self._label(result.trial.stim_id)
        if label is not None:
            out["seen_class"] = self._name(int(label))
        rec = result.reconstruction
        if rec is None:
            return out
        k = self._argmax(getattr(rec, "eeg_class_probs", None))
        if k is not None:
            out["decoded_class"] = self._name(k)
        cap = getattr(rec, "caption_probs", None)
        k = self._argmax(cap)
        if k is not None:
            # the prototypes start from the class captions: caption k is class k's
            known = len(self.class_names) == np.asarray(cap).size and k < len(self.class_names)
            out["caption"] = CAPTION_TEMPLATE.format(self.class_names[k]) if known else None
            out["caption_index"] = k
            if label is not None and known:
                out["caption_correct"] = k == int(label)
        k = self._argmax(getattr(rec, "class_probs", None))
        if k is not None:
            out["judged_class"] = self._name(k)
        return out

    def _shuffled_ssim(self, result: InferenceResult) -> float | None:
        """SSIM of this reconstruction against the seen image of a random earlier trial
        (another stimulus id, drawn from a reservoir of :data:`SHUFFLE_POOL` ids): the
        ``ssim_shuffled`` reference, with memory flat over a session."""
        sid = result.trial.stim_id
        with self._lock:
            others = [s for s in self._pool if s != sid]
            other = others[int(self._rng.integers(len(others)))] if others else None
            self._pool_seen += 1
            if len(self._pool) < SHUFFLE_POOL:
                self._pool.append(sid)
            else:
                j = int(self._rng.integers(self._pool_seen))
                if j < SHUFFLE_POOL:
                    self._pool[j] = sid
        seen = self._seen(other) if other is not None else None
        if seen is None:
            return None
        return float(ssim(seen, np.asarray(result.reconstruction.image)))

    def _quality(self, result: InferenceResult) -> tuple[bool, float, np.ndarray] | None:
        """``(all-class top-1 right, SSIM, the judge's scores)`` where the seen image is known."""
        rec = result.reconstruction
        seen = result.seen
        label = self._label(result.trial.stim_id)
        if seen is None or label is None:
            return None
        probs = getattr(rec, "class_probs", None)
        if probs is None and self.classify is not None:
            out = self.classify(np.asarray(rec.image)[None])
            probs = None if out is None else np.asarray(out)[0]
        if probs is None:
            return None
        correct = int(np.argmax(probs)) == int(label)
        return correct, ssim(seen, np.asarray(rec.image)), np.asarray(probs)

    # ------------------------------------------------------------------ summaries
    @property
    def n_outcomes(self) -> int:
        """Trials with an outcome so far."""
        return self._n

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {"trials": self._n, "reconstructed": self._outcomes["reconstructed"],
                    "dropped": self._outcomes["dropped"], "rejected": dict(self._rejected)}

    def latency(self) -> dict[str, dict[str, float | None]]:
        with self._lock:
            lat = {k: np.frombuffer(v, dtype=float).copy() for k, v in self._lat.items()}
        out = {key: percentiles(lat[key]) for key in LATENCIES}
        for key in EXTRA_LATENCIES:  # where measured
            if np.isfinite(lat[key]).any():
                out[key] = percentiles(lat[key])
        return out

    def quality(self) -> dict[str, Any]:
        with self._lock:
            n = self._n_quality
            top1 = self._correct / n if n else None
            s = self._ssim_sum / n if n else None
            sh = self._shuffled_sum / self._n_shuffled if self._n_shuffled else None
            n_held, held_correct = self._n_held, self._held_correct
        out = {
            "n": n,
            "top1": None if top1 is None else round(top1, 4),
            "ways": self.n_classes,
            "chance": round(1.0 / self.n_classes, 6) if self.n_classes else None,
            "ssim": None if s is None else round(s, 4),
            "ssim_shuffled": None if sh is None else round(sh, 4),
        }
        if self.held_out:
            ways = len(self.held_out)
            out["held_out"] = {
                "classes": [self.class_names[k] for k in self.held_out],
                "n": n_held,
                "top1": round(held_correct / n_held, 4) if n_held else None,
                "ways": ways,
                "chance": round(1.0 / ways, 6),
            }
        return out

    def session_info(self) -> dict[str, Any]:
        """``bundle``, ``montage``, ``n_channels``, ``sfreq``, ``date``, ``version``: what the
        figures were measured with (the bundle's cap and rate; else the first trial's)."""
        import bci_app

        rec = self.reconstructor
        bundle = getattr(rec, "bundle_dir", None)
        if bundle is not None:
            from bci_app.models.bundle import resolve_bundle_path

            try:
                demo = Path(resolve_bundle_path("demo")).resolve()
            except Exception:  # noqa: BLE001 - naming the bundle must not fail the report
                demo = None
            bundle = "demo" if demo is not None and Path(bundle).resolve() == demo else str(bundle)
        spec = getattr(rec, "spec", None)
        ch_names = list(getattr(spec, "ch_names", None) or [])
        n_ch = len(ch_names) or (self._stream[0] if self._stream else None)
        sfreq = getattr(spec, "sfreq", None) or (self._stream[1] if self._stream else None)
        montage = None
        if ch_names:
            try:
                from bci_app.simulation.montage import montage_for_channels

                cap = montage_for_channels(ch_names)
                montage = cap if ":" not in cap else f"{cap.split(':')[0]} subset"
            except Exception:  # noqa: BLE001 - channels of no standard cap
                montage = None
        if n_ch:
            montage = f"{montage} ({n_ch} ch)" if montage else f"{n_ch} ch"
        return {
            "bundle": bundle,
            "montage": montage,
            "n_channels": n_ch,
            "sfreq": None if sfreq is None else float(sfreq),
            "date": self.date,
            "version": getattr(bci_app, "__version__", None),
        }

    def summary(self) -> dict[str, Any]:
        """The ``report.json`` object (contract in ARCHITECTURE.md)."""
        c = self.counts()
        return {
            "trials": c["trials"],
            "reconstructed": c["reconstructed"],
            "dropped": c["dropped"],
            "rejected": c["rejected"],
            "samples_lost": int(self.samples_lost),
            "latency_ms": self.latency(),
            "quality": self.quality(),
            **({"photodiode": self.photodiode} if self.photodiode is not None else {}),
            **self.session_info(),
        }

    # ------------------------------------------------------------------ files
    @staticmethod
    def trial_record(r: InferenceResult) -> dict[str, Any]:
        t = r.trial
        return {
            "index": t.index,
            "marker": t.marker,
            "stim_id": t.stim_id,
            "onset": t.onset,
            "onset_sample": t.onset_sample,
            "last_sample_time": t.last_sample_time if np.isfinite(t.last_sample_time) else None,
            "outcome": r.outcome,
            "reason": r.reason,
            "times_ms": {k: round(float(v), 3) for k, v in r.times_ms.items()},
        }

    def write(self, out_dir: str | Path) -> dict[str, Any]:
        """Write report.json, trials.jsonl and grid.png into ``out_dir``; return the summary."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        with self._lock:
            self._spool.flush()
            self._spool.seek(0)
            records = [json.loads(s) for s in self._spool.read().splitlines()]
            self._spool.seek(0, 2)  # further trials append again
            display = dict(self._display)
        records.sort(key=lambda r: r["index"])
        for r in records:
            if r["index"] in display and r["outcome"] == "reconstructed":
                r["times_ms"]["display"] = round(display[r["index"]], 3)
        with (out / "trials.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        self.grid_image().save(out / "grid.png")
        return summary

    def grid_image(self, cell: int = 128):
        """A PIL image: a title line saying which trials it shows, then one row per trial,
        columns seen | saliency | reconstruction, each row under a label band: trial number,
        stimulus id and seen class; the decoded caption (green when its class is the seen
        one, red when not); the class the drawing is judged to be (green/red: the top-1
        figure of report.json); on a trial of a held-out class, an amber "held out" tag with
        the judge's verdict among the held-out classes."""
        from PIL import Image, ImageDraw

        with self._lock:
            rows = list(self._grid)
            n_rec = self._outcomes["reconstructed"]
        pad, line = 4, 13
        title_h = 2 * line + 4
        band = 3 * line + 2
        n = max(1, len(rows))
        w = 3 * cell + 4 * pad
        h = title_h + n * (band + cell + pad) + pad
        canvas = Image.new("RGB", (w, h), (24, 24, 24))
        draw = ImageDraw.Draw(canvas)
        grey, dim = (220, 220, 220), (160, 160, 160)
        green, red = (90, 210, 90), (235, 85, 85)
        shown = (f"{len(rows)} of {n_rec} reconstructed trials: the first {len(rows)}"
                 if rows else "no trial reconstructed")
        draw.text((pad, 2), shown, fill=grey)
        cols = "   |   ".join(("seen", "saliency", "reconstruction"))
        draw.text((pad, 2 + line), f"columns: {cols}", fill=dim)

        def mark(ok: bool | None) -> tuple[str, tuple[int, int, int]]:
            if ok is None:
                return "", dim
            return (" (right)", green) if ok else (" (wrong)", red)

        for i, row in enumerate(rows):
            *imgs, rec = row
            y = title_h + i * (band + cell + pad)
            head = f"trial {rec.get('index')}  {rec.get('stim_id')}"
            if rec.get("seen_class"):
                head += f"  seen: {rec['seen_class']}"
            draw.text((pad, y), head, fill=grey)
            if rec.get("held_out"):
                tag = "  HELD OUT"
                if rec.get("held_out_top1_correct") is not None:
                    verdict = "right" if rec["held_out_top1_correct"] else "wrong"
                    tag += f" ({len(self.held_out)}-way: {verdict})"
                draw.text((pad + draw.textlength(head), y), tag, fill=HELD_OUT_RGB)
            cap = rec.get("caption") or (
                f"#{rec['caption_index']}" if "caption_index" in rec else "n/a")
            word, colour = mark(rec.get("caption_correct"))
            draw.text((pad, y + line), f"decoded caption: {cap}{word}", fill=colour)
            word, colour = mark(rec.get("top1_correct"))
            judged = rec.get("judged_class") or "n/a"
            draw.text((pad, y + 2 * line), f"drawing judged: {judged}{word}", fill=colour)
            y0 = y + band
            if rec.get("top1_correct") is not None:  # a coloured rule under the band
                draw.line([(pad, y0 - 2), (w - pad, y0 - 2)], fill=colour, width=1)
            for j, img in enumerate(imgs):
                x0 = pad + j * (cell + pad)
                if img is None:
                    draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline=(90, 90, 90))
                    draw.text((x0 + 8, y0 + cell // 2 - 6), "unknown", fill=(150, 150, 150))
                    continue
                tile = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")
                canvas.paste(tile.resize((cell, cell), Image.NEAREST), (x0, y0))
        return canvas
