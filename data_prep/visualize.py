"""Pictures of prepared data: each image, its crop, its patch grids and its text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_bytes

LEVEL_COLOURS = {
    1: (230, 57, 70),
    2: (244, 162, 97),
    3: (42, 157, 143),
    4: (38, 70, 83),
    5: (131, 56, 236),
    8: (42, 157, 143),
}


FONT_FILES = (
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)


def _font(size: int) -> ImageFont.ImageFont:
    for name in FONT_FILES:  # a font with accented glyphs when there is one
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _grid_panel(crop: np.ndarray, grid: int, size: int) -> Image.Image:
    img = Image.fromarray(crop).resize((size, size), Image.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(img)
    colour = LEVEL_COLOURS.get(grid, (40, 40, 40))
    for i in range(1, grid):
        v = round(i * size / grid)
        draw.line([(v, 0), (v, size)], fill=colour, width=2)
        draw.line([(0, v), (size, v)], fill=colour, width=2)
    draw.rectangle([0, 0, size - 1, size - 1], outline=colour, width=2)
    draw.text((6, 4), f"{grid}x{grid}", fill=colour, font=_font(16))
    return img


def render_samples(
    images: list[np.ndarray],
    crop_boxes: list[tuple[int, int, int, int]],
    crops: list[np.ndarray],
    captions: list[str],
    layout: schema.Layout,
    out_path: str | Path,
    panel: int = 192,
) -> Path:
    """Writes a PNG with one row per image.

    Each row: the source image with its crop box, the crop split at every level
    of the layout, and the caption (category, sub-category, text).

    Args:
        images: uint8 [H, W, 3] source images.
        crop_boxes: x1, y1, x2, y2 of each crop in source pixels.
        crops: uint8 [S, S, 3] crops.
        captions: One text per row.
        layout: The patch layout whose grids are drawn.
        out_path: The PNG file (written atomically).
        panel: Side of each picture in pixels.
    """
    text_width = 360
    grids = layout.grids
    width = panel * (1 + len(grids)) + 8 * (2 + len(grids)) + text_width
    height = len(images) * (panel + 12) + 44
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (10, 10),
        f"layout {layout.name}: {layout.num_patches} patches per image "
        f"(grids {', '.join(f'{g}x{g}' for g in grids)})",
        fill=(30, 30, 30),
        font=_font(18),
    )
    for r, (image, box, crop, caption) in enumerate(
        zip(images, crop_boxes, crops, captions)
    ):
        y = 40 + r * (panel + 12)
        h, w = image.shape[:2]
        src = Image.fromarray(image).resize((panel, panel), Image.BILINEAR)
        d = ImageDraw.Draw(src)
        sx, sy = panel / w, panel / h
        x1, y1, x2, y2 = box
        d.rectangle(
            [x1 * sx, y1 * sy, x2 * sx - 1, y2 * sy - 1], outline=(230, 57, 70), width=2
        )
        sheet.paste(src, (8, y))
        for j, grid in enumerate(grids):
            sheet.paste(_grid_panel(crop, grid, panel), (8 + (panel + 8) * (j + 1), y))
        x_text = 8 + (panel + 8) * (1 + len(grids))
        lines = []
        for paragraph in caption.split("\n"):
            lines.extend(textwrap.wrap(paragraph, 44) or [""])
        draw.multiline_text(
            (x_text, y + 4), "\n".join(lines[:11]), fill=(30, 30, 30), font=_font(14)
        )
    out_path = Path(out_path)
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path
