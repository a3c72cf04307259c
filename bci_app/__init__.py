"""bci-app: real-time reconstruction of seen images from EEG."""

from __future__ import annotations

__version__ = "0.1.0"
