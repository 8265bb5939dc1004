"""AGM and random masking on fixed alignment tables, over many seeds."""

import numpy as np
import pytest

from kaleido_tf.inputs.masking import AGMMasker

T = 32
PAD, CLS, SEP, MASK = 0, 2, 3, 4
RANDOM_IDS = np.arange(5, 60, dtype=np.int32)  # ids a token may become
MULTI_PIECE = (3, 8, 15)  # words with two WordPieces
NUM_WORDS = 24  # word budget: round(0.15 * 24) = 4
L3, L4, L5 = range(5, 14), range(14, 30), range(30, 55)


def text() -> tuple[np.ndarray, np.ndarray]:
    """input_ids, word_index [T]: [CLS] 24 words (27 pieces) [SEP] [PAD]..."""
    words = [w for w in range(NUM_WORDS) for _ in range(2 if w in MULTI_PIECE else 1)]
    word_index = np.full(T, -1, np.int32)
    word_index[1 : len(words) + 1] = words
    ids = np.full(T, PAD, np.int32)
    ids[0], ids[len(words) + 1] = CLS, SEP
    ids[1 : len(words) + 1] = 10 + np.arange(len(words))
    return ids, word_index


# Distinct words and cells, with enough pairs per level that AGM fills every
# budget from the pairs alone: level l has budget_l + word budget pairs or more.
RICH = (
    [(w, 5 + w) for w in range(5)]
    + [(5 + i, 14 + i) for i in range(6)]
    + [(11 + i, 30 + i) for i in range(7)]
    + [(20, 0), (21, 2), (30, 40), (22, -1)]  # ignored: levels 1-2, no such word
)
# Overlapping pairs: word 0 is aligned to every level-3 cell (masking it would
# leave no level-3 patch for the budget); cell 30 is shared by words 2, 3, 4.
BLOCKING = [(0, c) for c in L3] + [
    (1, 14),
    (2, 30),
    (3, 30),
    (4, 30),
    (5, 31),
    (5, 32),
    (6, 8),
    (7, 20),
]


def run(pairs, n, seed, masker=None, use_pairs=True):
    """Masks the fixed text with alignment table ``pairs`` for n uniform rows."""
    masker = masker or AGMMasker(T, MASK, RANDOM_IDS)
    ids, word_index = text()
    aw = np.full(64, -1, np.int32)
    ap = np.full(64, -1, np.int32)
    for j, (w, p) in enumerate(pairs):
        aw[j], ap[j] = w, p
    uniforms = np.random.default_rng(seed).random((n, masker.num_uniforms))
    masks = masker.select(
        np.tile(word_index, (n, 1)),
        np.tile(aw, (n, 1)),
        np.tile(ap, (n, 1)),
        np.full(n, use_pairs),
        uniforms,
    )
    out = masker.replace_tokens(np.tile(ids, (n, 1)), masks["token_masked"], uniforms)
    out.update(masks)
    return {k: v.numpy() for k, v in out.items()}


def valid_pairs(pairs):
    return [(w, p) for w, p in pairs if 0 <= w < NUM_WORDS and 5 <= p < 55]


def check_invariants(out, pairs, budgets=(1, 2, 3), word_budget=4, m=10):
    ids, word_index = text()
    wm, pm, tm = out["word_masked"], out["patch_masked"], out["token_masked"]
    for level, budget in zip((L3, L4, L5), budgets):
        assert (pm[:, level].sum(1) == budget).all()
    assert not pm[:, :5].any()  # levels 1-2 never masked
    assert (wm.sum(1) <= word_budget).all()
    assert not wm[:, NUM_WORDS:].any()  # only words of the text
    # Whole words: a token is masked iff its word is.
    expect = np.where(word_index >= 0, wm[:, np.maximum(word_index, 0)], False)
    np.testing.assert_array_equal(tm, expect)
    assert not tm[:, word_index < 0].any()  # [CLS], [SEP], [PAD] never masked
    assert (tm.sum(1) <= m).all()
    # Never both sides of an alignment pair.
    for w, p in valid_pairs(pairs):
        assert not (wm[:, w] & pm[:, p]).any(), (w, p)
    # masked_lm_* list exactly the masked tokens, ascending, with original ids.
    weights = out["masked_lm_weights"]
    assert (weights.sum(1) == tm.sum(1)).all()
    for i in range(len(tm)):
        real = weights[i] == 1
        np.testing.assert_array_equal(
            out["masked_lm_positions"][i][real], np.flatnonzero(tm[i])
        )
        np.testing.assert_array_equal(
            out["masked_lm_ids"][i][real], ids[np.flatnonzero(tm[i])]
        )
        assert (out["masked_lm_positions"][i][~real] == 0).all()
        assert (out["masked_lm_ids"][i][~real] == 0).all()
        # Unmasked tokens are unchanged.
        np.testing.assert_array_equal(out["input_ids"][i][~tm[i]], ids[~tm[i]])


