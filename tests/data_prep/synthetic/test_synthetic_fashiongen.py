"""Tests of the synthetic Fashion-Gen generator: layout, determinism, and that the
text is true of the images (colours, regions, locations, patterns)."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from data_prep.synthetic import catalog
from data_prep.synthetic.fashiongen_writer import (
    main_file_name,
    word_regions_file_name,
    write_synthetic_fashiongen,
)
from data_prep.synthetic.garment_renderer import foreground_mask, render_product_image
from data_prep.synthetic.product_sampler import (
    description_words,
    sample_product,
    visible_words,
)

NUM_PRODUCTS = 20
SEED = 1234

EXPECTED_LAYOUT = {
    "input_image": ((256, 256, 3), np.uint8),
    "input_description": ((1,), "S"),
    "input_concat_description": ((1,), "S"),
    "input_name": ((1,), "S"),
    "input_category": ((1,), "S"),
    "input_subcategory": ((1,), "S"),
    "input_department": ((1,), "S"),
    "input_gender": ((1,), "S"),
    "input_brand": ((1,), "S"),
    "input_composition": ((1,), "S"),
    "input_season": ((1,), "S"),
    "input_pose": ((1,), "S"),
    "input_productID": ((1,), np.int64),
    "input_msrpUSD": ((1,), np.float32),
    "index": ((1,), np.int64),
    "index_2": ((), np.int64),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("synthetic_fashiongen")
    return write_synthetic_fashiongen(out, NUM_PRODUCTS, seed=SEED, progress=False)


def _erode(mask: np.ndarray, k: int = 3) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _close(mask: np.ndarray, k: int = 5) -> np.ndarray:
    kernel = np.ones((k, k), np.uint8)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)


def _strings(ds: h5py.Dataset) -> list[str]:
    return [bytes(v).rstrip(b"\x00").decode("latin-1") for v in ds[:, 0]]


def _word_masks(path: str) -> dict[int, dict[str, np.ndarray]]:
    out: dict[int, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as g:
        rows = g["row"][:]
        words = [w.decode("latin-1") for w in g["word"][:]]
        masks = g["mask"][:]
    for r, w, m in zip(rows.tolist(), words, masks, strict=True):
        out.setdefault(r, {})[w] = m
    return out


def test_catalog_sizes() -> None:
    assert len(catalog.CATEGORIES) >= 12
    assert len(catalog.SUBCATEGORIES) >= 36
    assert len(catalog.COLOURS) >= 14
    assert len(catalog.BRANDS) >= 20
    accented = [b for b in catalog.BRANDS if any(ord(c) > 127 for c in b)]
    assert len(accented) >= 3
    for brand in catalog.BRANDS:
        assert brand.encode("latin-1").decode("latin-1") == brand
    for sub in catalog.SUBCATEGORIES.values():
        assert sub.name.isupper() and sub.category.isupper()
        assert sub.department in catalog.DEPARTMENTS
        for key in sub.optional + tuple(k for g in sub.required for k in g):
            assert key in catalog.DETAILS


def test_descriptions_never_empty_and_name_the_item() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(400):
        spec = sample_product(rng, i)
        seen.add(spec.subcategory)
        assert spec.description.strip()
        assert spec.name.strip()
        assert 1 <= spec.num_poses <= 6
        spec.description.encode("latin-1")
        words = visible_words(spec)
        assert any(catalog.WORD_REGIONS[w] == "item" for w in words), spec.description
        assert spec.colour in description_words(spec.description)
    assert len(seen) == len(catalog.SUBCATEGORIES)


def test_layout(dataset: dict) -> None:
    for split in ("train", "validation"):
        info = dataset[split]
        assert Path(info["path"]).name == main_file_name(split)
        assert Path(info["word_regions_path"]).name == word_regions_file_name(split)
        with h5py.File(info["path"], "r") as f:
            assert set(f.keys()) == set(EXPECTED_LAYOUT)
            n = f["input_image"].shape[0]
            assert n == info["rows"]
            for key, (tail, dtype) in EXPECTED_LAYOUT.items():
                ds = f[key]
                assert ds.shape == (n, *tail), key
                if dtype == "S":
                    assert ds.dtype.kind == "S", key
                else:
                    assert ds.dtype == dtype, key
            assert f["input_image"].chunks == (1, 256, 256, 3)
            ids = f["input_productID"][:, 0]
            poses = _strings(f["input_pose"])
            np.testing.assert_array_equal(f["index"][:, 0], np.arange(n))
            np.testing.assert_array_equal(f["index_2"][:], np.arange(n))
            # Rows of a product are contiguous, 1..6 of them, pose after pose.
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            assert len(starts) == len(set(ids.tolist())) == info["products"]
            ends = np.r_[starts[1:], n]
            for a, b in zip(starts, ends, strict=True):
                assert 1 <= b - a <= 6
                assert poses[a:b] == [f"id_gridfs_{k + 1}" for k in range(b - a)]
                for key in ("input_description", "input_category", "input_brand"):
                    assert len(set(f[key][a:b, 0].tolist())) == 1
            assert all(d.strip() for d in _strings(f["input_description"]))
            assert set(_strings(f["input_category"])) <= set(catalog.CATEGORIES)
            assert set(_strings(f["input_brand"])) <= set(catalog.BRANDS)


def test_latin1_brand_round_trip(dataset: dict) -> None:
    brands = []
    for split in ("train", "validation"):
        with h5py.File(dataset[split]["path"], "r") as f:
            brands += [bytes(b) for b in f["input_brand"][:, 0]]
    accented = [b for b in brands if any(c >= 0x80 for c in b)]
    assert accented, "expected at least one accented brand"
    for raw in accented:
        assert raw.decode("latin-1") in catalog.BRANDS


def test_splits_are_disjoint_and_sized(dataset: dict) -> None:
    ids = {}
    for split in ("train", "validation"):
        with h5py.File(dataset[split]["path"], "r") as f:
            ids[split] = set(f["input_productID"][:, 0].tolist())
    assert not ids["train"] & ids["validation"]
    assert dataset["validation"]["products"] == max(1, round(0.125 * NUM_PRODUCTS))
    assert (
        dataset["train"]["products"] + dataset["validation"]["products"] == NUM_PRODUCTS
    )
    out_dir = Path(dataset["train"]["path"]).parent
    assert not [p for p in out_dir.iterdir() if ".tmp" in p.name]


def test_determinism(tmp_path: Path) -> None:
    a = write_synthetic_fashiongen(tmp_path / "a", 4, seed=5, progress=False)
    b = write_synthetic_fashiongen(tmp_path / "b", 4, seed=5, progress=False)
    c = write_synthetic_fashiongen(tmp_path / "c", 4, seed=6, progress=False)
    for split in ("train", "validation"):
        for key in ("path", "word_regions_path"):
            assert Path(a[split][key]).read_bytes() == Path(b[split][key]).read_bytes()
        with (
            h5py.File(a[split]["path"], "r") as fa,
            h5py.File(c[split]["path"], "r") as fc,
        ):
            same = fa["input_image"].shape == fc[
                "input_image"
            ].shape and np.array_equal(fa["input_image"][:], fc["input_image"][:])
            assert not same
            assert (
                fa["input_description"][:].tolist()
                != fc["input_description"][:].tolist()
            )


def test_colour_words_name_the_region_colour(dataset: dict) -> None:
    checked = 0
    with h5py.File(dataset["train"]["path"], "r") as f:
        images = f["input_image"][:]
    for row, masks in _word_masks(dataset["train"]["word_regions_path"]).items():
        for word, mask in masks.items():
            if word not in catalog.COLOURS:
                continue
            assert mask.any(), (row, word)
            # Interior of the region: its border pixels are anti-aliased blends.
            core = _erode(mask)
            mean = images[row][core if core.any() else mask].reshape(-1, 3).mean(axis=0)
            assert catalog.nearest_colour(mean) == word, (row, word, mean)
            checked += 1
    assert checked >= NUM_PRODUCTS


def test_word_masks_non_empty_and_on_the_product(dataset: dict) -> None:
    with h5py.File(dataset["train"]["path"], "r") as f:
        images = f["input_image"][:]
        descriptions = _strings(f["input_description"])
    masks_by_row = _word_masks(dataset["train"]["word_regions_path"])
    assert set(masks_by_row) == set(range(len(images)))
    for row, masks in masks_by_row.items():
        expected = set(
            w for w in description_words(descriptions[row]) if w in catalog.WORD_REGIONS
        )
        assert set(masks) == expected
        # Background-difference segmentation (0.08 threshold) with a 5x5 closing,
        # as a foreground cropper would use it.
        fg = _close(foreground_mask(images[row]))
        # The product is croppable: found, and not touching the border.
        assert fg.sum() > 0.05 * fg.size
        assert not fg[0].any() and not fg[-1].any()
        assert not fg[:, 0].any() and not fg[:, -1].any()
        for word, mask in masks.items():
            assert mask.any(), (row, word)
            inside = (mask & fg).sum() / mask.sum()
            assert inside >= 0.9, (row, word, inside)


def _chest_only(spec_details: set[str], prefix: str) -> bool:
    chest = {k for k in spec_details if k.endswith("_chest")}
    other = {k for k in spec_details if prefix in k and not k.endswith("_chest")}
    return any(prefix in k for k in chest) and not other


def test_chest_details_are_in_the_upper_half() -> None:
    rng = np.random.default_rng(3)
    found = 0
    for i in range(600):
        spec = sample_product(rng, i)
        keys = {d.key for d in spec.details}
        regions = []
        if _chest_only(keys, "pocket"):
            regions.append("pocket")
        if _chest_only(keys, "logo"):
            regions.append("logo")
        words = [w for w in visible_words(spec) if catalog.WORD_REGIONS[w] in regions]
        if not words:
            continue
        for pose in range(2):
            image, masks = render_product_image(spec, pose, np.random.default_rng(pose))
            item = next(
                m for w, m in masks.items() if catalog.WORD_REGIONS[w] == "item"
            )
            ys = np.flatnonzero(item.any(axis=1))
            middle = (ys.min() + ys.max()) / 2
            for word in words:
                rows = np.flatnonzero(masks[word].any(axis=1))
                assert rows.size and rows.max() < middle, (spec.description, word)
        found += 1
        if found >= 8:
            break
    assert found >= 8


def _periodic_strength(image: np.ndarray, mask: np.ndarray) -> float:
    """How strongly the luminance of the mask's rows (central band, away from
    outlines) varies periodically: std of the high-passed row profile times its
    best autocorrelation over lags of 5..40 px."""
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    xs = np.flatnonzero(mask.any(axis=0))
    x0, x1 = np.percentile(xs, [30, 70]).astype(int)
    band = mask[:, x0 : x1 + 1]
    lum = image[:, x0 : x1 + 1].astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    counts = band.sum(axis=1)
    rows = np.flatnonzero(counts >= max(3, 0.5 * (x1 - x0 + 1)))
    profile = (lum * band).sum(axis=1)[rows] / counts[rows]
    kernel = np.ones(25) / 25
    smooth = np.convolve(np.pad(profile, 12, mode="edge"), kernel, mode="valid")
    high = profile - smooth
    best = max(np.corrcoef(high[:-lag], high[lag:])[0, 1] for lag in range(5, 41))
    return float(np.std(high) * max(best, 0.0))


def test_stripes_are_periodic_and_solids_are_not() -> None:
    rng = np.random.default_rng(11)
    striped, solid = [], []
    for i in range(800):
        spec = sample_product(rng, i)
        if spec.category not in ("SWEATERS", "TOPS", "SHIRTS", "DRESSES", "SKIRTS"):
            continue
        want_striped = spec.pattern == "striped" and len(striped) < 6
        want_solid = spec.pattern == "solid" and len(solid) < 10
        if not (want_striped or want_solid):
            continue
        image, masks = render_product_image(spec, 0, np.random.default_rng(i))
        if want_striped:
            mask = masks[spec.colour] | masks[spec.pattern_colour]
            striped.append(_periodic_strength(image, mask))
        else:
            solid.append(_periodic_strength(image, masks[spec.colour]))
        if len(striped) >= 6 and len(solid) >= 10:
            break
    assert len(striped) == 6 and len(solid) == 10
    assert min(striped) > 15.0, striped
    assert max(solid) < 5.0, solid


def test_poses_show_the_same_product() -> None:
    rng = np.random.default_rng(5)
    spec = next(
        s for s in (sample_product(rng, i) for i in range(100)) if s.num_poses >= 3
    )
    views = [render_product_image(spec, p, np.random.default_rng(p)) for p in range(3)]
    for image, masks in views:
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert set(masks) == set(visible_words(spec))
        for mask in masks.values():
            assert mask.shape == (256, 256) and mask.dtype == bool and mask.any()
    # Different views, same garment: colour fractions of the item agree.
    item_word = next(w for w in views[0][1] if catalog.WORD_REGIONS[w] == "item")
    fractions = [m[spec.colour].sum() / m[item_word].sum() for _, m in views]
    assert max(fractions) - min(fractions) < 0.08
    assert not np.array_equal(views[0][0], views[1][0])
