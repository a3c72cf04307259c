"""Small Qt helpers shared by the windows (imports Qt: use only where a GUI is wanted)."""

from __future__ import annotations

import os
import sys

import numpy as np

_NONE_GUARDED = False


def guard_none_refcount() -> None:
    """Work around a reference-count bug of PySide6 6.12 on CPython < 3.12.

    With PySide6 6.12, every call of a Python override of a C++ virtual that returns
    ``None`` or ``True`` (``paintEvent``, ``QGraphicsItem.paint``, event filters...)
    drops one reference to that singleton too many; on Python 3.11, where ``None`` is not yet immortal (PEP 683),
    a window that repaints for a few seconds then dies with "Fatal Python error:
    none_dealloc". We give these singletons a large reserve of references once (2**40: decades
    of repaints). Python 3.12+ needs nothing (the singletons are immortal there).
    """
    global _NONE_GUARDED
    if _NONE_GUARDED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    import PySide6

    # pyproject pins PySide6-Essentials<6.12; this only protects environments that
    # installed 6.12 anyway (6.11.3 was checked to keep None's count balanced).
    if not PySide6.__version__.startswith("6.12"):
        return
    import ctypes

    for obj in (None, True, False, Ellipsis, NotImplemented):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    _NONE_GUARDED = True


guard_none_refcount()


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
