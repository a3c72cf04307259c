"""``report.html`` of ``bci-app evaluate``: one self-contained file, viewable offline.

Tables (overall = the paper's Table 1, per subject = Table 2, ablation = Table 3),
the leakage verdict, the zero-shot figures (:func:`add_section` of :func:`zero_shot_section`,
when the bundle held classes out), image grids (seen | saliency | reconstruction) of the best and
worst test trials, and a per-subject bar plot (inline SVG). Images are embedded as
base64 PNG ``data:`` URIs, so the file can be mailed or opened without a server.

:func:`check_html` is the pure-Python check used by the tests: the document is
well-formed (every opened element closed in order) and every ``<img>`` resolves to a
decodable image.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GridRow", "png_data_uri", "render_report", "write_report", "zero_shot_section", "add_section",
           "check_html"]

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class GridRow:
    """One row of an image grid: what was seen, the saliency map, the reconstruction."""

    seen: np.ndarray  # uint8 [H, W, 3]
    saliency: np.ndarray | None
    recon: np.ndarray
    caption: str = ""


def png_data_uri(img: np.ndarray, size: int | None = 128) -> str:
    """``data:image/png;base64,...`` of a ``uint8 [H, W, 3]`` (or ``[H, W]``) image."""
    from PIL import Image

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    im = Image.fromarray(arr)
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.NEAREST if max(im.size) < size else Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- formatting
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "n/a"
        return f"{float(v):.{digits}f}"
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return f"[{_fmt(v[0], digits)}, {_fmt(v[1], digits)}]"
    return html.escape(str(v))


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{float(v):.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_LOUD = {"CLASSIFIER WARNING", "NOT SIGNIFICANT", "SPLIT WARNING", "LEAKAGE", "TEST IMAGES SEEN",
         "BASELINE FALLBACK", "COMPONENT RECORD", "HELD-OUT CLASSES SEEN"}


def _paired(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return f"{_fmt(d.get('diff'))} {_fmt(d.get('ci'))}, p {_p(d.get('p'))}"


def _metric_rows(m: dict[str, Any]) -> list[list[str]]:
    ways, k = m.get("ways"), m.get("topk")
    rows = [
        [
            f"{ways}-way top-{k} (reconstruction)",
            _fmt(m.get("acc")),
            _fmt(m.get("acc_ci")),
            _fmt(m.get("chance")),
            _p(m.get("acc_p")),
        ]
    ]
    b = m.get("baseline") or {}
    if b:
        rows.append(
            [
                f"{ways}-way top-{k} (linear baseline on EEG; trained on: "
                f"{html.escape(str(b.get('trained_on', '?')))})",
                _fmt(b.get("acc")),
                _fmt(b.get("acc_ci")),
                _fmt(b.get("chance")),
                _p(b.get("p")),
            ]
        )
        d = b.get("model_minus_baseline")
        if d:
            rows.append(
                [
                    "reconstruction minus baseline (paired, same trials; p: reconstruction better)",
                    _fmt(d.get("diff")),
                    _fmt(d.get("ci")),
                    "0",
                    _p(d.get("p")),
                ]
            )
    rows.append(
        [
            f"SSIM at {m.get('ssim_resolution', '?')} px",
            _fmt(m.get("ssim")),
            _fmt(m.get("ssim_ci")),
            _fmt(m.get("ssim_chance")) + " (shuffled pairs)",
            _p(m.get("ssim_p")),
        ]
    )
    pc = m.get("pixel_correlation") or {}
    if pc:
        rows.append(
            [
                "pixel correlation",
                _fmt(pc.get("value")),
                _fmt(pc.get("ci")),
                _fmt(pc.get("chance")) + " (shuffled pairs)",
                _p(pc.get("p")),
            ]
        )
    is_v = m.get("inception_score")
    rows.append(
        [
            "Inception Score",
            _fmt(is_v) if is_v is not None else f"unavailable: {html.escape(str(m.get('inception_score_reason', '')))}",
            "",
            "1.0 (no diversity)",
            "",
        ]
    )
    for key, label in (("clip_two_way", "CLIP two-way"), ("alexnet2", "AlexNet(2) two-way"), ("alexnet5", "AlexNet(5) two-way")):
        e = m.get(key)
        if not isinstance(e, dict):
            continue
        if e.get("available"):
            rows.append([label, _fmt(e.get("value")), _fmt(e.get("ci")), "0.500", _p(e.get("p"))])
        else:
            rows.append([label, f"unavailable: {html.escape(str(e.get('reason', '')))}", "", "0.500", ""])
    return rows


def _per_subject_svg(per_subject: dict[str, dict[str, Any]], chance: float | None) -> str:
    """Bars of the reconstruction accuracy per subject, baseline as a marker, chance as a line."""
    subs = list(per_subject)
    if not subs:
        return "<p>no per-subject rows</p>"
    w_bar, gap, h, left, bottom, top = 36, 18, 180, 44, 30, 10
    width = left + len(subs) * (w_bar + gap) + gap
    height = top + h + bottom

    def y(v: float) -> float:
        return top + h * (1 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="per-subject accuracy">',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top + h}" x2="{width}" y2="{top + h}" stroke="#444"/>',
    ]
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="10" text-anchor="end">{t:.2f}</text>')
    for i, s in enumerate(subs):
        row = per_subject[s]
        x = left + gap + i * (w_bar + gap)
        acc = row.get("acc")
        if isinstance(acc, int | float) and math.isfinite(acc):
            parts.append(
                f'<rect x="{x}" y="{y(acc):.1f}" width="{w_bar}" height="{top + h - y(acc):.1f}" '
                f'fill="#3b73b9"><title>subject {html.escape(str(s))}: {acc:.3f}</title></rect>'
            )
        b = row.get("baseline_acc")
        if isinstance(b, int | float) and math.isfinite(b):
            parts.append(
                f'<line x1="{x - 4}" y1="{y(b):.1f}" x2="{x + w_bar + 4}" y2="{y(b):.1f}" '
                f'stroke="#e08a1e" stroke-width="3"><title>baseline {b:.3f}</title></line>'
            )
        parts.append(
            f'<text x="{x + w_bar / 2}" y="{top + h + 16}" font-size="11" text-anchor="middle">'
            f"{html.escape(str(s))}</text>"
        )
    if chance is not None and math.isfinite(chance):
        parts.append(
            f'<line x1="{left}" y1="{y(chance):.1f}" x2="{width}" y2="{y(chance):.1f}" '
            f'stroke="#c0392b" stroke-dasharray="5,4"><title>chance {chance:.3f}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def photodiode_svg(summary: dict[str, Any]) -> str:
    """Histogram of the marker-to-light delays (``summary["hist"]`` of
    :func:`bci_app.preprocessing.photodiode.photodiode_summary`) as a small inline SVG."""
    hist = summary.get("hist") or {}
    counts = list(hist.get("counts") or [])
    if not counts:
        return "<p>no photodiode edge found</p>"
    bin_ms, start = float(hist.get("bin_ms", 1.0)), float(hist.get("start_ms", 0.0))
    w_bar, h, left, bottom, top = max(4, min(24, 480 // len(counts))), 120, 40, 30, 10
    width, height, peak = left + len(counts) * w_bar + 10, top + h + bottom, max(counts) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="photodiode delay histogram">',
        f'<line x1="{left}" y1="{top + h}" x2="{width}" y2="{top + h}" stroke="#444"/>',
        f'<text x="{left - 6}" y="{top + 8}" font-size="10" text-anchor="end">{peak}</text>',
    ]
    for i, c in enumerate(counts):
        bh = h * c / peak
        lo = start + i * bin_ms
        parts.append(f'<rect x="{left + i * w_bar}" y="{top + h - bh:.1f}" width="{w_bar - 1}" '
                     f'height="{bh:.1f}" fill="#3b73b9"><title>{lo:g}-{lo + bin_ms:g} ms: {c}</title></rect>')
    for i in (0, len(counts)):
        parts.append(f'<text x="{left + i * w_bar}" y="{top + h + 16}" font-size="10" '
                     f'text-anchor="middle">{start + i * bin_ms:g} ms</text>')
    parts.append("</svg>")
    return "".join(parts)


def photodiode_section(summary: dict[str, Any] | None) -> str:
    """The report's photodiode section (table + histogram); empty without a summary."""
    if not summary:
        return ""
    keys = ("n", "missing", "mean_ms", "sd_ms", "min_ms", "max_ms")
    return "\n".join([
        "<h2>Photodiode: marker-to-light delay</h2>",
        _table(list(keys), [[_fmt(summary.get(k)) for k in keys]]),
        photodiode_svg(summary),
        '<p class="note">each trial was re-timed to the light edge after its marker (--photodiode); '
        "trials without an edge were rejected as photodiode_missing.</p>",
    ])


