"""Write an image folder with one sub-folder per class: circles, squares and triangles.

    python examples/make_shapes.py examples/shapes          # then: engine run --config examples/images.toml

Each image is 24x24 RGB: one shape of random size, position and colour on a noisy background.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: random.Random, size: int = 24):
    from PIL import Image, ImageDraw

    background = tuple(rng.randint(0, 60) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    colour = tuple(rng.randint(140, 255) for _ in range(3))
    extent = rng.randint(8, 16)
    x, y = rng.randint(1, size - extent - 1), rng.randint(1, size - extent - 1)
    if shape == "circle":
        pen.ellipse([x, y, x + extent, y + extent], fill=colour)
    elif shape == "square":
        pen.rectangle([x, y, x + extent, y + extent], fill=colour)
    else:
        pen.polygon([(x + extent // 2, y), (x, y + extent), (x + extent, y + extent)], fill=colour)
    for _ in range(20):
        pen.point((rng.randrange(size), rng.randrange(size)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return image


def make_shapes(folder: Path | str, per_class: int = 60, seed: int = 0) -> Path:
    folder = Path(folder)
    rng = random.Random(seed)
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(shape, rng).save(folder / shape / f"{shape}-{i:03d}.png")
    return folder


if __name__ == "__main__":
    target = make_shapes(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "shapes")
    print(f"wrote {len(SHAPES)} classes of images to {target}")
