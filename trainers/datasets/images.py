"""Image folders: one sub-folder per class, image files inside (PNG, JPEG, BMP, GIF).

Every image is converted to RGB and resized to ``data.image_size`` (by default the size of the first
image), so the tower sees one shape; pixel values are scaled to [0, 1] by the preprocessing model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blocks.tower import CLASSIFICATION
from engine.config import DataOptions
from trainers.datasets.base import DataError, RawData, rescaler, split_arrays, split_indices

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as an (height, width, 3) uint8 array, resized to ``size`` (height, width) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]))
            return np.asarray(image, dtype="uint8")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def image_folder(config: DataOptions) -> RawData:
    root = Path(config.path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders; put each class's images in a sub-folder named after it")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = image_files(root / name)
        if not found:
            raise DataError(f"{root / name}: the class folder {name!r} has no images ({', '.join(sorted(EXTENSIONS))})")
        files += [(path, label) for path in found]
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0]!r}); classification needs at least 2")
    size = tuple(config.image_size) if config.image_size else None
    first = read_image(files[0][0], size)
    size = size or first.shape[:2]
    x = np.stack([first] + [read_image(path, size) for path, _ in files[1:]]).astype("float32")
    y = np.array([label for _, label in files], dtype="int32")
    split = split_indices(len(x), config.validation, config.test, config.seed)
    return split_arrays(root.name, CLASSIFICATION, x, y, split, lambda train: rescaler(train.shape[1:], 1 / 255),
                        classes, {"source": str(root), "image_size": list(size)})
