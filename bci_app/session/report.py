"""Session report: ``report.json``, ``trials.jsonl`` and ``grid.png`` (contract files).

:class:`SessionReport` collects one :class:`~bci_app.session.inference.InferenceResult` per
trial (thread-safe ``add``) and writes the three files of a headless session:

- ``report.json``: counts, per-stage latency percentiles (p50/p95/max), and quality
  (top-1 of the bundle's image classifier on the reconstruction against the seen
  image's class, ``ways`` = number of classes, mean SSIM reconstruction vs seen image)
  where the seen image is known;
- ``trials.jsonl``: one line per trial;
- ``grid.png``: rows of seen image | saliency | reconstruction.

Errors raised by the model are reported under ``rejected["error"]`` so that
``reconstructed + dropped + sum(rejected.values()) == trials`` always holds.

Memory stays flat over hours: a trial's EEG window and images are not kept. Each outcome
becomes one ``trials.jsonl`` line spooled to a temporary file at once, plus counters and
one float per latency stage; only the ``grid_rows`` trials of ``grid.png`` keep their
images (``keep_results=True`` keeps every :class:`InferenceResult`, for benchmarks).
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.session.inference import InferenceResult
from bci_app.stimuli.lookup import seen_image_or_none

LATENCY_KEYS = ("end_to_end", "epoch", "encoder", "saliency", "semantic", "refiner")


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
    ) -> None:
        self.seen_image = seen_image
        self.seen_label = seen_label
        self.n_classes = n_classes
        self.classify = classify
        self.grid_rows = int(grid_rows)
        self._lock = threading.Lock()
        self.keep_results = bool(keep_results)
        self.results: list[InferenceResult] = []
        self._grid: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] = []
        self._correct = 0
        self._n_quality = 0
        self._ssim_sum = 0.0
        self._n = 0
        self._outcomes: dict[str, int] = {"reconstructed": 0, "dropped": 0}
        self._rejected: dict[str, int] = {}
        self._lat: dict[str, array] = {k: array("d") for k in (*LATENCY_KEYS, "queue")}
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="bci-app-trials-")
        self.samples_lost = 0
        self.extra_rejected: dict[str, int] = {}
        self.trials_seen: int | None = None

    # ------------------------------------------------------------------ collecting
    def add(self, result: InferenceResult) -> None:
        """Record one outcome (thread-safe; quality is computed here, once per trial)."""
        quality = None
        if result.outcome == "reconstructed" and result.reconstruction is not None:
            quality = self._quality(result)
        record = self.trial_record(result)
        if quality is not None:  # per trial, so a reader can score any subset of trials
            record["top1_correct"], record["ssim"] = bool(quality[0]), round(float(quality[1]), 4)
        line = json.dumps(record)
        with self._lock:
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
                for key, values in self._lat.items():
                    values.append(float(result.times_ms.get(key, math.nan)))
            if quality is not None:
                correct, s = quality
                self._n_quality += 1
                self._correct += int(correct)
                self._ssim_sum += float(s)
            if result.outcome == "reconstructed" and len(self._grid) < self.grid_rows:
                rec = result.reconstruction
                seen = self._seen(result.trial.stim_id)
                self._grid.append((seen, np.asarray(rec.saliency), np.asarray(rec.image)))

    __call__ = add

    def _seen(self, stim_id: str | None) -> np.ndarray | None:
        return seen_image_or_none(self.seen_image, stim_id)

    def _label(self, stim_id: str | None) -> int | None:
        if stim_id is None or self.seen_label is None:
            return None
        try:
            return self.seen_label(stim_id)
        except (KeyError, ValueError):
            return None

    def _quality(self, result: InferenceResult) -> tuple[bool, float] | None:
        rec = result.reconstruction
        seen = self._seen(result.trial.stim_id)
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
        return correct, ssim(seen, np.asarray(rec.image))

    # ------------------------------------------------------------------ summaries
    @property
    def n_outcomes(self) -> int:
        """Trials with an outcome so far."""
        return self._n

    def counts(self) -> dict[str, Any]:
        with self._lock:
            rejected = dict(self.extra_rejected)
            for k, v in self._rejected.items():
                rejected[k] = rejected.get(k, 0) + v
            n_rec, n_drop, n = self._outcomes["reconstructed"], self._outcomes["dropped"], self._n
        trials = n + sum(self.extra_rejected.values())
        return {"trials": trials, "reconstructed": n_rec, "dropped": n_drop, "rejected": rejected}

    def latency(self) -> dict[str, dict[str, float | None]]:
        with self._lock:
            lat = {k: np.frombuffer(v, dtype=float).copy() for k, v in self._lat.items()}
        out = {key: percentiles(lat[key]) for key in LATENCY_KEYS}
        if np.isfinite(lat["queue"]).any():  # extra stage when present
            out["queue"] = percentiles(lat["queue"])
        return out

    def quality(self) -> dict[str, Any]:
        with self._lock:
            n = self._n_quality
            top1 = self._correct / n if n else None
            s = self._ssim_sum / n if n else None
        return {
            "n": n,
            "top1": None if top1 is None else round(top1, 4),
            "ways": self.n_classes,
            "ssim": None if s is None else round(s, 4),
        }

    def summary(self) -> dict[str, Any]:
        """The ``report.json`` object (contract in ARCHITECTURE.md)."""
        c = self.counts()
        return {
            "trials": c["trials"] if self.trials_seen is None else max(self.trials_seen, c["trials"]),
            "reconstructed": c["reconstructed"],
            "dropped": c["dropped"],
            "rejected": c["rejected"],
            "samples_lost": int(self.samples_lost),
            "latency_ms": self.latency(),
            "quality": self.quality(),
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
            lines = self._spool.read().splitlines()
            self._spool.seek(0, 2)  # further trials append again
        lines.sort(key=lambda s: json.loads(s)["index"])
        with (out / "trials.jsonl").open("w") as fh:
            fh.writelines(s + "\n" for s in lines)
        self.grid_image().save(out / "grid.png")
        return summary

    def grid_image(self, cell: int = 128):
        """A PIL image: one row per trial, columns seen | saliency | reconstruction."""
        from PIL import Image, ImageDraw

        with self._lock:
            rows = list(self._grid)
        pad = 4
        head = 16
        n = max(1, len(rows))
        w = 3 * cell + 4 * pad
        h = head + n * (cell + pad) + pad
        canvas = Image.new("RGB", (w, h), (24, 24, 24))
        draw = ImageDraw.Draw(canvas)
        for j, title in enumerate(("seen", "saliency", "reconstruction")):
            draw.text((pad + j * (cell + pad) + 2, 2), title, fill=(220, 220, 220))
        for i, row in enumerate(rows):
            for j, img in enumerate(row):
                x0 = pad + j * (cell + pad)
                y0 = head + i * (cell + pad)
                if img is None:
                    draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline=(90, 90, 90))
                    draw.text((x0 + 8, y0 + cell // 2 - 6), "unknown", fill=(150, 150, 150))
                    continue
                tile = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")
                canvas.paste(tile.resize((cell, cell), Image.NEAREST), (x0, y0))
        if not rows:
            draw.text((pad, head + 8), "no trial reconstructed", fill=(200, 80, 80))
        return canvas