def grid_html(rows: Sequence[GridRow], size: int) -> str:
    """A table of rows of seen | saliency | reconstruction | caption."""
    out = ['<table class="grid"><thead><tr><th>seen</th><th>saliency</th><th>reconstruction</th><th></th></tr></thead><tbody>']
    for r in rows:
        cells = []
        for img, alt in ((r.seen, "seen"), (r.saliency, "saliency"), (r.recon, "reconstruction")):
            if img is None:
                cells.append("<td>-</td>")
            else:
                cells.append(f'<td><img src="{png_data_uri(img, size)}" alt="{alt}" width="{size}" height="{size}"></td>')
        out.append("<tr>" + "".join(cells) + f'<td class="cap">{html.escape(r.caption)}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def zero_shot_section(zs: dict[str, Any], rows: Sequence[GridRow] = (), image_size: int = 128) -> str:
    """The zero-shot section (``metrics["zero_shot"]``, :mod:`~bci_app.evaluation.zero_shot`):
    its figures with chance, CI and p, the notes on what saw the held-out classes, and the
    held-out classes' reconstructions."""
    parts = [f"<h2>Zero-shot: {len(zs['classes'])} classes no model component trained on</h2>",
             f'<p class="note">held out: {html.escape(", ".join(zs["classes"]))}; {zs["n"]} test trials</p>']
    for note in zs.get("notes", []):
        loud = str(note).split(":", 1)[0] in _LOUD
        parts.append(f'<p class="{"leak" if loud else "note"}">{html.escape(str(note))}</p>')
    figures = [(f"caption retrieval top-{k}", zs.get(f"retrieval_top{k}") or {}) for k in (1, 5)]
    figures.append(("reconstruction, judged top-1", zs.get("recon_acc") or {}))
    parts.append(_table(["metric", "value", "95% CI", "chance", "p (permutation)"], [
        [name, _fmt(r.get("value")), _fmt(r.get("ci")), _fmt(r.get("chance")),
         _p(r.get("p")) if "unavailable" not in r else html.escape(str(r["unavailable"]))]
        for name, r in figures]))
    for key in ("retrieval_definition", "recon_acc_definition"):
        if zs.get(key):
            parts.append(f'<p class="note">{html.escape(str(zs[key]))}</p>')
    if rows:
        parts.append(f"<h3>held-out classes: one test trial each</h3>{grid_html(rows, image_size)}")
    return "\n".join(parts)


def add_section(path: str | Path, section: str) -> Path:
    """Insert ``section`` (HTML) into a written report, after its other sections."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.count(_IMG_CHECK) != 1:
        raise ValueError(f"{path} is not a report written by write_report (its closing script is missing)")
    path.write_text(text.replace(_IMG_CHECK, section + "\n" + _IMG_CHECK), encoding="utf-8")
    return path


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#f2f2f2}
table.grid td{padding:2px}
td.cap{font-size:12px;max-width:360px}
.leak{background:#fde2e1;border:3px solid #c0392b;padding:12px;font-size:18px;font-weight:bold}
.ok{background:#e6f4ea;border:1px solid #3c8d50;padding:8px}
.note{color:#555;font-size:13px}
.grids{display:flex;gap:32px;flex-wrap:wrap}
#imgcheck{color:#c0392b;font-weight:bold}
"""

# Tells a viewer (and the headless browser test) whether every embedded image decoded.
_IMG_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
  if (ok < imgs.length) {
    document.getElementById('imgcheck').textContent = (imgs.length - ok) + ' image(s) failed to load';
  }
});
</script>
"""


def _lead(m: dict[str, Any]) -> str:
    """The first box of the report: the model against its own linear read-out (paired
    difference, CI) and where the image path loses the most."""
    b = m.get("baseline") or {}
    d = b.get("model_minus_baseline") or {}
    if b.get("acc") is None or d.get("diff") is None or m.get("acc") is None:
        return ""
    ci = d.get("ci") or [float("nan"), float("nan")]
    below = ci[1] < 0
    text = (f"Model vs its own linear readout (same trials, same N-way draws): {m['acc']:.3f} vs "
            f"{b['acc']:.3f}; paired difference {d['diff']:+.3f} [95 % CI {ci[0]:+.3f}, {ci[1]:+.3f}], "
            f"p = {d.get('p')}.")
    st = m.get("stages") or {}
    if st.get("lost_most_at"):
        text += (f" The image path loses the most at the {st['lost_most_at']} step "
                 f"({st['top1_lost'][st['lost_most_at']]:+.3f} top-1).")
    return f'<div class="{"leak" if below else "ok"}" id="lead"><b>{html.escape(text)}</b></div>'


def render_report(
    metrics: dict[str, Any],
    best: Sequence[GridRow] = (),
    worst: Sequence[GridRow] = (),
    title: str = "bci-app evaluation",
    image_size: int = 128,
) -> str:
    """The report as one HTML string (see the module docstring)."""
    m = metrics
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p id="imgcheck"></p>',
        f'<p class="note">bundle: {_fmt(m.get("bundle"))} &middot; data: {_fmt(m.get("data"))} '
        f"&middot; {m.get('n', 0)} test trials &middot; device: {_fmt(m.get('device'))}</p>",
    ]
    probe = m.get("leakage_probe") or {}
    if probe.get("flagged"):
        parts.append(f'<div class="leak">&#9888; {html.escape(str(probe.get("message", "design leakage")))}</div>')
    elif probe:
        parts.append(f'<div class="ok">{html.escape(str(probe.get("message", "")))}</div>')
    for note in m.get("notes", []):
        if probe.get("flagged") and note == probe.get("message"):
            continue  # already shown in the leakage box above
        loud = str(note).split(":", 1)[0] in _LOUD
        parts.append(f'<p class="{"leak" if loud else "note"}">{html.escape(str(note))}</p>')

    lead = _lead(m)
    if lead:
        parts.insert(6, lead)  # after the bundle line, before everything else
    parts.append("<h2>Overall (Table 1)</h2>")
    parts.append(_table(["metric", "value", "95% CI", "chance", "p (permutation)"], _metric_rows(m)))
    for key, label in (("ground_truth", "Ground truth"), ("acc_definition", "N-way"),
                       ("ssim_definition", "SSIM"), ("latent_seeds", "Latents")):
        if m.get(key):
            parts.append(f'<p class="note"><b>{label}:</b> {html.escape(str(m[key]))}</p>')

    if probe:
        parts.append("<h2>Block-design leakage probe</h2>")
        parts.append(
            _table(
                ["features", "accuracy", "chance", "p", "flagged", "train / test trials"],
                [
                    [
                        html.escape(", ".join(probe.get("features", []))),
                        _fmt(probe.get("acc")),
                        _fmt(probe.get("chance")),
                        _p(probe.get("p")),
                        "<b>YES</b>" if probe.get("flagged") else "no",
                        f"{probe.get('n_train', '?')} / {probe.get('n_test', '?')}",
                    ]
                ],
            )
        )

    per = m.get("per_subject") or {}
    parts.append("<h2>Per subject (Table 2)</h2>")
    if per:
        rows = [
            [
                html.escape(str(s)),
                _fmt(r.get("n")),
                _fmt(r.get("acc")),
                _fmt(r.get("acc_ci")),
                _fmt(r.get("baseline_acc")),
                _fmt(r.get("ssim")),
            ]
            for s, r in per.items()
        ]
        parts.append(_table(["subject", "n", "acc", "95% CI", "baseline acc", "SSIM"], rows))
        parts.append(_per_subject_svg(per, m.get("chance")))
        parts.append('<p class="note">bars: reconstruction N-way accuracy; orange: linear baseline; dashed red: chance.</p>')

    abl = m.get("ablation")
    if abl:
        parts.append("<h2>Ablation (Table 3)</h2>")
        rows = [
            [
                html.escape(str(name)),
                "&#10003;" if r.get("saliency") else "",
                html.escape(str(r.get("semantics", ""))),
                _fmt(r.get("acc")),
                _fmt(r.get("acc_ci")),
                _fmt(r.get("ssim")),
                _paired(r.get("full_minus_row", {}).get("acc")),
                _paired(r.get("row_minus_baseline")),
                html.escape(str(r.get("description", r.get("unavailable", "")))),
            ]
            for name, r in abl.get("rows", {}).items()
        ]
        parts.append(_table(["row", "saliency (I)", "semantics (B/L)", "acc", "95% CI", "SSIM",
                             "full minus row, acc (paired: diff [CI], p)",
                             "row minus baseline, acc (paired)", "configuration"], rows))
        if abl.get("note"):
            parts.append(f'<p class="note">{html.escape(str(abl["note"]))}</p>')

    stages = m.get("stages")
    if stages:
        parts.append("<h2>Where the image path loses what the EEG decodes</h2>")
        rows = [[html.escape(name), _fmt(r.get("acc")), _fmt(r.get("acc_ci")), _fmt(r.get("top1_all_classes")),
                 html.escape(str(r.get("what", "")) + (f" ({r['unavailable']})" if r.get("unavailable") else ""))]
                for name, r in stages.get("rows", {}).items()]
        parts.append(_table(["stage", "acc", "95% CI", "top-1, all classes", "read-out"], rows))
        chain = [[html.escape(k.replace("_", " ")), _fmt(v.get("rate")), str(v.get("n"))]
                 for k, v in stages.get("chain", {}).items()]
        if chain:
            parts.append(_table(["trial by trial (all-class top-1)", "rate", "trials"], chain))
        if stages.get("lost_most_at"):
            lost = ", ".join(f"{k}: {v:+.3f}" for k, v in stages.get("top1_lost", {}).items())
            parts.append(f'<p class="note">top-1 lost per step: {html.escape(lost)}; most at '
                         f'{html.escape(str(stages["lost_most_at"]))}.</p>')

    if best or worst:
        parts.append("<h2>Reconstructions</h2><div class=\"grids\">")
        if best:
            parts.append(f"<div><h3>best {len(best)} test trials</h3>{grid_html(best, image_size)}</div>")
        if worst:
            parts.append(f"<div><h3>worst {len(worst)} test trials</h3>{grid_html(worst, image_size)}</div>")
        parts.append("</div>")

    if m.get("photodiode"):
        parts.append(photodiode_section(m["photodiode"]))

    split = m.get("split") or {}
    if split:
        parts.append("<h2>Split</h2>")
        rows = [[html.escape(str(k)), html.escape(str(v))] for k, v in split.items()]
        parts.append(_table(["", ""], rows))
    parts.append(_IMG_CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, metrics: dict[str, Any], best: Sequence[GridRow] = (),
                 worst: Sequence[GridRow] = (), **kwargs: Any) -> Path:
    """Render and write ``report.html``; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(metrics, best, worst, **kwargs), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- checking
