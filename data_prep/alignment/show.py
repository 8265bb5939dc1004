"""``kaleido-tf align show``: a picture of one image's token-patch alignment.

The KPG crop with its kaleido grid, the generated caption and the description with
the aligned words coloured, and per aligned word its attention heat-map over the
crop, the attention region (outlined) and the patches it pairs with (outlined in the
colour of their level).
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data_prep.alignment.alignment_generator import is_alignable
from data_prep.alignment.extract import (
    AlignmentExtractor,
    ImageAlignment,
    make_generator,
)
from data_prep.alignment.prepared_images import PreparedImages
from data_prep.alignment.trainer import load_captioner
from data_prep.kpg.kaleido_patches import cell_boxes
from kaleido_tf.atomic_files import atomic_write_bytes
from kaleido_tf.config.alignment import AlignmentConfig
from kaleido_tf.errors import DataError

LEVEL_COLOURS = {3: (0, 168, 150), 4: (255, 183, 3), 5: (230, 57, 180)}
WORD_COLOURS = (
    (214, 40, 57),
    (0, 119, 182),
    (46, 139, 87),
    (230, 126, 34),
    (142, 68, 173),
    (22, 160, 133),
    (192, 57, 43),
    (41, 128, 185),
)
INK = (33, 37, 41)
MUTED = (134, 142, 150)
PAPER = (250, 250, 247)
FONT_FILES = (
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)
BOLD_FONT_FILES = (
    "DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)


def _font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    for name in BOLD_FONT_FILES if bold else FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def heat_overlay(crop: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The crop under a heat-map of one attention map.

    Args:
        crop: uint8 [S, S, 3].
        attention: float [S, S], upsampled attention (any scale).

    Returns:
        uint8 [S, S, 3]: the crop, greyed and dimmed, with the TURBO colour map
        blended in proportion to attention / max.
    """
    a = attention / max(float(attention.max()), 1e-12)
    heat = cv2.applyColorMap(np.uint8(np.clip(a, 0, 1) * 255), cv2.COLORMAP_TURBO)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    grey = crop.astype(np.float32).mean(axis=-1, keepdims=True)
    base = 0.55 * grey + 0.25 * crop.astype(np.float32) + 0.2 * 255
    w = (0.15 + 0.7 * a)[..., None]
    return np.uint8(np.clip(base * (1 - w) + heat * w, 0, 255))


def _outline_region(image: np.ndarray, region: np.ndarray, scale: float) -> None:
    mask = cv2.resize(
        region.astype(np.uint8),
        (image.shape[1], image.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    )
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, (255, 255, 255), max(2, round(2 * scale)))


def _grid_panel(crop: np.ndarray, size: int, levels: tuple[int, ...]) -> Image.Image:
    img = Image.fromarray(crop).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(img, "RGBA")
    for n in sorted(levels, reverse=True):  # finest first, coarse lines on top
        colour = LEVEL_COLOURS.get(n, INK)
        width, opacity = {3: (3, 235), 4: (2, 190)}.get(n, (1, 150))
        for i in range(1, n):
            v = round(i * size / n)
            draw.line([(v, 0), (v, size)], fill=colour + (opacity,), width=width)
            draw.line([(0, v), (size, v)], fill=colour + (opacity,), width=width)
    draw.rectangle([0, 0, size - 1, size - 1], outline=INK, width=1)
    return img


_WORD_SPLIT = re.compile(r"[^0-9a-zà-ÿ]+")


def _caption_line(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    words: list[str],
    colours: dict[str, tuple[int, int, int]],
    width: int,
    font: ImageFont.ImageFont,
    bold: ImageFont.ImageFont,
) -> int:
    """Draws words with wrapping; coloured bold where aligned. Returns the next y."""
    x0, y = xy
    x = x0
    line_h = int(font.size * 1.45)
    for word in words:
        pieces = [w for w in _WORD_SPLIT.split(word.lower()) if w in colours]
        f = bold if pieces else font
        colour = colours[pieces[0]] if pieces else INK
        w = draw.textlength(word + " ", font=f)
        if x + w > x0 + width and x > x0:
            x, y = x0, y + line_h
        draw.text((x, y), word, fill=colour, font=f)
        x += w
    return y + line_h


