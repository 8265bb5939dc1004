"""Procedural product photographs with ground-truth word regions.

A product is first described as a *scene*: an ordered list of drawing operations
(filled polygons, thick strokes, seams, soft shading) in garment coordinates, each
tagged with the region names it belongs to (``sleeves``, ``pocket``, ``zip``...).
The scene depends only on the ``ProductSpec``, so every pose shows the same
garment; a pose only changes the placement (scale, shift, flip, a slight
rotation), the background and the noise.

Rasterisation happens at twice the output size and is downsampled with area
averaging, which anti-aliases every edge. A colour-label map records which named
colour each pixel is painted with, so colour words get exact regions; an
operation-index map gives the visible (occlusion-aware) region of each part.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from data_prep.synthetic import catalog
from data_prep.synthetic.catalog import (
    COLOURS,
    SUBCATEGORIES,
    UNNAMED_COLOURS,
    WORD_REGIONS,
)
from data_prep.synthetic.product_sampler import (
    ProductSpec,
    contrast_colours,
    visible_words,
)

SUPERSAMPLE = 2
_SHIFT_BITS = 3  # sub-pixel precision of cv2 polygon drawing
_FIX = float(1 << _SHIFT_BITS)

# Shading strength per colour: very light colours are shaded less so that they
# stay clearly lighter than the grey background.
_SHADE_AMP = {"white": 0.3, "cream": 0.35, "yellow": 0.75, "beige": 0.75, "pink": 0.8}

Poly = np.ndarray
# Middle of the background grey range of ``pose_params``.
_BG_NOMINAL = 208.0


# --------------------------------------------------------------------------
# Geometry helpers (garment coordinates: x right, y down, ~1 unit per item).
# --------------------------------------------------------------------------


def _p(points: Sequence[Sequence[float]]) -> Poly:
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _arc(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16
) -> Poly:
    """Points of an elliptical arc; angles in degrees, 90 points down (y down)."""
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return _p([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Poly:
    r = min(r, (x1 - x0) / 2, (y1 - y0) / 2)
    return np.concatenate(
        [
            _arc(x1 - r, y0 + r, r, r, -90, 0, 6),
            _arc(x1 - r, y1 - r, r, r, 0, 90, 6),
            _arc(x0 + r, y1 - r, r, r, 90, 180, 6),
            _arc(x0 + r, y0 + r, r, r, 180, 270, 6),
        ]
    )


def _circle(cx: float, cy: float, r: float, n: int = 20) -> Poly:
    return _arc(cx, cy, r, r, 0, 360, n + 1)[:-1]


def _mirror(poly: Poly) -> Poly:
    out = poly.copy()
    out[:, 0] = -out[:, 0]
    return out[::-1]


def _shift(poly: Poly, dx: float, dy: float) -> Poly:
    return poly + np.array([dx, dy])


def _chaikin(
    poly: Poly, iters: int = 2, closed: bool = True, keep: Sequence[int] = ()
) -> Poly:
    """Corner cutting; vertices listed in ``keep`` stay sharp."""
    pts = [tuple(p) for p in poly]
    sharp = [i in keep for i in range(len(pts))]
    for _ in range(iters):
        new, new_sharp = [], []
        n = len(pts)
        last = n if closed else n - 1
        for i in range(last):
            a, b = np.array(pts[i]), np.array(pts[(i + 1) % n])
            if sharp[i]:
                new.append(tuple(a))
                new_sharp.append(True)
            elif i == 0 and not closed:
                new.append(tuple(a))
                new_sharp.append(True)
            else:
                new.append(tuple(0.75 * a + 0.25 * b))
                new_sharp.append(False)
            if sharp[(i + 1) % n]:
                continue
            new.append(tuple(0.25 * a + 0.75 * b))
            new_sharp.append(False)
        if not closed:
            new.append(pts[-1])
            new_sharp.append(True)
        pts, sharp = new, new_sharp
    return _p(pts)


def _emblem(shape: str, cx: float, cy: float, r: float) -> Poly:
    """A small logo emblem (no text, so it reads the same when flipped)."""
    if shape == "circle":
        return _circle(cx, cy, r)
    if shape == "diamond":
        return _p([(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)])
    if shape == "star":
        a = np.radians(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.48)
        return np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], axis=1)
    if shape == "hexagon":
        a = np.radians(np.arange(6) * 60 + 30)
        return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
    if shape == "shield":
        return _p(
            [
                (cx - 0.85 * r, cy - 0.9 * r),
                (cx + 0.85 * r, cy - 0.9 * r),
                (cx + 0.85 * r, cy + 0.1 * r),
                (cx, cy + r),
                (cx - 0.85 * r, cy + 0.1 * r),
            ]
        )
    # triangle
    return _p([(cx, cy - r), (cx + r, cy + 0.75 * r), (cx - r, cy + 0.75 * r)])


_EMBLEMS = ("circle", "diamond", "star", "hexagon", "shield", "triangle")


# --------------------------------------------------------------------------
# Scene description.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class _Op:
    kind: str  # fill | stroke | seam | soft
    polys: list[Poly]
    colour: int = -1
    regions: tuple[str, ...] = ()
    shade: float = 1.0
    patterned: bool = False
    outline: float = 0.0
    width: float = 0.0
    closed: bool = True
    texture: str | None = None
    tex_angle: float = 0.0
    clip: tuple[str, ...] = ()
    dashed: bool = False
    amount: float = 0.0


class _Scene:
    """Ordered drawing operations of one product, in garment coordinates."""

    def __init__(self, spec: ProductSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.sub = SUBCATEGORIES[spec.subcategory]
        self.rng = rng
        names = list(COLOURS) + list(UNNAMED_COLOURS)
        rgbs = list(COLOURS.values()) + list(UNNAMED_COLOURS.values())
        self.ids = {n: i for i, n in enumerate(names)}
        self.palette = [np.asarray(c, np.float32) for c in rgbs]
        self.amps = [_SHADE_AMP.get(n, 1.0) for n in names]
        self.ops: list[_Op] = []
        # Longest side of the product in garment units (set by _build_scene):
        # patterns, textures and seams are sized relative to it, so they look
        # the same on small and large items.
        self.extent = 1.0
        self.zones: list[tuple[str, list[Poly]]] = []
        self.body = self.ids[spec.colour]
        self.texture = catalog.MATERIAL_TEXTURE.get(self.sub.material)
        if spec.material in ("canvas", "suede", "cotton twill"):
            self.texture = None
        self.pattern = spec.pattern
        self.pattern_colour = (
            self.ids[spec.pattern_colour] if spec.pattern_colour is not None else -1
        )
        self.pattern_period = float(rng.uniform(0.05, 0.075))
        self.pattern_duty = float(rng.uniform(0.36, 0.5))
        self.pattern_phase = float(rng.uniform(0, 1))
        self.emblem = _EMBLEMS[int(rng.integers(len(_EMBLEMS)))]

    # Colours -------------------------------------------------------------
    def tone(self, colour: int, factor: float) -> int:
        """An unnamed shade of palette entry ``colour``. Darkened shades that
        would come out close to the grey background are darkened further, so
        that every part stays separable from the background."""
        base = self.palette[colour]
        rgb = np.clip(base * factor, 0, 255)
        if factor < 1.0 and np.abs(rgb - _BG_NOMINAL).max() < 45.0:
            rgb = base * ((_BG_NOMINAL - 45.0) / max(float(base.max()), 1.0))
        self.palette.append(rgb.astype(np.float32))
        self.amps.append(self.amps[colour])
        return len(self.palette) - 1

    def detail_colour(self, key: str, default: int | None = None) -> int:
        """Colour of a detail: the named one, else ``default``, else an unnamed
        shade that contrasts with the body."""
        d = self.spec.detail(key)
        if d is not None and d.colour is not None:
            return self.ids[d.colour]
        if default is not None:
            return default
        return self.contrast_default()

    def contrast_default(self) -> int:
        avoid = (self.spec.colour,)
        if self.spec.pattern_colour:
            avoid = avoid + (self.spec.pattern_colour,)
        cands = contrast_colours(avoid)
        name = (
            cands[0] if cands else ("black" if self.spec.colour == "white" else "white")
        )
        # Unnamed variant so that the colour word regions stay exact.
        return self.tone(self.ids[name], 1.0)

    def hardware(self) -> int:
        return self.ids["gold"] if self.spec.product_id % 2 else self.ids["silver"]

    # Operations ----------------------------------------------------------
    def fill(
        self,
        polys: Poly | list[Poly],
        colour: int,
        regions: Sequence[str] = (),
        *,
        shade: float = 1.0,
        patterned: bool = False,
        outline: float = 0.35,
        texture: str | None = None,
        tex_angle: float = 0.0,
        clip: Sequence[str] = (),
    ) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else list(polys)
        if texture not in _TEXTURES:
            texture = None
        self.ops.append(
            _Op(
                "fill",
                polys,
                colour,
                tuple(regions),
                shade,
                patterned and self.pattern != "solid",
                outline,
                texture=texture,
                tex_angle=tex_angle,
                clip=tuple(clip),
            )
        )

    def stroke(
        self,
        pts: Poly,
        width: float,
        colour: int,
        regions: Sequence[str] = (),
        *,
        closed: bool = False,
        outline: float = 0.3,
        shade: float = 1.0,
    ) -> None:
        self.ops.append(
            _Op(
                "stroke",
                [pts],
                colour,
                tuple(regions),
                shade,
                False,
                outline,
                width=width,
                closed=closed,
            )
        )

    def seam(
        self,
        pts: Poly,
        strength: float = 0.22,
        *,
        width: float = 0.0045,
        closed: bool = False,
        dashed: bool = False,
    ) -> None:
        self.ops.append(
            _Op(
                "seam",
                [pts],
                outline=strength,
                width=width,
                closed=closed,
                dashed=dashed,
            )
        )

    def soft(self, polys: Poly | list[Poly], amount: float) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else list(polys)
        self.ops.append(_Op("soft", polys, amount=amount))

    def zone(self, name: str, polys: Poly | list[Poly]) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else list(polys)
        self.zones.append((name, polys))

    # Shared detail drawings ----------------------------------------------
    def logo(
        self, key: str, cx: float, cy: float, r: float, regions: Sequence[str] = ()
    ) -> None:
        colour = self.detail_colour(key)
        self.fill(
            _emblem(self.emblem, cx, cy, r), colour, ("logo", *regions), outline=0.25
        )

    def logo_patch(
        self,
        key: str,
        cx: float,
        cy: float,
        w: float,
        h: float,
        regions: Sequence[str] = (),
    ) -> None:
        colour = self.detail_colour(key)
        patch = _rounded_rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, h * 0.18)
        self.fill(patch, colour, ("logo", *regions), outline=0.35)
        inner = _rounded_rect(
            cx - w / 2 + 0.008,
            cy - h / 2 + 0.008,
            cx + w / 2 - 0.008,
            cy + h / 2 - 0.008,
            h * 0.1,
        )
        self.seam(inner, 0.18, closed=True, dashed=True, width=0.003)
        mark = (
            self.tone(self.body, 1.0)
            if colour != self.body
            else self.contrast_default()
        )
        self.fill(
            _emblem(self.emblem, cx, cy, h * 0.26),
            mark,
            ("logo", *regions),
            outline=0.0,
        )

    def zip_line(
        self,
        pts: Poly,
        regions: Sequence[str] = ("zip",),
        tape: float = 0.022,
        puller_at_start: bool = True,
    ) -> None:
        metal = self.hardware()
        tape_c = self.tone(self.body, 0.72)
        self.stroke(pts, tape, tape_c, regions, outline=0.2)
        self.stroke(pts, tape * 0.38, metal, regions, outline=0.0)
        self.seam(pts, 0.35, width=tape * 0.12, dashed=True)
        p0 = pts[0] if puller_at_start else pts[-1]
        d = pts[1] - pts[0] if puller_at_start else pts[-2] - pts[-1]
        d = d / (np.linalg.norm(d) + 1e-9)
        n = np.array([-d[1], d[0]])
        w, ln = tape * 0.55, tape * 2.2
        c = p0 + d * tape * 0.3
        puller = _p(
            [c - n * w * 0.6, c + n * w * 0.6, c + d * ln + n * w, c + d * ln - n * w]
        )
        self.fill(puller, metal, regions, outline=0.4)

    def buttons(
        self,
        centres: Sequence[tuple[float, float]],
        r: float,
        regions: Sequence[str] = ("buttons",),
    ) -> None:
        lum = catalog.luminance(COLOURS[self.spec.colour])
        base = self.ids["cream"] if lum < 120 else self.ids["charcoal"]
        colour = self.tone(base, 1.0)
        for cx, cy in centres:
            self.fill(_circle(cx, cy, r, 14), colour, regions, outline=0.45)
            self.seam(_circle(cx, cy, r * 0.45, 8), 0.3, closed=True, width=0.003)

    def belt(
        self, x0: float, x1: float, yc: float, h: float, clip: Sequence[str] = ()
    ) -> None:
        d = self.spec.detail("belt_waist")
        if d is not None and d.colour is not None:
            colour = self.ids[d.colour]
        else:
            colour = self.tone(self.body, 0.62)
        self.fill(
            _rect(x0, yc - h / 2, x1, yc + h / 2),
            colour,
            ("belt",),
            clip=clip,
            outline=0.4,
        )
        metal = self.hardware()
        bw = h * 1.25
        buckle = _rounded_rect(-bw / 2, yc - h * 0.72, bw / 2, yc + h * 0.72, h * 0.12)
        self.stroke(
            np.vstack([buckle, buckle[:1]]), h * 0.2, metal, ("belt",), outline=0.3
        )
        self.stroke(
            _p([(-bw * 0.05, yc), (bw * 0.5, yc)]),
            h * 0.12,
            metal,
            ("belt",),
            outline=0.2,
        )


# --------------------------------------------------------------------------
# Builders, one per renderer family.
# --------------------------------------------------------------------------


def _jit(rng: np.random.Generator, value: float, rel: float = 0.03) -> float:
    return float(value * (1.0 + rng.uniform(-rel, rel)))


def _sleeve_geometry(
    s: Poly, a: Poly, angle_deg: float, length: float, end_half: float
) -> tuple[Poly, Poly, Poly, np.ndarray, np.ndarray]:
    """Sleeve quad from shoulder point ``s`` and armpit ``a`` (right side)."""
    th = math.radians(angle_deg)
    d = np.array([math.sin(th), math.cos(th)])
    n = np.array([math.cos(th), -math.sin(th)])
    m = (s + a) / 2
    c = m + d * length
    out_end, in_end = c + n * end_half, c - n * end_half
    quad = _p([s, out_end, in_end, a])
    return quad, out_end, in_end, d, n


def _build_top(sc: _Scene, garment: str) -> None:
    """Upper garments and dresses (``garment`` is ``top`` or ``dress``)."""
    spec, sub, rng = sc.spec, sc.sub, sc.rng
    shp = sub.shape
    dress = garment == "dress"
    length = _jit(rng, shp.get("length", 0.70), 0.02)
    bw = _jit(rng, shp.get("body_w", 0.20), 0.03)
    hw = shp.get("hem_w", bw)
    neckline = spec.neckline
    nw = 0.095 if neckline == "scoop" else _jit(rng, 0.072, 0.04)
    sw = bw + 0.016
    sd = 0.05
    ay = 0.25 if not dress else 0.24
    wy = shp.get("waist_y", 0.36 if dress else 0.45)
    ww = bw - (0.045 if dress else 0.012)
    tex = sc.texture if sc.texture in ("knit", "denim") else None
    body = sc.body
    sleeves = spec.sleeves or "long"
    sleeveless = sleeves == "none"
    if sleeveless:
        sw = nw + 0.05
        sd = 0.015

    # Torso outline (left side downwards, then right side upwards).
    right = [(nw, 0.0), (sw, sd)]
    if sleeveless:
        right += [(sw + 0.03, sd + 0.11), (bw, ay)]
    else:
        right += [(bw, ay)]
    if dress:
        right += [(ww, wy), (ww + 0.03, wy + 0.12), (hw, length)]
    else:
        right += [(ww, wy), (hw, length)]
    curved = bool(shp.get("curved_hem", False))
    hem_side = length - (0.05 if curved else 0.0)
    right[-1] = (right[-1][0], hem_side)
    right_pts = _p(right)  # from the right neck point down to the hem corner
    left_down = _mirror(right_pts)[::-1]  # from (-nw, 0) down to the left hem corner
    hem = _arc(0, hem_side, hw, 0.06 if curved else 0.012, 180, 0, 11)[1:-1]
    back = _arc(0, 0.0, nw, 0.014, 0, -180, 9)[1:-1]
    torso = np.vstack([left_down, hem, right_pts[::-1], back])
    n_ld = len(left_down)
    keep = [0, n_ld - 1, n_ld + len(hem), len(torso) - len(back) - 1]
    torso = _chaikin(torso, 2, keep=keep)

    # Sleeves (behind the torso).
    sleeve_info = []
    if not sleeveless:
        if sleeves == "long":
            angle = 22.0 if garment == "top" else 18.0
            slen = _jit(rng, shp.get("sleeve_len", 0.55), 0.02)
            end_half = 0.05 if spec.category != "JACKETS & COATS" else 0.058
        else:
            angle, slen, end_half = 56.0, _jit(rng, 0.15, 0.05), 0.075
        s_pt = np.array([sw - 0.012, sd - 0.004])
        a_pt = np.array([bw - 0.03, ay + 0.01])
        for side in (1, -1):
            quad, out_end, in_end, d, n = _sleeve_geometry(
                s_pt, a_pt, angle, slen, end_half
            )
            if side < 0:
                quad = _mirror(quad)[::-1]
                out_end = out_end * [-1, 1]
                in_end = in_end * [-1, 1]
                d = d * [-1, 1]
            sm = _chaikin(quad, 1, keep=[1, 2])
            tang = math.atan2(d[0], d[1])
            sc.fill(
                sm,
                body,
                ("sleeves", "fabric"),
                shade=0.97,
                patterned=True,
                texture=tex,
                tex_angle=tang,
            )
            sleeve_info.append((side, quad, out_end, in_end, d))
            # Inner elbow fold.
            sc.soft(
                _p(
                    [quad[3], quad[3] + d * 0.08 + [0.01 * side, 0], quad[3] + d * 0.08]
                ),
                -0.10,
            )

    # Torso.
    sc.fill(torso, body, ("fabric", "torso"), patterned=True, texture=tex)
    sc.zone("chest", _rect(-bw + 0.02, 0.10, bw - 0.02, ay + 0.10))
    sc.zone("waist", _rect(-bw - 0.05, wy - 0.07, bw + 0.05, wy + 0.14))
    # Side shading and armpit creases.
    for side in (1, -1):
        sc.soft(
            _p(
                [
                    (side * (bw - 0.05), ay),
                    (side * bw, ay),
                    (side * hw, length),
                    (side * (hw - 0.05), length),
                ]
            ),
            -0.07,
        )
        sc.soft(
            _p(
                [
                    (side * (bw - 0.03), ay + 0.02),
                    (side * (bw - 0.11), ay + 0.10),
                    (side * (bw - 0.10), ay + 0.12),
                    (side * (bw - 0.02), ay + 0.05),
                ]
            ),
            -0.08,
        )
    sc.soft(
        _p([(-0.05, 0.1), (0.04, 0.1), (0.02, length * 0.9), (-0.07, length * 0.9)]),
        0.05,
    )

    if dress:
        # Skirt folds.
        for i, fx in enumerate(np.linspace(-0.6, 0.6, 4)):
            x_top = fx * ww
            x_bot = fx * hw * 1.05
            sc.soft(
                _p(
                    [
                        (x_top, wy + 0.05),
                        (x_top + 0.01, wy + 0.05),
                        (x_bot + 0.03, length),
                        (x_bot - 0.02, length),
                    ]
                ),
                -0.09 if i % 2 else 0.06,
            )
        sc.seam(_p([(-ww, wy), (ww, wy)]), 0.2)

    # Neckline.
    contrast = spec.detail("contrast_collar")
    collar_c = (
        sc.ids[contrast.colour] if contrast is not None and contrast.colour else body
    )
    rib_neck = sub.material in ("knit", "jersey", "pique")
    neck_regions = ("collar", "ribbed") if rib_neck else ("collar",)
    neck_tex = "rib" if rib_neck else None
    v_depth = shp.get("v_depth", 0.20)
    if neckline in ("crew", "scoop", "v", "rib"):
        if neckline == "v":
            front = _p([(nw, 0.0), (0.0, v_depth), (-nw, 0.0)])
            b = 0.022
            outer = _p([(-nw - b, 0.0), (0.0, v_depth + b * 1.5), (nw + b, 0.0)])
        else:
            nd = {"crew": 0.075, "scoop": 0.13, "rib": 0.06}[neckline]
            b = {"crew": 0.024, "scoop": 0.016, "rib": 0.036}[neckline]
            front = _arc(0, 0.0, nw, nd, 0, 180, 15)
            outer = _arc(0, 0.0, nw + b, nd + b, 180, 0, 15)
        inner_back = np.vstack([front, _arc(0, 0.0, nw, 0.014, 180, 360, 9)[1:-1]])
        sc.fill(inner_back, sc.tone(body, 0.62), (), outline=0.3)
        back_band = np.vstack(
            [_arc(0, 0.0, nw, 0.014, 180, 360, 9), _arc(0, 0.012, nw, 0.02, 0, -180, 9)]
        )
        sc.fill(
            back_band,
            collar_c,
            neck_regions,
            shade=0.86,
            texture=neck_tex,
            outline=0.25,
        )
        band = np.vstack([outer, front])
        sc.fill(band, collar_c, neck_regions, texture=neck_tex, tex_angle=0.0)
    elif neckline == "turtle":
        tw = nw + 0.018
        tube = np.vstack(
            [
                _arc(0, -0.115, tw, 0.018, 180, 360, 9),
                _p([(tw + 0.005, 0.03)]),
                _arc(0, 0.03, tw + 0.005, 0.02, 0, 180, 9),
                _p([(-tw - 0.005, 0.03)]),
            ]
        )
        sc.fill(tube, collar_c, neck_regions, texture=neck_tex)
        sc.fill(
            _arc(0, -0.115, tw - 0.01, 0.014, 0, 360, 20),
            sc.tone(collar_c, 0.55),
            neck_regions,
            outline=0.2,
        )
        sc.seam(_arc(0, -0.04, tw + 0.002, 0.012, 180, 0, 11), 0.3)
        sc.soft(_rect(-tw, -0.04, tw, -0.01), -0.08)
    elif neckline in ("shirt", "polo"):
        polo = neckline == "polo"
        stand = _p(
            [
                (-nw - 0.012, -0.03),
                (nw + 0.012, -0.03),
                (nw + 0.006, 0.02),
                (0.0, 0.05),
                (-nw - 0.006, 0.02),
            ]
        )
        sc.fill(_chaikin(stand, 1), sc.tone(collar_c, 0.72), neck_regions)
        tip_y = 0.085 if polo else 0.105
        leaf = _p(
            [
                (-nw - 0.016, -0.028),
                (-0.004, 0.045),
                (-0.028 if not polo else -0.02, tip_y),
                (-nw - 0.045, 0.05),
            ]
        )
        leaf = _chaikin(leaf, 1, keep=[1, 2])
        for lf in (leaf, _mirror(leaf)):
            sc.fill(
                lf,
                collar_c,
                neck_regions,
                patterned=not polo and contrast is None,
                texture=neck_tex,
            )
            sc.soft(_shift(lf, 0.0, 0.012), -0.10)
    elif neckline == "lapel":
        # Lining visible in the V opening, then the lapels.
        vd = v_depth
        opening = np.vstack(
            [
                _p([(nw, 0.0), (0.0, vd), (-nw, 0.0)]),
                _arc(0, 0.0, nw, 0.014, 180, 360, 9)[1:-1],
            ]
        )
        sc.fill(opening, sc.tone(body, 0.45), (), outline=0.2)
        sc.fill(
            np.vstack(
                [
                    _arc(0, 0.0, nw + 0.01, 0.02, 180, 360, 9),
                    _arc(0, 0.018, nw, 0.02, 0, -180, 9),
                ]
            ),
            body,
            ("collar",),
            shade=0.78,
        )
        lapel = _p(
            [
                (-nw, -0.01),
                (-nw - 0.04, 0.065),
                (-nw - 0.012, 0.095),
                (-nw - 0.085, 0.13),
                (-0.004, vd + 0.01),
                (-0.004, vd - 0.02),
            ]
        )
        lapel = _chaikin(lapel, 1, keep=[1, 2, 3, 4])
        for lp in (lapel, _mirror(lapel)):
            sc.fill(lp, body, ("lapels", "collar"), patterned=True, shade=1.03)
            sc.seam(lp[: len(lp) // 2], 0.15, dashed=True, width=0.003)
        sc.soft(
            _p(
                [
                    (-nw - 0.085, 0.14),
                    (-0.004, vd + 0.03),
                    (-0.004, vd + 0.05),
                    (-nw - 0.09, 0.16),
                ]
            ),
            -0.12,
        )
        sc.soft(
            _mirror(
                _p(
                    [
                        (-nw - 0.085, 0.14),
                        (-0.004, vd + 0.03),
                        (-0.004, vd + 0.05),
                        (-nw - 0.09, 0.16),
                    ]
                )
            ),
            -0.12,
        )

    # Cuffs.
    for side, quad, out_end, in_end, d in sleeve_info:
        band_len = 0.06 if sleeves == "long" else 0.035
        if spec.has("ribbed_cuffs") or spec.has("rib_trims"):
            regions = ("cuffs", "ribbed", "sleeves")
            tex_c = "rib"
        elif sleeves == "long" and sub.material == "poplin":
            regions = ("sleeves",)
            tex_c = None
            band_len = 0.07
        else:
            continue
        s_pt, a_pt = (quad[0], quad[3])
        f_out = band_len / np.linalg.norm(out_end - s_pt)
        f_in = band_len / np.linalg.norm(in_end - a_pt)
        cuff = _p(
            [
                out_end + (s_pt - out_end) * f_out,
                out_end,
                in_end,
                in_end + (a_pt - in_end) * f_in,
            ]
        )
        tang = math.atan2(d[0], d[1])
        sc.fill(cuff, body, regions, texture=tex_c, tex_angle=tang, shade=0.96)
        if tex_c is None:
            c = (cuff[0] + cuff[1] + cuff[2] + cuff[3]) / 4
            sc.buttons([(c[0], c[1])], 0.009, regions=("sleeves",))

    # Hem band.
    hem_band = 0.0
    if spec.has("ribbed_hem") or spec.has("rib_trims"):
        hem_band = 0.065
        sc.fill(
            _rect(-hw - 0.05, length - hem_band, hw + 0.05, length + 0.05),
            body,
            ("hem", "ribbed", "torso"),
            texture="rib",
            clip=("torso",),
            shade=0.96,
        )
    elif shp.get("hem_band"):
        hem_band = 0.05
        sc.fill(
            _rect(-hw - 0.05, length - hem_band, hw + 0.05, length + 0.05),
            body,
            ("torso",),
            texture=tex,
            clip=("torso",),
        )
        sc.seam(
            _p([(-hw, length - hem_band + 0.01), (hw, length - hem_band + 0.01)]),
            0.3,
            dashed=True,
        )
    elif not dress:
        sc.seam(_p([(-hw, length - 0.03), (hw, length - 0.03)]), 0.15, dashed=True)

    if sub.material == "denim":
        gold = sc.ids["gold"]
        sc.stroke(
            _p([(-bw + 0.01, 0.15), (-0.03, 0.17), (0.03, 0.17), (bw - 0.01, 0.15)]),
            0.005,
            gold,
            outline=0.0,
        )
        for side in (1, -1):
            sc.stroke(
                _p([(side * 0.10, 0.17), (side * 0.09, length - hem_band)]),
                0.005,
                gold,
                outline=0.0,
            )

    # Front closures.
    front_top = {
        "v": v_depth,
        "lapel": v_depth,
        "crew": 0.1,
        "rib": 0.09,
        "shirt": 0.045,
    }.get(neckline, 0.1)
    bottom = length - (hem_band if hem_band else 0.02)
    if dress:
        bottom = wy + (length - wy) * 0.55
    if spec.has("zip_front"):
        top = front_top + (0.035 if neckline == "rib" else 0.0)
        sc.zip_line(
            _p(
                [(0.0, top - 0.03 if neckline == "rib" else top), (0.0, length + 0.003)]
            ),
            ("zip", "torso"),
        )
    if (
        spec.has("buttons_front")
        or spec.has("double_breasted")
        or spec.has("two_button")
    ):
        start = front_top + 0.045
        if neckline in ("shirt",) or (sub.name == "CARDIGANS"):
            sc.fill(
                _rect(-0.02, front_top, 0.02, bottom),
                body,
                ("placket", "torso"),
                patterned=sub.name != "CARDIGANS",
                texture="rib" if sub.name == "CARDIGANS" else tex,
                outline=0.3,
            )
        elif neckline == "lapel":
            sc.seam(_p([(0.0, v_depth), (0.0, length)]), 0.4)
        else:
            sc.seam(_p([(0.02, front_top), (0.02, bottom)]), 0.3)
        r = 0.013 if neckline != "lapel" else 0.018
        if spec.has("two_button"):
            ys = [v_depth + 0.05, v_depth + 0.15]
        else:
            step = 0.085 if neckline != "lapel" else 0.13
            ys = list(np.arange(start, bottom - 0.03, step))
        xs = [-0.07, 0.07] if spec.has("double_breasted") else [0.0]
        sc.buttons(
            [(x, float(y)) for y in ys for x in xs], r, regions=("buttons", "torso")
        )
    if spec.has("placket"):
        sc.fill(
            _rect(-0.022, 0.035, 0.022, 0.19),
            body,
            ("placket", "torso"),
            outline=0.3,
            patterned=True,
        )
        sc.buttons(
            [(0.0, 0.075), (0.0, 0.135)], 0.011, regions=("buttons", "placket", "torso")
        )

    # Pockets and logos.
    if spec.has("pocket_chest"):
        x0, x1, y0 = -bw + 0.06, -bw + 0.15, ay - 0.07
        if sub.material == "poplin":
            pocket = _p(
                [
                    (x0, y0),
                    (x1, y0),
                    (x1, y0 + 0.1),
                    ((x0 + x1) / 2, y0 + 0.12),
                    (x0, y0 + 0.1),
                ]
            )
        else:
            pocket = _rounded_rect(x0, y0, x1, y0 + 0.105, 0.01)
        sc.fill(
            pocket, body, ("pocket", "torso"), patterned=True, texture=tex, outline=0.4
        )
        sc.seam(_p([(x0, y0 + 0.018), (x1, y0 + 0.018)]), 0.25, dashed=True)
        sc.soft(_shift(_rect(x0, y0 + 0.1, x1, y0 + 0.115), 0.0, 0.0), -0.12)
    if spec.has("welt_pocket_chest"):
        x0 = -bw + 0.05
        welt = _p([(x0, 0.25), (x0 + 0.1, 0.235), (x0 + 0.1, 0.26), (x0, 0.275)])
        sc.fill(
            welt, body, ("pocket", "torso"), shade=0.9, outline=0.45, patterned=True
        )
    if spec.has("flap_pockets_chest"):
        for side in (1, -1):
            cx = side * (bw * 0.5)
            sc.fill(
                _rect(cx - 0.055, 0.19, cx + 0.055, 0.30),
                body,
                ("pocket", "torso"),
                texture=tex,
                outline=0.45,
            )
            flap = _p(
                [
                    (cx - 0.06, 0.175),
                    (cx + 0.06, 0.175),
                    (cx + 0.06, 0.215),
                    (cx, 0.235),
                    (cx - 0.06, 0.215),
                ]
            )
            sc.fill(
                flap,
                body,
                ("pocket", "flap", "torso"),
                texture=tex,
                outline=0.5,
                shade=1.04,
            )
            sc.soft(
                _p(
                    [
                        (cx - 0.055, 0.22),
                        (cx + 0.055, 0.22),
                        (cx + 0.055, 0.24),
                        (cx - 0.055, 0.24),
                    ]
                ),
                -0.12,
            )
            sc.buttons(
                [(cx, 0.212)], 0.011, regions=("buttons", "pocket", "flap", "torso")
            )
    if spec.has("logo_chest"):
        sc.logo("logo_chest", bw - 0.1, ay - 0.03, 0.03, regions=("torso",))
    if (
        spec.has("pockets_waist")
        or spec.has("flap_pockets_waist")
        or spec.has("welt_pockets_waist")
    ):
        py = wy + 0.04 if spec.category == "JACKETS & COATS" else wy + 0.02
        if sub.name == "BOMBERS":
            py = length - hem_band - 0.2
        for side in (1, -1):
            cx = side * (bw - 0.085)
            if spec.has("pockets_waist"):
                sc.fill(
                    _rounded_rect(cx - 0.06, py, cx + 0.06, py + 0.12, 0.012),
                    body,
                    ("pocket", "torso"),
                    patterned=True,
                    texture=tex,
                    outline=0.4,
                )
                sc.seam(
                    _p([(cx - 0.06, py + 0.02), (cx + 0.06, py + 0.02)]),
                    0.25,
                    dashed=True,
                )
            elif spec.has("flap_pockets_waist"):
                sc.seam(_p([(cx - 0.065, py + 0.005), (cx + 0.065, py + 0.005)]), 0.45)
                sc.fill(
                    _rect(cx - 0.07, py, cx + 0.07, py + 0.05),
                    body,
                    ("pocket", "flap", "torso"),
                    patterned=True,
                    outline=0.45,
                    shade=1.03,
                )
                sc.soft(_rect(cx - 0.07, py + 0.05, cx + 0.07, py + 0.065), -0.12)
            else:
                welt = _p(
                    [
                        (cx - side * 0.02, py),
                        (cx + side * 0.005, py - 0.01),
                        (cx + side * 0.045, py + 0.1),
                        (cx + side * 0.02, py + 0.11),
                    ]
                )
                sc.fill(
                    welt,
                    body,
                    ("pocket", "torso"),
                    shade=0.88,
                    texture=tex,
                    outline=0.45,
                )
    if spec.has("sleeve_pocket") and sleeve_info:
        side, quad, out_end, in_end, d = sleeve_info[-1]
        m = (quad[0] + quad[3]) / 2 + d * 0.17
        n = np.array([d[1], -d[0]])
        hw_p, hl = 0.045, 0.055
        pk = _p(
            [
                m - n * hw_p - d * hl,
                m + n * hw_p - d * hl,
                m + n * hw_p + d * hl,
                m - n * hw_p + d * hl,
            ]
        )
        sc.fill(pk, body, ("pocket", "sleeves"), outline=0.45, shade=1.02)
        sc.zip_line(
            _p(
                [m - n * hw_p * 0.8 - d * hl * 0.55, m + n * hw_p * 0.8 - d * hl * 0.55]
            ),
            ("zip", "pocket", "sleeves"),
            tape=0.016,
        )
    if spec.has("belt_waist"):
        sc.belt(-hw - 0.1, hw + 0.1, wy, 0.045, clip=("torso",))


def _build_pants(sc: _Scene) -> None:
    spec, sub, rng = sc.spec, sc.sub, sc.rng
    leg = sub.shape.get("leg", "straight")
    jeans = bool(sub.shape.get("jeans"))
    params = {
        "straight": (0.085, 0.135, 1.02),
        "tapered": (0.058, 0.12, 1.0),
        "wide": (0.13, 0.165, 1.02),
        "skinny": (0.052, 0.108, 1.0),
        "shorts": (0.125, 0.14, 0.45),
    }[leg]
    lw, xc, length = params[0], params[1], _jit(rng, params[2], 0.02)
    ww = _jit(rng, 0.205, 0.03)
    hip = ww + 0.03
    crotch = 0.34 if leg != "shorts" else 0.31
    elastic = spec.has("elastic_waistband")
    wbh = 0.075 if elastic else 0.055
    body = sc.body
    tex = sc.texture if sc.texture in ("knit", "denim") else None
    gold = sc.ids["gold"]

    outline = _p(
        [
            (-ww, wbh - 0.01),
            (ww, wbh - 0.01),
            (hip, 0.2),
            (xc + lw, length),
            (xc - lw, length),
            (0.0, crotch),
            (-(xc - lw), length),
            (-(xc + lw), length),
            (-hip, 0.2),
        ]
    )
    outline = _chaikin(outline, 2, keep=[0, 1, 3, 4, 5, 6, 7])
    sc.fill(outline, body, ("fabric", "legs_all"), patterned=True, texture=tex)
    sc.zone("legs", _rect(-1, crotch - 0.02, 1, length + 0.01))
    sc.zone("waist", _rect(-1, -0.01, 1, wbh + 0.05))
    for side in (1, -1):
        sc.soft(
            _p(
                [
                    (side * (xc - lw + 0.01), length),
                    (side * 0.02, crotch + 0.02),
                    (side * 0.05, crotch + 0.04),
                    (side * (xc - lw + 0.04), length),
                ]
            ),
            -0.10,
        )
        sc.soft(
            _p(
                [
                    (side * (hip - 0.02), 0.2),
                    (side * hip, 0.2),
                    (side * (xc + lw), length),
                    (side * (xc + lw - 0.03), length),
                ]
            ),
            -0.07,
        )
        if leg != "shorts":
            kx = side * xc
            sc.soft(
                _p(
                    [
                        (kx - 0.04, 0.55),
                        (kx + 0.04, 0.53),
                        (kx + 0.045, 0.56),
                        (kx - 0.035, 0.58),
                    ]
                ),
                -0.07,
            )
            if leg in ("straight", "wide") and not jeans and not elastic:
                sc.seam(
                    _p([(side * (xc - 0.01), 0.24), (side * xc, length - 0.01)]), 0.15
                )
    if jeans:
        for side in (1, -1):
            sc.soft(
                _p(
                    [
                        (side * 0.03, 0.27),
                        (side * 0.12, 0.24),
                        (side * 0.12, 0.27),
                        (side * 0.04, 0.29),
                    ]
                ),
                0.10,
            )

    # Waistband.
    wb_regions = ("waistband", "elastic") if elastic else ("waistband",)
    sc.fill(
        _rect(-ww - 0.003, 0.0, ww + 0.003, wbh),
        body,
        wb_regions,
        texture="elastic" if elastic else tex,
        tex_angle=0.0,
        outline=0.35,
        shade=0.98,
    )
    if not elastic:
        for x in (-0.16, -0.06, 0.06, 0.16):
            sc.fill(
                _rect(x - 0.008, -0.004, x + 0.008, wbh + 0.012),
                body,
                ("waistband",),
                outline=0.35,
                shade=0.95,
            )
        if jeans:
            sc.fill(
                _circle(0.0, wbh / 2, 0.013, 14),
                sc.hardware(),
                ("waistband",),
                outline=0.4,
            )
        else:
            sc.buttons([(0.0, wbh / 2)], 0.012, regions=("waistband",))
    if jeans:
        sc.stroke(_p([(-ww, wbh - 0.008), (ww, wbh - 0.008)]), 0.004, gold, outline=0.0)

    # Fly.
    if spec.has("zip_fly"):
        fly = _p([(0.0, wbh), (0.048, wbh), (0.048, 0.24), (0.035, 0.28), (0.0, 0.30)])
        sc.fill(
            _chaikin(fly, 1, keep=[0, 1]),
            body,
            ("zip",),
            patterned=True,
            texture=tex,
            outline=0.3,
        )
        if jeans:
            sc.stroke(
                _chaikin(
                    _p([(0.04, wbh), (0.04, 0.24), (0.028, 0.275), (0.0, 0.29)]),
                    1,
                    closed=False,
                ),
                0.004,
                gold,
                ("zip",),
                outline=0.0,
            )
        else:
            sc.seam(
                _chaikin(
                    _p([(0.04, wbh), (0.04, 0.24), (0.028, 0.275), (0.0, 0.29)]),
                    1,
                    closed=False,
                ),
                0.25,
                dashed=True,
            )
    else:
        sc.seam(_p([(0.0, wbh), (0.0, crotch - 0.03)]), 0.3)

    # Front pockets.
    if spec.has("slash_pockets") or spec.has("curved_pockets"):
        curved = spec.has("curved_pockets")
        for side in (1, -1):
            if curved:
                edge = _arc(
                    side * (ww + 0.005),
                    wbh,
                    0.085,
                    0.09,
                    180 if side > 0 else 0,
                    90,
                    10,
                )
            else:
                edge = _p([(side * (ww - 0.075), wbh), (side * (hip - 0.008), 0.19)])
            corner = _p(
                [
                    (side * (ww + 0.003), wbh),
                    (side * (hip - 0.003), 0.19 if not curved else wbh + 0.09),
                ]
            )
            poly = np.vstack([edge, corner[::-1]])
            sc.fill(
                poly,
                body,
                ("pocket",),
                shade=0.84,
                patterned=True,
                texture=tex,
                outline=0.45,
            )
            if curved:
                sc.stroke(
                    _shift(edge, -side * 0.006, 0.006),
                    0.004,
                    gold,
                    ("pocket",),
                    outline=0.0,
                )
        if curved:
            coin = _rect(ww - 0.075, wbh + 0.012, ww - 0.03, wbh + 0.055)
            sc.fill(coin, body, ("pocket",), texture=tex, outline=0.4)
            for side in (1, -1):
                sc.fill(
                    _circle(side * (ww - 0.075), wbh + 0.006, 0.007, 8),
                    gold,
                    ("pocket",),
                    outline=0.3,
                )

    # Belt, drawstring.
    if spec.has("belt_waist"):
        sc.belt(-ww - 0.01, ww + 0.01, wbh / 2, wbh * 0.62)
    if spec.has("drawstring_waist"):
        d = spec.detail("drawstring_waist")
        cord = (
            sc.ids[d.colour]
            if d and d.colour
            else sc.tone(
                sc.ids["cream"]
                if catalog.luminance(COLOURS[spec.colour]) < 150
                else sc.ids["charcoal"],
                1.0,
            )
        )
        for side in (1, -1):
            sc.fill(
                _circle(side * 0.022, wbh * 0.5, 0.009, 10),
                sc.hardware(),
                ("drawstring",),
                outline=0.3,
            )
            cord_pts = _chaikin(
                _p(
                    [
                        (side * 0.022, wbh * 0.5),
                        (side * 0.03, wbh + 0.05),
                        (side * 0.045, wbh + 0.1),
                        (side * 0.04, wbh + 0.15),
                    ]
                ),
                2,
                closed=False,
            )
            sc.stroke(cord_pts, 0.016, cord, ("drawstring",), outline=0.3)
            sc.stroke(
                _p([cord_pts[-1], cord_pts[-1] + [0, 0.022]]),
                0.018,
                sc.ids["charcoal"],
                ("drawstring",),
                outline=0.2,
            )

    # Hem treatments.
    for side in (1, -1):
        x_in, x_out = side * (xc - lw), side * (xc + lw)
        if spec.has("ribbed_cuffs"):
            cuff = _p(
                [
                    (x_in + side * 0.004, length - 0.075),
                    (x_out - side * 0.004, length - 0.075),
                    (x_out - side * 0.008, length),
                    (x_in + side * 0.008, length),
                ]
            )
            sc.fill(cuff, body, ("cuffs", "ribbed"), texture="rib", shade=0.96)
        elif spec.has("rolled_cuffs"):
            cuff = _p(
                [
                    (x_in - side * 0.006, length - 0.07),
                    (x_out + side * 0.006, length - 0.07),
                    (x_out + side * 0.006, length + 0.002),
                    (x_in - side * 0.006, length + 0.002),
                ]
            )
            sc.fill(
                cuff,
                body,
                ("cuffs",),
                shade=1.16 if jeans else 0.94,
                texture=tex,
                outline=0.4,
            )
            sc.seam(_p([(x_in, length - 0.035), (x_out, length - 0.035)]), 0.18)
        else:
            sc.seam(
                _p([(x_in, length - 0.025), (x_out, length - 0.025)]), 0.15, dashed=True
            )
    if spec.has("logo_leg"):
        sc.logo(
            "logo_leg",
            -(xc + 0.01),
            crotch + 0.07 if leg == "shorts" else crotch + 0.1,
            0.032,
        )


def _build_skirt(sc: _Scene) -> None:
    spec, sub, rng = sc.spec, sc.sub, sc.rng
    length = _jit(rng, sub.shape.get("length", 0.6), 0.02)
    hem_w = _jit(rng, sub.shape.get("hem_w", 0.32), 0.03)
    ww = _jit(rng, 0.19, 0.03)
    elastic = spec.has("elastic_waistband")
    wbh = 0.07 if elastic else 0.05
    body = sc.body
    pleated = spec.has("pleats")
    hem = _arc(0, length - 0.03, hem_w, 0.05, 0, 180, 15)
    skirt = np.vstack([_p([(-ww, wbh - 0.005), (ww, wbh - 0.005)]), hem])
    skirt = _chaikin(skirt, 1, keep=[0, 1, 2, len(skirt) - 1])
    sc.fill(
        skirt,
        body,
        ("fabric", "skirt") + (("pleats",) if pleated else ()),
        patterned=True,
    )
    sc.zone("waist", _rect(-1, -0.01, 1, wbh + 0.05))
    if pleated:
        n = 14
        xs_top = np.linspace(-ww, ww, n + 1)
        xs_bot = np.linspace(-hem_w, hem_w, n + 1)
        for i in range(n):
            yb0 = (
                length - 0.03 + 0.05 * math.sqrt(max(0.0, 1 - (xs_bot[i] / hem_w) ** 2))
            )
            yb1 = (
                length
                - 0.03
                + 0.05 * math.sqrt(max(0.0, 1 - (xs_bot[i + 1] / hem_w) ** 2))
            )
            strip = _p(
                [
                    (xs_top[i], wbh),
                    (xs_top[i + 1], wbh),
                    (xs_bot[i + 1], yb1),
                    (xs_bot[i], yb0),
                ]
            )
            sc.fill(
                strip,
                body,
                ("fabric", "skirt", "pleats"),
                shade=1.0 if i % 2 else 0.88,
                patterned=True,
                outline=0.22,
                clip=("skirt",),
            )
    else:
        for i, fx in enumerate(np.linspace(-0.7, 0.7, 5)):
            sc.soft(
                _p(
                    [
                        (fx * ww, wbh + 0.08),
                        (fx * ww + 0.01, wbh + 0.08),
                        (fx * hem_w + 0.035, length),
                        (fx * hem_w - 0.02, length),
                    ]
                ),
                -0.1 if i % 2 else 0.06,
            )
        sc.seam(
            _arc(0, length - 0.06, hem_w * 0.98, 0.05, 5, 175, 15), 0.15, dashed=True
        )
    for side in (1, -1):
        sc.soft(
            _p(
                [
                    (side * (ww - 0.02), wbh),
                    (side * ww, wbh),
                    (side * hem_w, length),
                    (side * (hem_w - 0.06), length),
                ]
            ),
            -0.08,
        )
    wb_regions = ("waistband", "elastic") if elastic else ("waistband",)
    sc.fill(
        _rect(-ww - 0.004, 0.0, ww + 0.004, wbh),
        body,
        wb_regions,
        texture="elastic" if elastic else None,
        outline=0.35,
    )
    if spec.has("buttons_front"):
        sc.seam(_p([(0.02, wbh), (0.025, length)]), 0.3)
        ys = np.arange(wbh + 0.05, length - 0.04, 0.09)
        sc.buttons([(0.0, float(y)) for y in ys], 0.013)
    if spec.has("pocket_front"):
        x0 = -ww + 0.02
        sc.fill(
            _rounded_rect(x0, wbh + 0.06, x0 + 0.11, wbh + 0.18, 0.01),
            body,
            ("pocket",),
            patterned=True,
            outline=0.4,
        )
        sc.seam(_p([(x0, wbh + 0.08), (x0 + 0.11, wbh + 0.08)]), 0.25, dashed=True)
    if spec.has("belt_waist"):
        sc.belt(-ww - 0.01, ww + 0.01, wbh / 2, wbh * 0.65)


def _build_tote(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    y0, y1 = 0.40, 0.98
    handle_c = sc.detail_colour(
        "handles",
        sc.tone(
            sc.ids["tan"] if spec.colour not in ("brown", "beige") else sc.ids["black"],
            1.0,
        ),
    )
    for dy, shade in ((0.0, 0.78), (0.05, 1.0)):
        arc = _arc(0, y0 + 0.02, 0.13 + dy * 0.3, 0.34 - dy, 180, 360, 21)
        sc.stroke(arc, 0.036, handle_c, ("handles",), shade=shade, outline=0.35)
    shape = _p(
        [
            (-0.28, y0),
            (0.28, y0),
            (0.325, y1 - 0.03),
            (0.30, y1),
            (-0.30, y1),
            (-0.325, y1 - 0.03),
        ]
    )
    sc.fill(
        _chaikin(shape, 1, keep=[0, 1]),
        body,
        ("fabric",),
        patterned=True,
        texture=sc.texture,
    )
    sc.seam(_p([(-0.28, y0 + 0.045), (0.28, y0 + 0.045)]), 0.25, dashed=True)
    for side in (1, -1):
        sc.soft(
            _p(
                [
                    (side * 0.24, y0),
                    (side * 0.28, y0),
                    (side * 0.325, y1),
                    (side * 0.27, y1),
                ]
            ),
            -0.10,
        )
        sc.fill(
            _rect(side * 0.13 - 0.03, y0 + 0.005, side * 0.13 + 0.03, y0 + 0.085),
            handle_c,
            ("handles",),
            outline=0.4,
        )
        sc.fill(
            _rect(side * 0.145 - 0.03, y0 + 0.005, side * 0.145 + 0.03, y0 + 0.085),
            handle_c,
            ("handles",),
            outline=0.4,
        )
    sc.soft(_rect(-0.2, y0 + 0.1, 0.2, y1 - 0.1), 0.05)
    if spec.has("logo_patch_front"):
        sc.logo_patch("logo_patch_front", 0.0, y0 + 0.17, 0.17, 0.075)
    if spec.has("pocket_front"):
        sc.fill(
            _rect(-0.13, y0 + 0.29, 0.13, y0 + 0.5),
            body,
            ("pocket",),
            patterned=True,
            texture=sc.texture,
            outline=0.45,
            shade=1.03,
        )
        sc.seam(_p([(-0.13, y0 + 0.315), (0.13, y0 + 0.315)]), 0.25, dashed=True)
        sc.soft(_rect(-0.13, y0 + 0.5, 0.13, y0 + 0.515), -0.12)


def _build_shoulder_bag(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    metal = sc.hardware()
    strap_c = sc.detail_colour("shoulder_strap", sc.tone(body, 0.85))
    strap = _arc(0, 0.5, 0.275, 0.47, 180, 360, 31)
    sc.stroke(strap, 0.028, strap_c, ("strap",), outline=0.4)
    sc.fill(_rect(-0.24, 0.27, -0.20, 0.31), metal, ("strap",), outline=0.35)
    x0, x1, y0, y1 = -0.31, 0.31, 0.46, 0.9
    sc.fill(
        _rounded_rect(x0, y0, x1, y1, 0.07),
        body,
        ("fabric",),
        patterned=True,
        texture=sc.texture,
    )
    for side in (1, -1):
        sc.fill(
            _circle(side * 0.275, y0 + 0.035, 0.016, 12), metal, ("strap",), outline=0.4
        )
        sc.soft(_rect(side * 0.27 - 0.04 * (side < 0), y0, side * 0.31, y1), -0.10)
    flap = np.vstack(
        [
            _p([(x0 - 0.005, y0 - 0.005), (x1 + 0.005, y0 - 0.005)]),
            _arc(0, y0 + 0.14, x1 + 0.005, 0.16, 0, 180, 17),
        ]
    )
    sc.fill(
        _chaikin(flap, 1, keep=[0, 1]),
        body,
        ("flap",),
        patterned=True,
        texture=sc.texture,
        outline=0.45,
        shade=1.04,
    )
    sc.soft(_arc(0, y0 + 0.155, x1, 0.16, 20, 160, 15), -0.12)
    sc.soft(_rect(-0.2, y0 + 0.02, 0.2, y0 + 0.08), 0.08)
    sc.fill(_circle(0.0, y0 + 0.27, 0.022, 14), metal, ("flap",), outline=0.45)
    if spec.has("logo_patch_front"):
        sc.logo_patch("logo_patch_front", 0.0, y0 + 0.17, 0.14, 0.06, regions=("flap",))


def _build_backpack(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    strap_c = sc.detail_colour("backpack_straps", sc.tone(body, 0.7))
    for side in (1, -1):
        strap = _p(
            [
                (side * 0.24, 0.34),
                (side * 0.30, 0.34),
                (side * 0.33, 0.84),
                (side * 0.31, 0.93),
                (side * 0.26, 0.93),
            ]
        )
        sc.fill(_chaikin(strap, 1), strap_c, ("strap",), outline=0.4)
        sc.seam(_p([(side * 0.285, 0.36), (side * 0.315, 0.84)]), 0.25, dashed=True)
    handle_c = sc.tone(body, 0.75)
    sc.stroke(
        _arc(0, 0.19, 0.07, 0.09, 180, 360, 15),
        0.026,
        handle_c,
        ("handles",),
        outline=0.4,
    )
    shape = np.vstack(
        [
            _arc(0, 0.34, 0.27, 0.18, 180, 360, 21),
            _p([(0.285, 0.9), (0.25, 0.96), (-0.25, 0.96), (-0.285, 0.9)]),
        ]
    )
    sc.fill(_chaikin(shape, 1), body, ("fabric",), patterned=True, texture=sc.texture)
    for side in (1, -1):
        sc.soft(
            _p(
                [
                    (side * 0.22, 0.3),
                    (side * 0.275, 0.33),
                    (side * 0.285, 0.95),
                    (side * 0.22, 0.95),
                ]
            ),
            -0.10,
        )
    sc.soft(_rect(-0.15, 0.25, 0.15, 0.5), 0.06)
    sc.zip_line(_arc(0, 0.36, 0.215, 0.15, 200, 340, 15), ("zip",), tape=0.018)
    if spec.has("zip_pocket_front"):
        pk = _rounded_rect(-0.19, 0.58, 0.19, 0.9, 0.05)
        sc.fill(
            pk,
            body,
            ("pocket",),
            patterned=True,
            texture=sc.texture,
            outline=0.45,
            shade=1.03,
        )
        sc.soft(_rect(-0.19, 0.9, 0.19, 0.92), -0.15)
        sc.zip_line(
            _p([(-0.16, 0.62), (0.16, 0.62)]),
            ("zip", "pocket"),
            tape=0.018,
            puller_at_start=False,
        )
    if spec.has("logo_patch_front"):
        sc.logo_patch("logo_patch_front", 0.0, 0.49, 0.13, 0.06)


def _build_pouch(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    x0, x1, y0, y1 = -0.36, 0.36, 0.32, 0.78
    if spec.has("wrist_strap"):
        loop = _chaikin(
            _p(
                [
                    (x0 + 0.01, 0.40),
                    (x0 - 0.14, 0.50),
                    (x0 - 0.17, 0.62),
                    (x0 - 0.1, 0.66),
                    (x0 + 0.01, 0.5),
                ]
            ),
            2,
        )
        sc.stroke(
            np.vstack([loop, loop[:1]]),
            0.02,
            sc.tone(body, 0.8),
            ("strap",),
            outline=0.4,
        )
    sc.fill(
        _rounded_rect(x0, y0, x1, y1, 0.05),
        body,
        ("fabric",),
        patterned=True,
        texture=sc.texture,
    )
    sc.soft(_rect(x0, y1 - 0.06, x1, y1), -0.1)
    sc.soft(_rect(-0.25, y0 + 0.08, 0.25, y0 + 0.16), 0.07)
    sc.zip_line(
        _p([(x1 - 0.02, y0 + 0.025), (x0 + 0.03, y0 + 0.025)]), ("zip",), tape=0.026
    )
    if spec.has("wrist_strap"):
        sc.fill(
            _rect(x0 - 0.01, 0.38, x0 + 0.03, 0.43),
            sc.hardware(),
            ("strap",),
            outline=0.4,
        )
    if spec.has("logo_patch_front"):
        sc.logo_patch("logo_patch_front", 0.0, 0.56, 0.15, 0.065)


def _build_cap(sc: _Scene) -> None:
    """Three-quarter view: domed crown, visor pointing right."""
    spec = sc.spec
    body = sc.body
    brim_c = sc.detail_colour("brim_curved", body)
    # Underside of the visor, then the crown, then the visor's top.
    under = _chaikin(
        _p(
            [
                (0.05, 0.64),
                (0.45, 0.665),
                (0.74, 0.70),
                (0.70, 0.75),
                (0.42, 0.725),
                (0.05, 0.70),
            ]
        ),
        2,
    )
    sc.fill(under, sc.tone(brim_c, 0.6), ("brim",), outline=0.3)
    crown = np.vstack(
        [
            _arc(0, 0.62, 0.34, 0.44, 180, 360, 25),
            _arc(0, 0.62, 0.34, 0.04, 0, 180, 9)[1:-1],
        ]
    )
    sc.fill(crown, body, ("fabric", "crown"), patterned=True, texture=sc.texture)
    for fx in (-0.55, -0.05, 0.45):
        pts = _chaikin(
            _p([(0.0, 0.19), (fx * 0.22 + 0.02, 0.32), (fx * 0.34 + 0.03, 0.64)]),
            2,
            closed=False,
        )
        sc.seam(pts, 0.22)
    sc.soft(_p([(-0.3, 0.6), (-0.22, 0.3), (-0.18, 0.32), (-0.24, 0.62)]), 0.07)
    sc.soft(_p([(0.2, 0.62), (0.24, 0.3), (0.32, 0.4), (0.33, 0.62)]), -0.08)
    sc.seam(_arc(0, 0.62, 0.335, 0.035, 10, 170, 13), 0.2, dashed=True)
    if spec.has("button_crown"):
        sc.fill(
            _circle(0.0, 0.19, 0.026, 14), body, ("buttons",), outline=0.45, shade=0.92
        )
    if spec.has("logo_embroidered_front"):
        sc.logo("logo_embroidered_front", 0.1, 0.44, 0.065)
    visor = _chaikin(
        _p(
            [
                (-0.12, 0.62),
                (0.06, 0.56),
                (0.34, 0.555),
                (0.60, 0.605),
                (0.76, 0.68),
                (0.72, 0.715),
                (0.46, 0.69),
                (0.18, 0.675),
                (-0.02, 0.67),
                (-0.14, 0.655),
            ]
        ),
        2,
    )
    sc.fill(visor, brim_c, ("brim",), shade=1.0)
    sc.seam(
        _chaikin(
            _p([(-0.08, 0.64), (0.1, 0.6), (0.36, 0.595), (0.62, 0.645), (0.71, 0.69)]),
            2,
            closed=False,
        ),
        0.22,
        dashed=True,
    )
    sc.soft(_p([(-0.1, 0.6), (0.3, 0.56), (0.3, 0.6), (-0.1, 0.64)]), 0.08)


def _build_beanie(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    if spec.has("pompom"):
        pc = sc.detail_colour("pompom", body)
        a = np.radians(np.linspace(0, 360, 41)[:-1])
        rr = 0.11 * (1 + 0.07 * np.sin(a * 9) + 0.04 * np.sin(a * 5 + 1))
        pom = np.stack([rr * np.cos(a), 0.12 + rr * np.sin(a)], axis=1)
        sc.fill(pom, pc, ("pompom",), outline=0.3, texture="knit")
        sc.soft(_circle(-0.03, 0.09, 0.04), 0.1)
    body_poly = np.vstack(
        [_arc(0, 0.44, 0.26, 0.3, 180, 360, 25), _p([(0.26, 0.7), (-0.26, 0.7)])]
    )
    sc.fill(body_poly, body, ("fabric", "ribbed"), patterned=True, texture="rib")
    sc.soft(_p([(-0.2, 0.3), (-0.1, 0.2), (-0.07, 0.22), (-0.16, 0.35)]), 0.08)
    sc.soft(_rect(0.18, 0.3, 0.26, 0.7), -0.1)
    cuff = _rounded_rect(-0.28, 0.6, 0.28, 0.86, 0.025)
    sc.fill(cuff, body, ("cuffs", "ribbed"), texture="rib", shade=0.97, outline=0.4)
    sc.soft(_rect(-0.28, 0.6, 0.28, 0.625), -0.12)
    if spec.has("logo_patch_front"):
        sc.logo_patch("logo_patch_front", 0.0, 0.73, 0.12, 0.07)


def _build_bucket_hat(sc: _Scene) -> None:
    spec = sc.spec
    body = sc.body
    crown = np.vstack(
        [_arc(0, 0.32, 0.2, 0.1, 180, 360, 15), _p([(0.24, 0.57), (-0.24, 0.57)])]
    )
    sc.fill(
        _chaikin(crown, 1),
        body,
        ("fabric", "crown"),
        patterned=True,
        texture=sc.texture,
    )
    sc.seam(_p([(-0.23, 0.5), (0.23, 0.5)]), 0.22, dashed=True)
    sc.seam(_p([(-0.22, 0.46), (0.22, 0.46)]), 0.22, dashed=True)
    sc.soft(_rect(0.14, 0.25, 0.24, 0.57), -0.1)
    if spec.has("logo_embroidered_front"):
        sc.logo("logo_embroidered_front", 0.0, 0.37, 0.05)
    brim = np.vstack(
        [_p([(-0.245, 0.55), (0.245, 0.55)]), _arc(0, 0.68, 0.45, 0.12, 0, 180, 19)]
    )
    brim_c = sc.detail_colour("brim_wide", body)
    sc.fill(
        _chaikin(brim, 1, keep=[0, 1]), brim_c, ("brim",), patterned=True, shade=0.96
    )
    for k in (0.03, 0.06, 0.09):
        sc.seam(
            _arc(0, 0.68 - k, 0.45 - k * 1.6, 0.12 - k * 0.4, 8, 172, 17),
            0.2,
            dashed=True,
        )
    sc.soft(_rect(-0.245, 0.55, 0.245, 0.58), -0.15)


def _build_scarf(sc: _Scene) -> None:
    """A long scarf folded in two and hung: two overlapping ends, fringed."""
    spec = sc.spec
    body = sc.body
    tex = "knit" if sc.texture == "knit" else None
    w = 0.2
    back = _p([(0.02, 0.12), (0.02 + w, 0.12), (0.06 + w, 0.86), (0.06, 0.86)])
    front = _p([(-0.12, 0.12), (-0.12 + w, 0.12), (-0.15 + w, 0.98), (-0.15, 0.98)])
    fold = _chaikin(
        _p(
            [
                (-0.14, 0.16),
                (-0.12, 0.04),
                (0.0, 0.0),
                (0.12, 0.01),
                (0.24, 0.05),
                (0.24, 0.16),
            ]
        ),
        2,
    )
    sc.fill(back, body, ("fabric",), shade=0.88, patterned=True, texture=tex)
    sc.fill(fold, body, ("fabric",), shade=0.95, patterned=True, texture=tex)
    sc.soft(_rect(-0.12, 0.1, 0.24, 0.16), -0.1)
    sc.fill(front, body, ("fabric",), patterned=True, texture=tex)
    sc.soft(
        _p([(-0.15 + w, 0.14), (-0.1 + w, 0.14), (-0.11 + w, 0.97), (-0.15 + w, 0.97)]),
        -0.14,
    )
    sc.soft(_p([(-0.08, 0.14), (-0.03, 0.14), (-0.06, 0.97), (-0.11, 0.97)]), 0.07)
    if spec.has("fringe"):
        for xa, xb, y, skew in (
            (0.06, 0.06 + w, 0.86, 0.0),
            (-0.15, -0.15 + w, 0.98, -0.004),
        ):
            for x in np.linspace(xa + 0.012, xb - 0.012, 10):
                sc.stroke(
                    _p([(x, y - 0.004), (x + skew, y + 0.07)]),
                    0.012,
                    body,
                    ("fringe",),
                    outline=0.25,
                    shade=0.95,
                )


def _build_shoe(sc: _Scene, boot: bool) -> None:
    spec, sub = sc.spec, sc.sub
    body = sc.body
    high = bool(sub.shape.get("high"))
    chelsea = bool(sub.shape.get("chelsea"))
    sole_d = spec.detail("rubber_sole")
    if sole_d is not None and sole_d.colour is not None:
        sole_c = sc.ids[sole_d.colour]
    elif boot:
        sole_c = sc.tone(sc.ids["charcoal"], 0.8)
    else:
        sole_c = sc.tone(sc.ids["white"], 1.0)
    sole_top, sole_bot = (0.41, 0.5) if not boot else (0.45, 0.51)
    top_y = -0.05 if boot else (-0.22 if high else 0.14)
    leather = spec.material in ("leather",)
    tex = None

    # Upper.
    if boot:
        upper = _p(
            [
                (0.04, sole_top + 0.01),
                (0.0, 0.2),
                (0.015, top_y + 0.02),
                (0.04, top_y),
                (0.34, top_y),
                (0.37, 0.12),
                (0.48, 0.21),
                (0.70, 0.26),
                (0.88, 0.29),
                (0.99, sole_top - 0.01),
                (0.97, sole_top + 0.01),
            ]
        )
    elif high:
        upper = _p(
            [
                (0.03, sole_top + 0.01),
                (0.0, 0.22),
                (0.02, top_y + 0.03),
                (0.06, top_y),
                (0.30, top_y + 0.02),
                (0.40, -0.02),
                (0.50, 0.15),
                (0.70, 0.28),
                (0.9, 0.32),
                (1.0, sole_top - 0.005),
                (0.98, sole_top + 0.01),
            ]
        )
    else:
        upper = _p(
            [
                (0.03, sole_top + 0.01),
                (0.0, 0.26),
                (0.04, top_y),
                (0.2, 0.19),
                (0.33, 0.17),
                (0.45, 0.2),
                (0.70, 0.28),
                (0.9, 0.32),
                (1.0, sole_top - 0.005),
                (0.98, sole_top + 0.01),
            ]
        )
    upper = _chaikin(upper, 2, keep=[0, len(upper) - 1])
    sc.fill(upper, body, ("fabric",), texture=tex)
    sc.zone("heel_zone", _rect(-0.1, -0.5, 0.22, 0.8))
    # Lace line (also where the tongue shows).
    if boot:
        lace_a, lace_b = np.array([0.33, top_y + 0.05]), np.array([0.50, 0.21])
    elif high:
        lace_a, lace_b = np.array([0.30, -0.14]), np.array([0.62, 0.25])
    else:
        lace_a, lace_b = np.array([0.40, 0.19]), np.array([0.68, 0.28])
    if not boot or spec.has("lace_up"):
        ax, ay = lace_a
        tongue = _p(
            [
                (ax - 0.04, ay + 0.03),
                (ax - 0.03, ay - 0.07),
                (ax + 0.05, ay - 0.075),
                (ax + 0.08, ay + 0.04),
            ]
        )
        sc.fill(
            _chaikin(tongue, 1, keep=[0, 3]), body, ("fabric",), shade=0.86, texture=tex
        )
    if not boot:
        sc.fill(
            _arc(
                0.17 if not high else 0.17,
                top_y + (0.06 if not high else 0.025),
                0.13,
                0.035,
                180,
                360,
                13,
            ),
            sc.tone(body, 0.45),
            (),
            outline=0.2,
        )
    # Shading.
    sc.soft(
        _p(
            [
                (0.05, sole_top - 0.03),
                (0.95, sole_top - 0.06),
                (0.95, sole_top),
                (0.05, sole_top),
            ]
        ),
        -0.12,
    )
    if leather:
        sc.soft(
            _chaikin(_p([(0.72, 0.31), (0.9, 0.335), (0.92, 0.35), (0.74, 0.33)]), 1),
            0.22,
        )
        sc.soft(_p([(0.05, 0.2), (0.1, 0.15), (0.12, 0.18), (0.07, 0.3)]), 0.12)
    # Toe panel.
    toe = _chaikin(
        _p(
            [
                (0.78, sole_top + 0.005),
                (0.77, 0.33),
                (0.82, 0.305),
                (0.9, 0.32),
                (1.0, sole_top - 0.005),
                (0.98, sole_top + 0.01),
            ]
        ),
        1,
        keep=[0, 5],
    )
    if spec.has("reinforced_toe"):
        sc.fill(toe, sc.tone(body, 0.93), ("toe",), outline=0.45)
        sc.seam(_shift(toe[1:4], -0.015, 0.012), 0.25, dashed=True)
    elif not boot:
        sc.seam(toe[1:4], 0.25, dashed=True)
    # Quarter seam.
    if not boot:
        sc.seam(
            _chaikin(
                _p([(0.2, sole_top - 0.005), (0.24, 0.3), (0.34, 0.2)]), 2, closed=False
            ),
            0.22,
            dashed=True,
        )
    if spec.has("padded_collar"):
        collar = _chaikin(
            _p(
                [
                    (0.0, top_y + 0.06),
                    (0.04, top_y - 0.005),
                    (0.29, top_y + 0.015),
                    (0.29, top_y + 0.06),
                    (0.05, top_y + 0.05),
                    (0.02, top_y + 0.09),
                ]
            ),
            1,
        )
        sc.fill(collar, body, ("collar",), shade=0.9, outline=0.4)
    if chelsea:
        panel_base = (
            "grey" if catalog.luminance(COLOURS[spec.colour]) < 70 else "charcoal"
        )
        panel = _chaikin(
            _p(
                [
                    (0.15, top_y + 0.005),
                    (0.30, top_y + 0.005),
                    (0.25, 0.22),
                    (0.205, 0.22),
                ]
            ),
            1,
            keep=[0, 1],
        )
        sc.fill(
            panel,
            sc.tone(sc.ids[panel_base], 1.0),
            ("elastic",),
            texture="rib",
            outline=0.45,
        )
    if spec.has("zip_side"):
        sc.zip_line(_p([(0.17, top_y + 0.01), (0.19, 0.3)]), ("zip",), tape=0.022)
    if spec.has("pull_tab"):
        tab_c = sc.detail_colour("pull_tab", sc.tone(body, 0.7))
        tab = _rounded_rect(0.008, top_y - 0.1, 0.088, top_y + 0.04, 0.022)
        sc.fill(tab, tab_c, ("tab", "heel"), outline=0.4)
        sc.fill(
            _rounded_rect(0.038, top_y - 0.075, 0.058, top_y - 0.03, 0.009),
            sc.tone(body, 0.3),
            ("tab", "heel"),
            outline=0.0,
        )
    if spec.has("heel_tab"):
        tab_c = sc.detail_colour("heel_tab", sc.tone(body, 0.8))
        tab = _rounded_rect(-0.012, top_y - 0.035, 0.05, top_y + 0.11, 0.015)
        sc.fill(tab, tab_c, ("tab", "heel"), outline=0.45)
    if spec.has("logo_side"):
        sc.logo("logo_side", 0.58, 0.33 if not boot else 0.36, 0.05)
    # Laces.
    if spec.has("lace_up"):
        a, b = lace_a, lace_b
        d = (b - a) / np.linalg.norm(b - a)
        n = np.array([d[1], -d[0]]) * 0.028
        lace_c = sc.tone(
            sc.ids["cream"]
            if catalog.luminance(COLOURS[spec.colour]) < 160
            else sc.ids["charcoal"],
            1.0,
        )
        k = 6 if (high or boot) else 5
        pts = [a + (b - a) * i / (k - 1) for i in range(k)]
        sc.stroke(_p([p - n for p in pts]), 0.008, sc.tone(body, 0.6), outline=0.0)
        for i in range(k - 1):
            p, q = pts[i], pts[i + 1]
            sc.stroke(_p([p + n, q - n]), 0.016, lace_c, ("laces",), outline=0.3)
            sc.stroke(_p([p - n, q + n]), 0.016, lace_c, ("laces",), outline=0.3)
        for p in pts:
            sc.fill(_circle(*(p + n), 0.009, 8), sc.hardware(), ("laces",), outline=0.3)
            sc.fill(_circle(*(p - n), 0.009, 8), sc.hardware(), ("laces",), outline=0.3)
    # Sole and heel.
    sole = _chaikin(
        _p(
            [
                (0.02, sole_top),
                (0.97, sole_top - 0.01),
                (1.015, sole_top + 0.02),
                (0.99, sole_bot),
                (0.05, sole_bot),
                (0.0, sole_bot - 0.03),
            ]
        ),
        2,
    )
    sc.fill(sole, sole_c, ("sole",), outline=0.45)
    sc.seam(
        _p(
            [
                (0.02, (sole_top + sole_bot) / 2),
                (1.0, (sole_top + sole_bot) / 2 - 0.004),
            ]
        ),
        0.2,
    )
    sc.fill(
        _rect(0.04, sole_bot - 0.015, 0.98, sole_bot),
        sc.tone(sole_c, 0.6),
        ("sole",),
        outline=0.0,
    )
    if boot:
        heel_c = sc.ids["tan"] if spec.has("stacked_heel") else sole_c
        heel = _p(
            [
                (0.02, sole_bot - 0.005),
                (0.22, sole_bot - 0.005),
                (0.21, sole_bot + 0.075),
                (0.03, sole_bot + 0.075),
            ]
        )
        regions = ("heel",) if spec.has("stacked_heel") else ("heel", "sole")
        sc.fill(heel, sc.tone(heel_c, 1.0), regions, outline=0.45)
        if spec.has("stacked_heel"):
            for k in range(1, 4):
                sc.seam(
                    _p([(0.025, sole_bot + 0.019 * k), (0.215, sole_bot + 0.019 * k)]),
                    0.25,
                )
        sc.fill(
            _rect(0.03, sole_bot + 0.06, 0.21, sole_bot + 0.075),
            sc.tone(sc.ids["charcoal"], 0.7),
            regions,
            outline=0.0,
        )


_BUILDERS = {
    "top": lambda sc: _build_top(sc, "top"),
    "dress": lambda sc: _build_top(sc, "dress"),
    "pants": _build_pants,
    "skirt": _build_skirt,
    "tote": _build_tote,
    "shoulder_bag": _build_shoulder_bag,
    "backpack": _build_backpack,
    "pouch": _build_pouch,
    "cap": _build_cap,
    "beanie": _build_beanie,
    "bucket_hat": _build_bucket_hat,
    "scarf": _build_scarf,
    "sneaker": lambda sc: _build_shoe(sc, boot=False),
    "boot": lambda sc: _build_shoe(sc, boot=True),
}


@functools.lru_cache(maxsize=16)
def _build_scene(spec: ProductSpec) -> _Scene:
    """The drawing operations of a product (same for every pose; cached, and
    never modified after it is built)."""
    seed = [
        spec.product_id & 0xFFFFFFFF,
        zlib.crc32(spec.description.encode("latin-1")),
    ]
    sc = _Scene(spec, np.random.default_rng(seed))
    _BUILDERS[sc.sub.kind](sc)
    pts = np.concatenate(
        [p for op in sc.ops if op.kind in ("fill", "stroke") for p in op.polys]
    )
    sc.extent = float(max(pts.max(0) - pts.min(0)))
    return sc


# --------------------------------------------------------------------------
# Rasterisation.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoseParams:
    """Placement and photography of one view.

    Attributes:
        frac: Longer side of the product as a fraction of the frame.
        shift: Offset of the product centre, as a fraction of the free margin.
        flip: Horizontal mirror.
        angle: Rotation in degrees.
        bg: Background RGB.
        bg_gradient: Top-to-bottom brightness change of the background.
        pair: For shoes: show the pair.
        noise: Standard deviation of the sensor noise (0..255 scale).
    """

    frac: float
    shift: tuple[float, float]
    flip: bool
    angle: float
    bg: tuple[float, float, float]
    bg_gradient: float
    pair: bool
    noise: float


def pose_params(pose: int, rng: np.random.Generator) -> PoseParams:
    """Samples the view of pose ``pose`` (pose 0 is the canonical front view)."""
    level = float(rng.uniform(201, 213))
    tint = float(rng.uniform(-3, 3))
    bg = (level + tint, level + 0.3 * tint, level - tint)
    if pose == 0:
        frac, shift, flip, angle = (
            float(rng.uniform(0.84, 0.88)),
            (0.0, 0.0),
            False,
            0.0,
        )
    else:
        frac = float(rng.uniform(0.70, 0.93))
        shift = (float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.7, 0.7)))
        flip = bool(rng.random() < 0.5)
        angle = float(rng.uniform(-2.0, 2.0))
    return PoseParams(
        frac=frac,
        shift=shift,
        flip=flip,
        angle=angle,
        bg=bg,
        bg_gradient=float(rng.uniform(2, 7)),
        pair=pose % 2 == 1,
        noise=float(rng.uniform(0.8, 1.6)),
    )


# Textures: (relative amplitude, period in item extents, direction).
_TEXTURES = {
    "rib": (0.12, 0.013, "across"),
    "knit": (0.05, 0.011, "across"),
    "elastic": (0.10, 0.02, "across"),
    "denim": (0.06, 0.01, "diagonal"),
}


def _plane_cos(
    xs: np.ndarray, ys: np.ndarray, kx: float, ky: float, k0: float
) -> np.ndarray:
    """cos(kx * x + ky * y + k0) on the grid ``ys`` x ``xs`` (outer products)."""
    ax = kx * xs + k0
    ay = ky * ys
    return (
        np.cos(ax)[None, :] * np.cos(ay)[:, None]
        - np.sin(ax)[None, :] * np.sin(ay)[:, None]
    )


def _pattern_mask(sc: _Scene, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    p = sc.pattern_period
    if sc.pattern == "striped":
        return ((v / p + sc.pattern_phase) % 1.0) < sc.pattern_duty
    if sc.pattern == "checked":
        return ((np.floor(u / p) + np.floor(v / p + sc.pattern_phase)) % 2) == 0
    if sc.pattern == "polka-dot":
        rh = p * 0.866
        j = np.round(v / rh)
        off = (j % 2) * (p / 2)
        i = np.round((u - off) / p)
        du = u - (i * p + off)
        dv = v - j * rh
        return du * du + dv * dv <= (0.24 * p) ** 2
    return np.zeros(np.broadcast(u, v).shape, bool)


class _Workspace(threading.local):
    """Per-thread reusable canvases (fresh large arrays are slow to allocate)."""

    def get(self, S: int, n_ops: int) -> _Workspace:
        op_dtype = np.uint8 if n_ops < 255 else np.uint16
        if getattr(self, "S", None) != S or self.opmap.dtype != op_dtype:
            self.S = S
            self.label = np.zeros((S, S), np.uint8)  # colour id + 1, 0 = none
            self.opmap = np.zeros((S, S), op_dtype)  # operation index + 1
            self.shade = np.ones((S, S), np.float32)
            self.amp = np.zeros((S, S), np.float32)
            self.soft = np.zeros((S, S), np.float32)
            self.edge = np.zeros((S, S), np.uint8)
            self.buf = np.zeros((S, S), np.uint8)
            self.item8 = np.zeros((S, S), np.uint8)
            self.pattern = np.zeros((S, S), bool)
            self.f1 = np.zeros((S, S), np.float32)
            self.lab3 = np.zeros((S, S, 3), np.uint8)
            self.col3 = np.zeros((S, S, 3), np.uint8)
        self.n_ids = n_ops + 1
        return self


_WORKSPACE = _Workspace()
_RAMPS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _ramps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertical ramp -1..1 and the key-light gain (from the top left)."""
    if size not in _RAMPS:
        yy = np.linspace(-1, 1, size, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, size, dtype=np.float32)[None, :]
        ramp = np.repeat(yy, size, axis=1)
        light = (1.0 + 0.05 * (-0.4 * xx - 0.6 * yy)).astype(np.float32)
        _RAMPS[size] = (ramp, light)
    return _RAMPS[size]


