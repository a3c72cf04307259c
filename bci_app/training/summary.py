"""What ``bci-app train`` says when it is done: a short summary a person reads.

It leads with the decoder against its own linear baseline on the same validation trials
(the floor every modelling choice must beat), says plainly when a stage is below it, lists
which optional terms the validation data kept, and ends with where the bundle is and the
next command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * float(v):.1f} %"


def _kept(decisions: dict[str, Any]) -> str:
    parts = []
    for name, d in decisions.items():
        if isinstance(d, dict) and "kept" in d:
            parts.append(f"{name} {'kept' if d['kept'] else 'dropped'}")
    return ", ".join(parts)


def below_baseline(training: dict[str, Any]) -> list[str]:
    """Plain sentences for every stage whose validation accuracy is below the linear baseline's."""
    sel = training.get("selection") or {}
    dec = (sel.get("encoder") or {}).get("decoder") or {}
    base = dec.get("baseline_val_acc")
    out = []
    if dec.get("below_baseline"):
        out.append(
            f"the decoder reads {_pct(dec.get('val_acc'))} of the validation trials, BELOW its linear baseline's "
            f"{_pct(base)} on the same trials: this encoder knows less than a shrinkage LDA "
            "(try lda_init = true with the binned_linear encoder, or more calibration trials)"
        )
    sem = (training.get("metrics") or {}).get("semantic") or {}
    if base is not None and sem.get("val_acc") is not None and sem["val_acc"] < base - 0.02:
        out.append(
            f"the semantic head's caption is right in {_pct(sem['val_acc'])} of the validation trials, "
            f"below the linear baseline's {_pct(base)}"
        )
    return out


def summary_lines(bundle: str | Path, config: dict[str, Any]) -> list[str]:
    """The summary of a trained bundle's record (``config.json``)."""
    tr = config.get("training") or {}
    metrics, times, sel = tr.get("metrics") or {}, tr.get("times_s") or {}, tr.get("selection") or {}
    ds = tr.get("data_summary") or {}
    lines = []
    stage_times = ", ".join(f"{k} {v:g} s" for k, v in times.items() if k != "total")
    lines.append(f"trained {', '.join(tr.get('stages_done') or [])} in {times.get('total', 0):g} s ({stage_times})")
    n_val = (metrics.get("baseline") or {}).get("n_val")
    spec = config.get("spec") or {}
    lines.append(f"data: {tr.get('data')} - {ds.get('n', '?')} trials, {ds.get('n_classes', '?')} classes, "
                 f"{len(spec.get('ch_names') or [])} channels at {spec.get('sfreq', '?')} Hz")
    held = tr.get("holdout_classes") or []
    if held:
        judge = ", the judge learnt them from rendered instances" if (
            (tr.get("rendered_instances") or {}).get("classifier")) else ""
        lines.append(f"held out {len(held)} classes (zero-shot; no model component trained on them{judge}): "
                     f"{', '.join(held[:8])}{' ...' if len(held) > 8 else ''}")
    dec = (sel.get("encoder") or {}).get("decoder") or {}
    if dec:
        diff = 100 * (dec["val_acc"] - dec["baseline_val_acc"])
        lines.append(f"validation{f' ({n_val} trials)' if n_val else ''}: decoder {_pct(dec['val_acc'])} vs its "
                     f"linear baseline {_pct(dec['baseline_val_acc'])} ({diff:+.1f} points)")
    sem = metrics.get("semantic") or {}
    if sem.get("val_acc") is not None:
        lines.append(f"  caption (semantic head) {_pct(sem['val_acc'])}")
    enc_sel = {k: v for k, v in (sel.get("encoder") or {}).items() if k != "decoder"}
    if _kept(enc_sel):
        lines.append(f"  chosen on validation: {_kept(enc_sel)}")
    for stage in ("gan", "semantic", "sampling"):
        if _kept(sel.get(stage) or {}):
            lines.append(f"  {stage}: {_kept(sel[stage])}")
    for warning in below_baseline(tr):
        lines.append(f"WARNING: {warning}")
    lines.append(f"wrote {bundle} (the whole record: {Path(bundle) / 'config.json'}, key 'training')")
    lines.append(f"next: bci-app evaluate --bundle {bundle} --data SPEC_OF_A_HELD_OUT_SESSION --out runs/eval "
                 f"(a session of images the bundle never saw, e.g. a second recording)")
    return lines