def render_alignment(
    result: ImageAlignment,
    crop: np.ndarray,
    generator,
    description: str,
    out_path: str | Path,
    max_tiles: int = 9,
) -> Path:
    """Writes the PNG of one image's alignment.

    Args:
        result: The image's ImageAlignment (caption, attention, pairs).
        crop: uint8 [S, S, 3], the KPG crop at the generator's crop size.
        generator: The AlignmentGenerator that made the pairs.
        description: The product text.
        out_path: The PNG file (written atomically).
        max_tiles: Most aligned words drawn.

    Returns:
        The path written.
    """
    s = generator.crop_size
    big, tile, gap, margin = 360, 232, 14, 22
    pairs_by_word: dict[str, list] = {}
    for a in result.pairs:
        pairs_by_word.setdefault(a.word.lower(), []).append(a)
    # Words in both texts (alignable, with tokens in the record).
    valid = set(result.entry.word_index[result.entry.word_index >= 0].tolist())
    raw = {w.lower() for i, w in enumerate(result.raw_words) if i in valid}
    matched = [
        (t, w.lower())
        for t, w in enumerate(result.caption)
        if w.lower() in raw and is_alignable(w, generator.skip_stop_words)
    ]
    # One tile per matched word (first occurrence), the aligned ones first.
    tiles, seen = [], set()
    for t, w in sorted(matched, key=lambda tw: (tw[1] not in pairs_by_word, tw[0])):
        if w not in seen:
            seen.add(w)
            tiles.append((t, w))
    tiles = tiles[:max_tiles]
    colours = {
        w: WORD_COLOURS[i % len(WORD_COLOURS)]
        for i, w in enumerate(w for _, w in tiles if w in pairs_by_word)
    }
    for _, w in matched:  # in both texts but no patch: bold, uncoloured
        colours.setdefault(w, INK)
    cols = 3
    rows = max(1, -(-len(tiles) // cols))
    width = margin * 2 + big + gap * 2 + cols * tile + (cols - 1) * gap
    text_w = width - 2 * margin
    label_w = 190
    title_f, head_f = _font(22, bold=True), _font(15, bold=True)
    body_f, body_b, small_f = _font(15), _font(15, bold=True), _font(13)

    # Header height depends on wrapped text; measure with a scratch canvas.
    scratch = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    y = margin + 34
    y = _caption_line(
        scratch,
        (margin + label_w, y),
        result.caption or ["(empty)"],
        colours,
        text_w - label_w,
        body_f,
        body_b,
    )
    y = _caption_line(
        scratch,
        (margin + label_w, y + 4),
        description.split(),
        colours,
        text_w - label_w,
        body_f,
        body_b,
    )
    header = y + 10
    tile_block = rows * (tile + 52) + 10
    height = header + max(big + 70, tile_block) + margin
    sheet = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(sheet)

    n_pairs = len(result.pairs)
    draw.text(
        (margin, margin),
        f"image {result.entry.image_id} — {n_pairs} token-patch pair"
        f"{'s' if n_pairs != 1 else ''} (AAG, levels "
        f"{', '.join(str(n) for n in generator.levels)})",
        fill=INK,
        font=title_f,
    )
    y = margin + 34
    draw.text((margin, y), "generated caption", fill=MUTED, font=head_f)
    y = _caption_line(
        draw,
        (margin + label_w, y),
        result.caption or ["(empty)"],
        colours,
        text_w - label_w,
        body_f,
        body_b,
    )
    draw.text((margin, y + 4), "description", fill=MUTED, font=head_f)
    _caption_line(
        draw,
        (margin + label_w, y + 4),
        description.split(),
        colours,
        text_w - label_w,
        body_f,
        body_b,
    )
    draw.line(
        [(margin, header - 4), (width - margin, header - 4)], fill=(222, 226, 230)
    )

    # Left: the crop with its kaleido grid and a legend.
    top = header + 8
    sheet.paste(_grid_panel(crop, big, generator.levels), (margin, top))
    ly = top + big + 10
    x = margin
    for n in generator.levels:
        colour = LEVEL_COLOURS.get(n, INK)
        draw.rectangle([x, ly + 3, x + 14, ly + 17], fill=colour)
        label = f"level {n} ({n}x{n})"
        draw.text((x + 20, ly + 1), label, fill=INK, font=small_f)
        x += 28 + int(draw.textlength(label, font=small_f)) + 8
    legend = [
        "Caption: coloured = aligned word; bold black = in both texts but no patch.",
        "Tiles: each matched word's attention heat-map; white line = its region "
        f"(>= {generator.region_threshold:g} x max"
        + (", on the product only" if result.foreground is not None else "")
        + f"); boxes = its patches (>= {generator.overlap_threshold:.0%} of their "
        "area in the region), coloured by level.",
    ]
    lines = [line for para in legend for line in textwrap.wrap(para, 54)]
    draw.multiline_text(
        (margin, ly + 26), "\n".join(lines), fill=MUTED, font=small_f, spacing=3
    )

    # Right: one tile per aligned word.
    x0 = margin + big + gap * 2
    if not tiles:
        draw.text(
            (x0, top + 8),
            "no generated word is in the description",
            fill=MUTED,
            font=body_f,
        )
    boxes = {
        n: cell_boxes(n, s) for n in generator.levels
    }  # pixel boxes of the crop per level
    for k, (t, word) in enumerate(tiles):
        r, c = divmod(k, cols)
        tx, ty = x0 + c * (tile + gap), top + r * (tile + 52)
        alpha = result.attention[t]
        up, region = generator.region(alpha, result.foreground)
        img = heat_overlay(crop, up)
        img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_CUBIC)
        scale = tile / s
        _outline_region(img, region, scale)
        panel = Image.fromarray(img)
        pd = ImageDraw.Draw(panel)
        word_pairs = pairs_by_word.get(word, [])
        chosen = {a.patch_index for a in word_pairs}
        levels_seen: dict[int, int] = {}
        for n in sorted(generator.levels, reverse=True):
            sl = generator.layout.level_slice(n)
            for cell, (bx1, by1, bx2, by2) in enumerate(boxes[n]):
                if sl.start + cell in chosen:
                    levels_seen[n] = levels_seen.get(n, 0) + 1
                    inset = {3: 2, 4: 4}.get(n, 6)
                    pd.rectangle(
                        [
                            bx1 * scale + inset,
                            by1 * scale + inset,
                            bx2 * scale - inset - 1,
                            by2 * scale - inset - 1,
                        ],
                        outline=LEVEL_COLOURS.get(n, INK),
                        width=3 if n == 3 else 2,
                    )
        sheet.paste(panel, (tx, ty + 26))
        draw.rectangle(
            [tx - 1, ty + 25, tx + tile, ty + 26 + tile], outline=colours[word], width=2
        )
        raw_indices = sorted(
            i
            for i, w in enumerate(result.raw_words)
            if i in valid and w.lower() == word
        )
        draw.text((tx, ty + 2), f"“{word}”", fill=colours[word], font=head_f)
        note = "word " + ", ".join(f"#{i}" for i in raw_indices[:3])
        draw.text(
            (tx + 10 + draw.textlength(f"“{word}”", font=head_f), ty + 4),
            note,
            fill=MUTED,
            font=small_f,
        )
        if word_pairs:
            per_level = ", ".join(
                f"L{n}: {levels_seen[n]}" for n in sorted(levels_seen)
            )
            best = max(a.score for a in word_pairs)
            footer = f"{per_level}; score {best:.2f}"  # fits under one tile
        else:
            footer = f"no patch >= {generator.overlap_threshold:.0%} in region"
        draw.text((tx, ty + 30 + tile), footer, fill=INK, font=small_f)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path


def show_alignment(
    data_dir: str | Path,
    model_dir: str | Path,
    image_id: str,
    out_path: str | Path,
    config: AlignmentConfig,
    checkpoint: str | Path | None = None,
    source_h5: str | Path | None = None,
) -> Path:
    """Captions one image of a prepared folder again and draws its alignment.

    Args:
        data_dir: The prepared folder.
        model_dir: The captioner folder.
        image_id: ``'<product id>_<pose index>'``.
        out_path: The PNG to write.
        config: The alignment config (``decode`` and ``pairs``).
        checkpoint: A checkpoint prefix; default: the latest.
        source_h5: The source ``.h5`` (default: the manifest's).

    Returns:
        The path written.

    Raises:
        DataError: No record has ``image_id``.
    """
    images = PreparedImages(data_dir, source_h5)
    entries = images.entries()
    match = [e for e in entries if e.image_id == image_id]
    if not match:
        some = ", ".join(e.image_id for e in entries[:5])
        raise DataError(
            f"{data_dir} has no image {image_id!r} (ids look like: {some}); "
            "`kaleido-tf inspect data` lists them"
        )
    generator = make_generator(config, images.manifest)
    captioner = load_captioner(model_dir, checkpoint)
    extractor = AlignmentExtractor(
        captioner,
        images,
        generator,
        config.decode.beam_size,
        config.decode.max_words,
        config.pairs.foreground_only,
    )
    result = extractor(match[:1])[0]
    crop = images.crop(match[0], generator.crop_size)
    text = images.text(match[0].product_id)
    images.close()
    wrapped = " ".join(textwrap.wrap(text, 2000))
    return render_alignment(result, crop, generator, wrapped, out_path)