class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple[int, int]]] = []
        self.errors: list[str] = []
        self.img_srcs: list[str] = []
        self.seen_tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen_tags.add(tag)
        if tag == "img":
            src = dict(attrs).get("src")
            if not src:
                self.errors.append(f"<img> without src at line {self.getpos()[0]}")
            else:
                self.img_srcs.append(src)
        if tag not in _VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID and tag not in {"line", "rect", "path", "circle"}:
            self.errors.append(f"self-closed non-void <{tag}/> at line {self.getpos()[0]}")
        self.seen_tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self.stack:
            self.errors.append(f"</{tag}> with nothing open at line {self.getpos()[0]}")
            return
        open_tag, pos = self.stack.pop()
        if open_tag != tag:
            self.errors.append(f"</{tag}> at line {self.getpos()[0]} closes <{open_tag}> opened at line {pos[0]}")


def check_html(path: str | Path) -> dict[str, int]:
    """Check a report: well-formed, and every ``<img>`` decodes (data URI or file beside it).

    Returns ``{"images": n}``; raises ``ValueError`` listing what is wrong.
    """
    from PIL import Image

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    p = _Checker()
    p.feed(text)
    p.close()
    errors = list(p.errors)
    if p.stack:
        errors.append("unclosed: " + ", ".join(f"<{t}> (line {pos[0]})" for t, pos in p.stack))
    for need in ("html", "head", "body", "title"):
        if need not in p.seen_tags:
            errors.append(f"no <{need}> element")
    for i, src in enumerate(p.img_srcs):
        try:
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                if ";base64" not in header:
                    raise ValueError("data URI is not base64")
                raw = base64.b64decode(payload, validate=True)
                Image.open(io.BytesIO(raw)).verify()
            else:
                target = (path.parent / src).resolve()
                if not target.is_file():
                    raise ValueError(f"{target} does not exist")
                with Image.open(target) as im:
                    im.verify()
        except Exception as err:
            errors.append(f"image {i} does not resolve: {err}")
    if errors:
        raise ValueError(f"{path}: " + "; ".join(errors[:10]))
    return {"images": len(p.img_srcs)}