_NOISE_BANKS: dict[int, np.ndarray] = {}


def _noise_bank(size: int) -> np.ndarray:
    """Fixed standard-normal noise of twice the image size (cut at a random
    offset per image: cheaper than drawing fresh noise, equally deterministic)."""
    bank = _NOISE_BANKS.get(size)
    if bank is None:
        rng = np.random.default_rng(20170101 + size)
        bank = rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)
        _NOISE_BANKS[size] = bank
    return bank


class _Raster:
    """Rasterises a scene at ``SUPERSAMPLE`` times the output size."""

    def __init__(self, sc: _Scene, size: int, pp: PoseParams) -> None:
        self.sc, self.size, self.pp = sc, size, pp
        self.S = size * SUPERSAMPLE
        ops = list(sc.ops)
        if pp.pair and sc.sub.kind in ("sneaker", "boot"):
            ops = self._pair_ops(ops)
        self.ops = ops
        self._placement()

    @staticmethod
    def _pair_ops(ops: list[_Op]) -> list[_Op]:
        back = []
        for op in ops:
            b = dataclasses.replace(
                op, polys=[_shift(p, 0.26, -0.09) for p in op.polys]
            )
            if b.kind in ("fill", "stroke"):
                b.shade = b.shade * 0.86
            back.append(b)
        return back + ops

    def _placement(self) -> None:
        pp = self.pp
        th = math.radians(pp.angle)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        lin = rot @ np.diag([-1.0 if pp.flip else 1.0, 1.0])
        pts = []
        for op in self.ops:
            if op.kind not in ("fill", "stroke"):
                continue
            r = op.width / 2.0
            for p in op.polys:
                pts.append(p)
                if r > 0:
                    pts.extend([p + [r, r], p + [-r, -r], p + [r, -r], p + [-r, r]])
        allp = np.concatenate(pts) @ lin.T
        mn, mx = allp.min(0), allp.max(0)
        ext = float(max(mx - mn))
        s = pp.frac * self.S / ext
        margin = (self.S - s * (mx - mn)) / 2.0
        centre = (mn + mx) / 2.0 * s
        shift = np.asarray(pp.shift) * np.maximum(margin - 0.03 * self.S, 0.0)
        self.A = s * lin
        self.t = np.array([self.S / 2.0, self.S / 2.0]) - centre + shift
        self.scale = s
        self.Ainv = np.linalg.inv(self.A)

    def to_px(self, poly: Poly) -> np.ndarray:
        return poly @ self.A.T + self.t

    def texture(
        self, kind: str, angle: float, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        """Multiplicative texture field on the pixel box [y0:y1, x0:x1]."""
        amp, period, direction = _TEXTURES[kind]
        ai = self.Ainv / self.sc.extent  # pixel -> normalised garment coords
        if direction == "across":
            w = np.array([math.cos(angle), -math.sin(angle)])
        else:
            w = np.array([1.0, 1.0])
        kx, ky = (w @ ai) * (2 * math.pi / period)
        k0 = -(kx * self.t[0] + ky * self.t[1])
        xs = np.arange(x0, x1, dtype=np.float64) + 0.5
        ys = np.arange(y0, y1, dtype=np.float64) + 0.5
        wave = _plane_cos(xs, ys, kx, ky, k0).astype(np.float32)
        return 1.0 + (0.5 * amp) * wave  # mean-neutral: colours keep their mean

    def garment_coords(
        self, y0: int, y1: int, x0: int, x1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - self.t[1]
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - self.t[0]
        ai = self.Ainv.astype(np.float32)
        u = ai[0, 0] * xs + ai[0, 1] * ys
        v = ai[1, 0] * xs + ai[1, 1] * ys
        return u, v

    def run(
        self, rng: np.random.Generator, wanted: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Paints the scene; returns the image and the ``wanted`` region masks."""
        sc, S = self.sc, self.S
        if len(sc.palette) >= 255:  # pragma: no cover - scenes use ~40 colours
            raise ValueError("too many colours in one scene")
        ws = _WORKSPACE.get(S, len(self.ops))
        label, opmap, shade, amp, edge, soft = (
            ws.label,
            ws.opmap,
            ws.shade,
            ws.amp,
            ws.edge,
            ws.soft,
        )
        label.fill(0)
        opmap.fill(0)
        shade.fill(1.0)
        amp.fill(0.0)
        edge.fill(0)
        soft.fill(0.0)
        region_ops: dict[str, list[int]] = {}
        line_w = max(2, int(round(S / 230)))
        amps = sc.amps
        pattern = None
        patterned = [p for op in self.ops if op.patterned for p in op.polys]
        if sc.pattern != "solid" and patterned:
            box = self.to_px(np.concatenate(patterned))
            px0, py0 = np.clip(np.floor(box.min(0)).astype(int) - 2, 0, S)
            px1, py1 = np.clip(np.ceil(box.max(0)).astype(int) + 3, 0, S)
            u, v = self.garment_coords(py0, py1, px0, px1)
            pattern = ws.pattern
            pattern.fill(False)
            pattern[py0:py1, px0:px1] = _pattern_mask(sc, u / sc.extent, v / sc.extent)

        for idx, op in enumerate(self.ops):
            px = [self.to_px(p) for p in op.polys]
            if op.kind == "soft":
                pts = [np.round(p * _FIX).astype(np.int32) for p in px]
                cv2.fillPoly(soft, pts, float(op.amount), cv2.LINE_8, _SHIFT_BITS)
                continue
            if op.kind == "seam":
                self._seam(edge, px[0], op)
                continue
            allp = np.concatenate(px)
            pad = int(op.width * self.scale) + 3
            x0 = max(int(math.floor(allp[:, 0].min())) - pad, 0)
            y0 = max(int(math.floor(allp[:, 1].min())) - pad, 0)
            x1 = min(int(math.ceil(allp[:, 0].max())) + pad + 1, S)
            y1 = min(int(math.ceil(allp[:, 1].max())) + pad + 1, S)
            if x1 <= x0 or y1 <= y0:
                continue
            buf = ws.buf[: y1 - y0, : x1 - x0]
            buf.fill(0)
            local = [np.round((p - [x0, y0]) * _FIX).astype(np.int32) for p in px]
            if op.kind == "fill":
                cv2.fillPoly(buf, local, 1, cv2.LINE_8, _SHIFT_BITS)
            else:
                th = max(1, int(round(op.width * self.scale)))
                cv2.polylines(buf, local, op.closed, 1, th, cv2.LINE_8, _SHIFT_BITS)
            m = buf.view(bool)
            sl = (slice(y0, y1), slice(x0, x1))
            if op.clip:
                allowed = np.zeros(ws.n_ids, bool)
                for r in op.clip:
                    allowed[np.asarray(region_ops.get(r, []), int) + 1] = True
                m = m & allowed[opmap[sl]]
            if not m.any():
                continue
            a = amps[op.colour]
            shade_v = shade[sl]
            if op.texture:
                field = self.texture(op.texture, op.tex_angle, y0, y1, x0, x1)
                value = np.float32(op.shade) * field
                shade_v[m] = (1.0 + (value - 1.0) * a)[m]
            else:
                value = np.float32(op.shade)
                shade_v[m] = 1.0 + (value - 1.0) * a
            label[sl][m] = op.colour + 1
            amp[sl][m] = a
            if op.patterned and pattern is not None:
                pm = m & pattern[sl]
                ap = amps[sc.pattern_colour]
                label[sl][pm] = sc.pattern_colour + 1
                amp[sl][pm] = ap
                if op.texture:
                    shade_v[pm] = (1.0 + (value - 1.0) * ap)[pm]
                else:
                    shade_v[pm] = 1.0 + (value - 1.0) * ap
            opmap[sl][m] = idx + 1
            edge[sl][m] = 0
            for r in op.regions:
                region_ops.setdefault(r, []).append(idx)
            if op.outline > 0:
                # Light parts get firmer outlines: they must stand out from the
                # light background.
                boost = 1.3 if a < 0.5 else 1.0
                val = int(round(min(255.0, 255 * op.outline * boost)))
                pts = [np.round(p * _FIX).astype(np.int32) for p in px]
                if op.kind == "fill":
                    cv2.polylines(
                        edge, pts, True, val, line_w, cv2.LINE_AA, _SHIFT_BITS
                    )
                else:
                    self._stroke_outline(edge, px[0], op, val)

        image = self._compose(ws, rng)
        masks = self._regions(ws, region_ops, wanted)
        return image, masks

    def _seam(self, edge: np.ndarray, pts: np.ndarray, op: _Op) -> None:
        unit = self.sc.extent
        th = max(1, int(round(op.width * unit * self.scale)))
        val = int(round(255 * op.outline))
        path = np.vstack([pts, pts[:1]]) if op.closed else pts
        if op.dashed:
            seg_len = 0.018 * unit * self.scale
            segs = []
            for a, b in zip(path[:-1], path[1:], strict=True):
                d = b - a
                k = max(1, int(float(np.hypot(*d)) / seg_len))
                for i in range(0, k, 2):
                    seg = np.stack([a + d * (i / k), a + d * (min(i + 1, k) / k)])
                    segs.append(np.round(seg * _FIX).astype(np.int32))
            if segs:
                cv2.polylines(edge, segs, False, val, th, cv2.LINE_AA, _SHIFT_BITS)
        else:
            pts_i = [np.round(path * _FIX).astype(np.int32)]
            cv2.polylines(edge, pts_i, False, val, th, cv2.LINE_AA, _SHIFT_BITS)

    def _stroke_outline(
        self, edge: np.ndarray, pts: np.ndarray, op: _Op, val: int
    ) -> None:
        th = max(1, int(round(op.width * self.scale)))
        pts_i = [np.round(pts * _FIX).astype(np.int32)]
        x0, y0 = np.floor(pts.min(0)).astype(int) - th - 4
        x1, y1 = np.ceil(pts.max(0)).astype(int) + th + 5
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.S), min(y1, self.S)
        if x1 <= x0 or y1 <= y0:
            return
        off = np.array([x0, y0]) * int(_FIX)
        pts_l = [p - off for p in pts_i]
        # A ring centred on the stroke's border (like the outline of a fill).
        half = max(1, self.S // 300)
        ring = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.polylines(
            ring, pts_l, op.closed, val, th + 2 * half, cv2.LINE_AA, _SHIFT_BITS
        )
        if th - 2 * half >= 1:
            inner = np.zeros_like(ring)
            cv2.polylines(
                inner, pts_l, op.closed, 1, th - 2 * half, cv2.LINE_8, _SHIFT_BITS
            )
            ring[inner > 0] = 0
        sub = edge[y0:y1, x0:x1]
        np.maximum(sub, ring, out=sub)

    def _compose(self, ws: _Workspace, rng: np.random.Generator) -> np.ndarray:
        """Flat colours and local shading at the supersampled size, then the
        smooth global shading and the background at the output size."""
        sc, S, size, pp = self.sc, self.S, self.size, self.pp
        down, up = cv2.INTER_AREA, cv2.INTER_LINEAR
        dsize = (size, size)
        pal = np.clip(np.round(np.stack(sc.palette)), 0, 255).astype(np.uint8)
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[1 : len(pal) + 1, 0, :] = pal
        cv2.merge([ws.label, ws.label, ws.label], dst=ws.lab3)
        cv2.LUT(ws.lab3, lut, dst=ws.col3)
        col1 = cv2.resize(ws.col3, dsize, interpolation=down).astype(np.float32)
        local = ws.f1
        np.multiply(ws.edge, np.float32(-1.0 / 255.0), out=local)
        local += 1.0
        local *= ws.shade
        local1 = cv2.resize(local, dsize, interpolation=down)
        cv2.compare(ws.label, 0, cv2.CMP_GT, dst=ws.item8)
        alpha = cv2.resize(ws.item8, dsize, interpolation=down).astype(np.float32)
        alpha *= np.float32(1.0 / 255.0)
        amp1 = cv2.resize(ws.amp, dsize, interpolation=down) / np.maximum(alpha, 1e-6)
        # Smooth shading: soft folds, ambient occlusion, a light from top left.
        small = max(8, S // 4)
        sdsize = (small, small)
        soft_s = cv2.GaussianBlur(
            cv2.resize(ws.soft, sdsize, interpolation=down), (0, 0), small / 40.0
        )
        item_s = (
            cv2.resize(ws.item8, sdsize, interpolation=down).astype(np.float32) / 255.0
        )
        ao_s = cv2.GaussianBlur(item_s, (0, 0), small / 70.0)
        off = (max(1, small // 60), max(1, small // 90))
        shadow_s = cv2.GaussianBlur(
            np.roll(item_s, off, axis=(0, 1)), (0, 0), small / 45.0
        )
        ramp, light = _ramps(size)
        g = cv2.resize(soft_s, dsize, interpolation=up)
        g += 1.0
        g *= light
        occl = cv2.resize(ao_s, dsize, interpolation=up)
        np.clip(occl, 0.0, 1.0, out=occl)
        occl *= 0.16
        occl += 0.84
        g *= occl
        g -= 1.0
        g *= amp1  # g is now the shading offset, scaled per colour
        lift = g * alpha
        lift *= 24.0
        g += 1.0
        g *= local1  # gain
        # Background: near-uniform grey, a slight vertical gradient, a soft
        # contact shadow.
        bgf = cv2.resize(shadow_s, dsize, interpolation=up)
        bgf *= -0.045
        bgf += 1.0
        bgf *= 1.0 - pp.bg_gradient / 255.0 * ramp
        bgf *= 1.0 - alpha
        oy, ox = (int(v) for v in rng.integers(0, size, 2))
        noise = _noise_bank(size)[oy : oy + size, ox : ox + size]
        out = np.empty((size, size, 3), np.uint8)
        tmp = np.empty((size, size), np.float32)
        for c in range(3):
            np.multiply(col1[..., c], g, out=tmp)
            tmp += lift
            tmp += np.float32(pp.bg[c]) * bgf
            tmp += np.float32(pp.noise) * noise[..., c]
            np.clip(tmp, 0, 255, out=tmp)
            np.rint(tmp, out=tmp)
            out[..., c] = tmp
        return out

    def _regions(
        self, ws: _Workspace, region_ops: dict[str, list[int]], wanted: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Bool masks at the output size (pixels at least half covered)."""
        sc, size = self.sc, self.size
        n_ops = len(self.ops)
        sel = ws.item8  # reused scratch (uint8 0/255)

        def select(ops: Sequence[int]) -> np.ndarray:
            ids = np.asarray(list(ops), int) + 1
            if ws.opmap.dtype == np.uint8:
                lut = np.zeros(256, np.uint8)
                lut[ids] = 255
                return cv2.LUT(ws.opmap, lut, dst=sel)
            keep = np.zeros(n_ops + 1, np.uint8)
            keep[ids] = 255
            np.take(keep, ws.opmap, out=sel)
            return sel

        def down(m2: np.ndarray) -> np.ndarray:
            return cv2.resize(m2, (size, size), interpolation=cv2.INTER_AREA) >= 128

        out: dict[str, np.ndarray] = {}
        for region in wanted:
            if region in out:
                continue
            if region == "item":
                m2 = cv2.compare(ws.opmap, 0, cv2.CMP_GT, dst=sel)
            elif region.startswith("colour:"):
                cid = sc.ids[region.split(":", 1)[1]] + 1
                m2 = cv2.compare(ws.label, cid, cv2.CMP_EQ, dst=sel)
            elif region in ("chest", "waist", "legs"):
                z = ws.buf
                z.fill(0)
                for name, polys in sc.zones:
                    if name == region:
                        pts = [
                            np.round(self.to_px(p) * _FIX).astype(np.int32)
                            for p in polys
                        ]
                        cv2.fillPoly(z, pts, 255, cv2.LINE_8, _SHIFT_BITS)
                sleeves = set(region_ops.get("sleeves", []))
                m2 = select([i for i in range(n_ops) if i not in sleeves])
                np.bitwise_and(m2, z, out=m2)
            else:
                m2 = select(region_ops.get(region, []))
            out[region] = down(m2)
        return out


def render_product_image(
    spec: ProductSpec,
    pose: int,
    rng: np.random.Generator,
    size: int = 256,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws one view of a product and the regions of its description's words.

    Args:
        spec: The product.
        pose: View index 0..5 (0: canonical front view; others vary scale, shift,
            flip and a slight rotation). The garment itself is the same in all.
        rng: Randomness of the view (placement, background, noise).
        size: Side of the square image.

    Returns:
        ``(image, word_masks)``: uint8 RGB [size, size, 3], and for every visible
        content word of ``spec.description`` (``product_sampler.visible_words``)
        a bool [size, size] mask of the pixels it refers to.
    """
    sc = _build_scene(spec)
    pp = pose_params(pose, rng)
    words = visible_words(spec)
    regions = [WORD_REGIONS[w] for w in words] + ["item"]
    raster = _Raster(sc, size, pp)
    image, region_masks = raster.run(rng, regions)
    return image, {w: region_masks[WORD_REGIONS[w]] for w in words}


def foreground_mask(image: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """Pixels whose largest channel difference from the median border colour
    exceeds ``threshold`` (0..1 scale): the background-difference segmentation
    the synthetic images are designed for."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(
        np.float32
    )
    bg = np.median(border, axis=0)
    return (np.abs(image.astype(np.float32) - bg).max(axis=-1) / 255.0) > threshold