def test_rich_table_fills_every_budget_from_the_pairs():
    out = run(RICH, 300, seed=0)
    check_invariants(out, RICH)
    # Aligned pairs first: with enough pairs, nothing is left to the fill-up.
    np.testing.assert_array_equal(out["word_masked"], out["pair_word_masked"])
    np.testing.assert_array_equal(out["patch_masked"], out["pair_patch_masked"])
    assert (out["word_masked"].sum(1) == 4).all()
    assert (out["pairs_used"] == 10).all()  # 4 words + 1 + 2 + 3 patches
    aligned_words = {w for w, _ in valid_pairs(RICH)}
    aligned_cells = {p for _, p in valid_pairs(RICH)}
    assert set(np.flatnonzero(out["word_masked"].any(0))) <= aligned_words
    assert set(np.flatnonzero(out["patch_masked"].any(0))) <= aligned_cells
    # The coin: both sides of the level-5 pairs get used across seeds.
    assert out["word_masked"][:, 11:18].any() and out["patch_masked"][:, 30:37].any()


def test_overlapping_pairs_never_mask_both_sides():
    out = run(BLOCKING, 300, seed=1)
    check_invariants(out, BLOCKING)
    # Masking word 0 would block all 9 level-3 cells: AGM refuses it.
    assert not out["word_masked"][:, 0].any()
    assert (out["pairs_used"] >= 1).all()  # the first pair always masks a side
    # A masked cell 30 blocks words 2, 3, 4 (and vice versa), also in the fill-up.
    both = out["patch_masked"][:, 30:31] & out["word_masked"][:, 2:5]
    assert not both.any()
    assert out["patch_masked"][:, 30].any() and out["word_masked"][:, 2:5].any()


def test_fill_up_uses_only_unaligned_words():
    sparse = [(0, 5), (1, 30)]
    out = run(sparse, 200, seed=2)
    check_invariants(out, sparse)
    # Pair phase: exactly one side of each of the two pairs.
    for w, p in sparse:
        np.testing.assert_array_equal(
            out["pair_word_masked"][:, w] ^ out["pair_patch_masked"][:, p],
            np.ones(200, bool),
        )
    assert (out["pairs_used"] == 2).all()
    # Budgets are still met exactly by random fill-up.
    assert (out["word_masked"].sum(1) == 4).all()
    filled = out["word_masked"] & ~out["pair_word_masked"]
    assert not filled[:, :2].any()  # the aligned words are never fill-up words


def test_random_mode_ignores_alignments():
    masker = AGMMasker(T, MASK, RANDOM_IDS, mode="random")
    out = run(RICH, 400, 3, masker)
    check_invariants(out, [])
    assert (out["pairs_used"] == 0).all()
    assert (out["word_masked"].sum(1) == 4).all()
    # Level-3 cells 5..9 are aligned; at random they hold 5/9 of the masks.
    share = out["patch_masked"][:, 5:10].sum() / out["patch_masked"][:, L3].sum()
    assert abs(share - 5 / 9) < 0.1
    # No pairs (or a negative pair) under AGM is exactly random masking.
    same = run(RICH, 400, 3, use_pairs=False)
    for key in ("word_masked", "patch_masked", "input_ids", "masked_lm_positions"):
        np.testing.assert_array_equal(out[key], same[key])


def test_replacement_is_80_10_10():
    out = run(RICH, 1500, seed=4)
    ids, _ = text()
    tm = out["token_masked"]
    new, old = out["input_ids"][tm], np.tile(ids, (len(tm), 1))[tm]
    n = len(new)
    assert n > 5000
    to_mask = np.mean(new == MASK)
    unchanged = np.mean(new == old)
    random = np.mean((new != MASK) & (new != old))
    # 4 standard deviations of a proportion over n draws; a random token equal
    # to the original counts as unchanged (1/55 of the 10%).
    assert abs(to_mask - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n)
    assert abs(random - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n) + 0.002
    assert abs(unchanged - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n) + 0.002
    assert np.isin(new[(new != MASK) & (new != old)], RANDOM_IDS).all()


def test_budgets_follow_the_arguments():
    masker = AGMMasker(
        T,
        MASK,
        RANDOM_IDS,
        mask_tokens=False,
        patch_budgets={3: 0, 4: 2, 5: 0},
    )
    out = run(RICH, 50, 5, masker)
    check_invariants(out, RICH, budgets=(0, 2, 0), word_budget=0)
    assert not out["token_masked"].any()
    assert (out["masked_lm_weights"] == 0).all()
    # The slot cap: 3 WordPiece slots, two-piece words included.
    masker = AGMMasker(T, MASK, RANDOM_IDS, max_masked_tokens=3)
    out = run(BLOCKING, 200, 6, masker)
    check_invariants(out, BLOCKING, m=3)
    assert out["masked_lm_positions"].shape == (200, 3)
    assert out["token_masked"].sum(1).max() == 3


def test_a_pure_function_of_the_uniforms():
    a = run(BLOCKING, 20, seed=7)
    b = run(BLOCKING, 20, seed=7)
    c = run(BLOCKING, 20, seed=8)
    for key in ("input_ids", "word_masked", "patch_masked", "pairs_used"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["patch_masked"], c["patch_masked"])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        AGMMasker(T, MASK, RANDOM_IDS, mode="span")
    with pytest.raises(ValueError, match="levels"):
        AGMMasker(T, MASK, RANDOM_IDS, patch_budgets={2: 1})
    with pytest.raises(ValueError, match="token_mask_rate"):
        AGMMasker(T, MASK, RANDOM_IDS, token_mask_rate=1.5)
