"""A lab's own stimulus images: a folder of image files (``--images DIR``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bci_app.file_errors import reading

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]`` (``size``: resized to ``size x size``); a
    damaged or truncated file is an error naming it."""
    from PIL import Image

    with reading(path, "an image file (PNG, JPEG, ...)"), Image.open(path) as im:
        img = im.convert("RGB")
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


class ImageFolderSet:
    """Images of a folder (sub-folders = classes); stimulus id = path relative to the folder
    without suffix, e.g. ``"dogs/img_001"``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {self.folder} does not exist")
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"no images in {self.folder}; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
            )
        self._files = {p.relative_to(self.folder).with_suffix("").as_posix(): p for p in files}
        classes = sorted({sid.split("/")[0] if "/" in sid else "" for sid in self._files})
        self._class_index = {c: i for i, c in enumerate(classes)}

    @property
    def stim_ids(self) -> list[str]:
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, stim_id: object) -> bool:
        return stim_id in self._files

    def label(self, stim_id: str) -> int:
        return self._class_index[stim_id.split("/")[0] if "/" in stim_id else ""]

    def image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return read_image(self._files[stim_id], size)
