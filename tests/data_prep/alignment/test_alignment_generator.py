"""Attention -> region -> pair geometry against an independent numpy computation,
and the word-matching rules (K-Q11, K-Q12)."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.alignment.alignment_generator import (
    AlignmentGenerator,
    AlignmentPair,
    is_alignable,
    upsample_attention,
)
from kaleido_tf import schema


def numpy_bilinear(alpha: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel bilinear upsampling written out per output pixel."""
    h, w = alpha.shape
    out = np.zeros((size, size))
    for y in range(size):
        sy = min(max((y + 0.5) * h / size - 0.5, 0.0), h - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(size):
            sx = min(max((x + 0.5) * w / size - 0.5, 0.0), w - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = alpha[y0, x0] * (1 - fx) + alpha[y0, x1] * fx
            bottom = alpha[y1, x0] * (1 - fx) + alpha[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def numpy_pairs(alpha, size, levels, region_thr, overlap_thr, foreground=None):
    """Patch -> (overlap, score) with plain slicing, independent of the module."""
    up = numpy_bilinear(alpha, size)
    region = up >= region_thr * up.max()
    if foreground is not None:
        region &= foreground
    layout = schema.LAYOUTS["kaleido"]
    out = {}
    for n in levels:
        start = layout.level_slice(n).start
        for r in range(n):
            for c in range(n):
                x1, x2 = (
                    int(np.floor(c * size / n + 0.5)),
                    int(np.floor((c + 1) * size / n + 0.5)),
                )
                y1, y2 = (
                    int(np.floor(r * size / n + 0.5)),
                    int(np.floor((r + 1) * size / n + 0.5)),
                )
                ov = region[y1:y2, x1:x2].mean()
                if ov >= overlap_thr:
                    out[start + r * n + c] = (ov, ov * up[y1:y2, x1:x2].mean())
    return out


@pytest.mark.parametrize("grid,size", [(4, 64), (7, 100), (14, 256)])
def test_upsampling_matches_numpy(grid, size):
    alpha = np.random.default_rng(grid).random((grid, grid)).astype(np.float32)
    np.testing.assert_allclose(
        upsample_attention(alpha, size), numpy_bilinear(alpha, size), atol=1e-5
    )


@pytest.mark.parametrize("seed", range(4))
def test_word_patches_match_numpy(seed):
    rng = np.random.default_rng(seed)
    grid, size = (4, 64) if seed % 2 else (14, 96)
    # A smooth blob plus noise, so that regions cover a few patches.
    yy, xx = np.mgrid[0:grid, 0:grid]
    cy, cx = rng.uniform(0, grid - 1, 2)
    spread = rng.uniform(1, 6) * (grid / 4) ** 2
    alpha = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / spread)
    alpha = alpha + 0.05 * rng.random((grid, grid))
    alpha = (alpha / alpha.sum()).astype(np.float32)
    thr = (0.5, 0.5) if seed < 2 else (0.3, 0.4)
    gen = AlignmentGenerator(size, (3, 4, 5), thr[0], thr[1])
    patches, overlap, score = gen.word_patches(alpha)
    expected = numpy_pairs(alpha, size, (3, 4, 5), *thr)
    assert len(expected) > 0
    assert sorted(patches.tolist()) == sorted(expected)
    for p, ov, sc in zip(patches, overlap, score):
        np.testing.assert_allclose(ov, expected[p][0], atol=1e-9)
        np.testing.assert_allclose(sc, expected[p][1], rtol=1e-5)
        assert 5 <= p <= 54


def test_foreground_limits_the_region():
    size, grid = 60, 5
    alpha = np.ones((grid, grid), np.float32) / grid**2  # uniform: region = all
    foreground = np.zeros((size, size), bool)
    foreground[:, :30] = True  # left half only
    gen = AlignmentGenerator(size)
    everything, _, _ = gen.word_patches(alpha)
    assert len(everything) == 9 + 16 + 25
    left, ov, _ = gen.word_patches(alpha, foreground)
    expected = numpy_pairs(alpha, size, (3, 4, 5), 0.5, 0.5, foreground)
    assert sorted(left.tolist()) == sorted(expected)
    # Level 3 cells are 20 px: columns 0 and 1 (x < 40) have >= 50% in x < 30.
    assert sorted(p for p in left.tolist() if p < 14) == [5, 6, 8, 9, 11, 12]


def test_region_threshold_is_relative_to_the_maximum():
    gen = AlignmentGenerator(64, region_threshold=0.5)
    alpha = np.zeros((4, 4), np.float32)
    alpha[1, 2] = 1.0
    up, region = gen.region(alpha)
    np.testing.assert_array_equal(region, up >= 0.5 * up.max())
    _, region_scaled = gen.region(alpha * 1e-3)
    np.testing.assert_array_equal(region, region_scaled)


def test_alignable_words():
    assert is_alignable("collar") and is_alignable("v") is True
    for word in ("the", "in", "with", "at", ".", ",", "-", "12", "3rd", "90s"):
        assert not is_alignable(word), word
    assert is_alignable("the", skip_stop_words=False)
    assert not is_alignable(".", skip_stop_words=False)


def test_align_matches_words_and_keeps_the_best_pairs():
    size = 60
    gen = AlignmentGenerator(size, max_pairs=5)
    left = np.zeros((5, 5), np.float32)
    left[:, 0] = 1.0
    right = np.zeros((5, 5), np.float32)
    right[:, 4] = 1.0
    raw = ["black", "jeans", "in", "black", ".", "zip", "at", "the", "front", "."]
    generated = ["black", "jeans", "with", "the", "belt", "black"]
    attention = np.stack([left, right, left, left, left, right])
    pairs = gen.align(generated, attention, raw, valid_word_indices={0, 1, 2, 3, 5})
    # "with", "the" are stop-words, "belt" is not in the text, word 8 is cut off.
    words = {(a.word_index, a.word) for a in pairs}
    assert words <= {(0, "black"), (3, "black"), (1, "jeans")}
    assert len(pairs) == 5
    assert [a.score for a in pairs] == sorted((a.score for a in pairs), reverse=True)
    # Without the cap: both occurrences of "black" get the patches of both maps.
    full = AlignmentGenerator(size).align(generated, attention, raw, {0, 1, 2, 3, 5})
    left_p = set(gen.word_patches(left)[0].tolist())
    right_p = set(gen.word_patches(right)[0].tolist())
    got = {}
    for a in full:
        got.setdefault(a.word_index, set()).add(a.patch_index)
    assert got == {0: left_p | right_p, 3: left_p | right_p, 1: right_p}
    # The kept pairs are the top 5 of the full list, in its order.
    assert pairs == full[:5]


def test_record_fields_pad_with_minus_one():
    pairs = [AlignmentPair(2, 17, 0.25, 0.8, "red"), AlignmentPair(0, 5, 0.1, 1.0, "x")]
    fields = AlignmentGenerator.record_fields(pairs)
    n = schema.MAX_ALIGNMENT_PAIRS
    assert fields["align_word_index"].shape == (n,)
    assert fields["align_word_index"][:3].tolist() == [2, 0, -1]
    assert fields["align_patch_index"][:3].tolist() == [17, 5, -1]
    np.testing.assert_allclose(fields["align_score"][:3], [0.25, 0.1, 0.0])
    assert (fields["align_word_index"][2:] == -1).all()


def test_levels_must_exist_in_the_layout():
    with pytest.raises(ValueError, match="levels"):
        AlignmentGenerator(64, levels=(3, 6))
