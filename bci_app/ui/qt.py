"""Small Qt helpers shared by the windows (imports Qt: use only where a GUI is wanted)."""

from __future__ import annotations

import os
import sys

import numpy as np


def check_pyside_version() -> None:
    """Refuse PySide6 6.12 on Python < 3.12, with the fix.

    PySide6 6.12 drops one reference to ``None`` each time C++ calls a Python override
    (``paintEvent``...); on Python 3.11, where ``None`` is not immortal, a repainting
    window dies within seconds ("Fatal Python error: none_dealloc"). 6.11.3 keeps the
    count balanced; pyproject pins ``PySide6-Essentials<6.12``.
    """
    import PySide6

    if sys.version_info < (3, 12) and PySide6.__version__.startswith("6.12"):
        raise RuntimeError(
            f"PySide6 {PySide6.__version__} crashes on Python "
            f"{sys.version_info.major}.{sys.version_info.minor} (a reference-count bug in "
            "6.12 frees None while windows repaint); expected PySide6-Essentials < 6.12: "
            "run pip install 'PySide6-Essentials<6.12'"
        )


check_pyside_version()



def has_display() -> bool:
    """Whether a real display is available for windows (False offscreen / no X or Wayland)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in ("offscreen", "minimal", "vnc"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def ensure_app():
    """The QApplication (made once)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    return app


def to_qimage(img: np.ndarray):
    """A QImage owning a copy of ``img`` (uint8 [H, W, 3] RGB or [H, W] grey)."""
    from PySide6.QtGui import QImage

    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.ndim == 2:
        h, w = a.shape
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    h, w, c = a.shape
    if c == 4:
        return QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
