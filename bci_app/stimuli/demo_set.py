"""The procedural demo stimulus set: 40 classes (8 shapes x 5 colours) x 50 images.

Shaped like the Spampinato EEG-ImageNet set (40 classes x 50 images). Every image is
rendered deterministically from ``(seed, class, index)``: its own position, size,
rotation and background, so that class, position, size and colour each vary.

Stimulus ids are strings ``"c{class:02d}_i{index:02d}"`` (e.g. ``"c07_i23"``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "hexagon",
    "diamond",
    "ring",
)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 50, 190),
}
_COLOUR_NAMES = tuple(COLOURS)
_ID_RE = re.compile(r"^c(\d{2})_i(\d{2})$")


@dataclass(frozen=True)
class StimulusParams:
    """Everything that defines one demo image (all in unit coordinates)."""

    stim_id: str
    label: int
    shape: str
    colour: str
    x: float  # centre, 0..1 from the left
    y: float  # centre, 0..1 from the top
    size: float  # radius as a fraction of the image side
    rotation: float  # degrees
    background: tuple[int, int, int]


class DemoStimulusSet:
    """Deterministic procedural images: ``n_classes`` x ``n_per_class``.

    Parameters
    ----------
    seed : int
        Seed of the per-image parameters (position, size, rotation, background).
    n_per_class : int
        Images per class (50 like the seed paper's data).
    size : int
        Side of the rendered square images, in pixels.
    """

    n_classes = len(SHAPES) * len(COLOURS)

    def __init__(self, seed: int = 0, n_per_class: int = 50, size: int = 64) -> None:
        if n_per_class < 1 or n_per_class > 99:
            raise ValueError(f"n_per_class must be in 1..99, got {n_per_class}")
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.seed = int(seed)
        self.n_per_class = int(n_per_class)
        self.size = int(size)
        self._params = self._make_params()
        self._render = lru_cache(maxsize=4096)(self._render_uncached)

    # ---------------------------------------------------------------- metadata
    @property
    def stim_ids(self) -> list[str]:
        return list(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, stim_id: object) -> bool:
        return stim_id in self._params

    @staticmethod
    def class_name(label: int) -> str:
        shape = SHAPES[label // len(COLOURS)]
        colour = _COLOUR_NAMES[label % len(COLOURS)]
        return f"{colour} {shape}"

    @classmethod
    def class_names(cls) -> list[str]:
        return [cls.class_name(k) for k in range(cls.n_classes)]

    @classmethod
    def class_attributes(cls) -> dict[str, list[int]]:
        """Attributes shared between classes: ``{"shape": [...], "colour": [...]}``, one value
        index per class (what a decoder may share statistical strength over: every red
        class tells something about "red")."""
        n = len(COLOURS)
        return {
            "shape": [k // n for k in range(cls.n_classes)],
            "colour": [k % n for k in range(cls.n_classes)],
        }

    @classmethod
    def caption(cls, label: int) -> str:
        """Label caption as in the seed paper: ``"an image of a red star"``."""
        return f"an image of a {cls.class_name(label)}"

    def params(self, stim_id: str) -> StimulusParams:
        try:
            return self._params[stim_id]
        except KeyError:
            raise KeyError(
                f"unknown demo stimulus id {stim_id!r}; expected 'cKK_iNN' with class "
                f"KK < {self.n_classes} and image NN < {self.n_per_class}"
            ) from None

    def label(self, stim_id: str) -> int:
        return self.params(stim_id).label

    #: names of :meth:`layout`'s columns
    LAYOUT_NAMES = ("x", "y", "size")

    def layout(self, stim_ids: list[str]) -> np.ndarray:
        """Where each image's object is: ``float64 [N, 3]`` of (x, y, size), centre and
        radius as fractions of the image side (what the virtual subject's visual
        response encodes; see :mod:`bci_app.simulation.subject`)."""
        rows = [self.params(s) for s in stim_ids]
        return np.array([[p.x, p.y, p.size] for p in rows], dtype=np.float64).reshape(-1, 3)

    @staticmethod
    def make_id(label: int, index: int) -> str:
        return f"c{label:02d}_i{index:02d}"

    @staticmethod
    def parse_id(stim_id: str) -> tuple[int, int] | None:
        m = _ID_RE.match(stim_id)
        return (int(m.group(1)), int(m.group(2))) if m else None

    # ---------------------------------------------------------------- images
    def image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        """The image as ``uint8 [H, W, 3]`` (a read-only cached array)."""
        return self._render(stim_id, int(size or self.size))

    def images(self, stim_ids: list[str], size: int | None = None) -> np.ndarray:
        return np.stack([self.image(s, size) for s in stim_ids])

    def image_upright(self, stim_id: str, size: int | None = None) -> np.ndarray:
        """The same image with its object upright (rotation 0): same shape, colour,
        position, size and background. The demo refiner learns to draw these (the
        rotation is not in the EEG, so a reconstruction cannot know it)."""
        return self._render_uncached(stim_id, int(size or self.size), upright=True)

    def image_at(self, stim_id: str, layout: tuple[float, float, float], size: int | None = None,
                 upright: bool = True) -> np.ndarray:
        """The image's object (same shape, colour and background) drawn at another
        ``layout`` = (x, y, size) in the units of :meth:`layout`, upright by default: what
        a reconstruction that trusts a decoded layout should draw (the demo refiner's
        target for a saliency map decoded to that layout)."""
        x, y, r = (float(v) for v in layout)
        if not all(math.isfinite(v) for v in (x, y, r)) or r <= 0:
            raise ValueError(f"layout must be finite (x, y, size) with size > 0, got {layout}")
        return self._render_uncached(stim_id, int(size or self.size), upright=upright, layout=(x, y, r))

    def _make_params(self) -> dict[str, StimulusParams]:
        out: dict[str, StimulusParams] = {}
        for label in range(self.n_classes):
            for index in range(self.n_per_class):
                sid = self.make_id(label, index)
                out[sid] = self.draw_params(np.random.default_rng([self.seed, label, index]), label, sid)
        return out

    @staticmethod
    def draw_params(rng: np.random.Generator, label: int, stim_id: str = "rendered") -> StimulusParams:
        """Random parameters of one image of class ``label``, from the distribution the set's
        own images are drawn from (position, size, rotation, background). Drawn from another
        ``rng`` than the set's ``[seed, label, index]`` streams, they make new instances of a
        class that are none of the set's images (the demo refiner trains on such)."""
        if not 0 <= int(label) < DemoStimulusSet.n_classes:
            raise ValueError(f"label must be in [0, {DemoStimulusSet.n_classes}), got {label}")
        label = int(label)
        shape = SHAPES[label // len(COLOURS)]
        colour = _COLOUR_NAMES[label % len(COLOURS)]
        size = float(rng.uniform(0.16, 0.34))
        x = float(rng.uniform(size + 0.02, 1 - size - 0.02))
        y = float(rng.uniform(size + 0.02, 1 - size - 0.02))
        rotation = float(rng.uniform(0, 360))
        grey = int(rng.integers(20, 110))
        tint = rng.integers(-15, 16, size=3)
        bg = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
        return StimulusParams(stim_id, label, shape, colour, x, y, size, rotation, bg)

    @staticmethod
    def with_class(p: StimulusParams, label: int) -> StimulusParams:
        """``p`` with the shape and colour of class ``label`` (same place, size, background)."""
        label = int(label)
        return dataclasses.replace(p, label=label, shape=SHAPES[label // len(COLOURS)],
                                   colour=_COLOUR_NAMES[label % len(COLOURS)])

    def _render_uncached(self, stim_id: str, size: int, upright: bool = False,
                         layout: tuple[float, float, float] | None = None) -> np.ndarray:
        p = self.params(stim_id)
        if layout is not None:
            p = dataclasses.replace(p, x=layout[0], y=layout[1], size=layout[2])
        return self.render(p, size, upright=upright)

    @staticmethod
    def render(p: StimulusParams, size: int = 64, upright: bool = False) -> np.ndarray:
        """Draw the image that ``p`` describes: ``uint8 [size, size, 3]`` (read-only);
        ``upright`` draws the object at rotation 0."""
        size = int(size)
        ss = 4  # supersampling for smooth edges
        n = size * ss
        img = Image.new("RGB", (n, n), p.background)
        draw = ImageDraw.Draw(img)
        cx, cy, r = p.x * n, p.y * n, p.size * n
        fill = COLOURS[p.colour]
        rot = 0.0 if upright else math.radians(p.rotation)

        def poly(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
            c, s = math.cos(rot), math.sin(rot)
            return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in points]

        def regular(k: int, radius: float, phase: float = 0.0) -> list[tuple[float, float]]:
            return [
                (radius * math.cos(phase + 2 * math.pi * i / k), radius * math.sin(phase + 2 * math.pi * i / k))
                for i in range(k)
            ]

        if p.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif p.shape == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            ri = r * 0.55
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=p.background)
        elif p.shape == "square":
            draw.polygon(poly(regular(4, r * 1.1, math.pi / 4)), fill=fill)
        elif p.shape == "diamond":
            draw.polygon(poly([(0, -r * 1.1), (r * 0.6, 0), (0, r * 1.1), (-r * 0.6, 0)]), fill=fill)
        elif p.shape == "triangle":
            draw.polygon(poly(regular(3, r * 1.15, -math.pi / 2)), fill=fill)
        elif p.shape == "hexagon":
            draw.polygon(poly(regular(6, r)), fill=fill)
        elif p.shape == "star":
            pts = []
            for i in range(10):
                rad = r * 1.1 if i % 2 == 0 else r * 0.45
                a = -math.pi / 2 + math.pi * i / 5
                pts.append((rad * math.cos(a), rad * math.sin(a)))
            draw.polygon(poly(pts), fill=fill)
        elif p.shape == "cross":
            w = r * 0.33
            draw.polygon(poly([(-r, -w), (r, -w), (r, w), (-r, w)]), fill=fill)
            draw.polygon(poly([(-w, -r), (w, -r), (w, r), (-w, r)]), fill=fill)
        else:  # pragma: no cover - SHAPES is closed
            raise ValueError(f"unknown shape {p.shape!r}")
        img = img.resize((size, size), Image.LANCZOS)
        arr = np.asarray(img, dtype=np.uint8).copy()
        arr.setflags(write=False)
        return arr
