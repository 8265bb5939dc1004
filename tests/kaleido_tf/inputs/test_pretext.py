"""AKPM corruptions against numpy: rotation, jigsaw, camouflage, grey, blank."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.inputs.pretext import (
    JIGSAW_PERMUTATIONS,
    PRETEXT_TASKS,
    KaleidoPretext,
    jigsaw_label,
    jigsaw_permutation,
)

G, P, D = 7, 55, 6


def group(seed=0, products=(1, 1, 2, 3, 3, 4, 5)):
    """A random group with 1 masked level-3, 2 level-4 and 3 level-5 patches."""
    rng = np.random.default_rng(seed)
    masked = np.zeros((G, P), bool)
    for i in range(G):
        masked[i, rng.choice(np.arange(5, 14), 1, replace=False)] = True
        masked[i, rng.choice(np.arange(14, 30), 2, replace=False)] = True
        masked[i, rng.choice(np.arange(30, 55), 3, replace=False)] = True
    g = {
        "patch_features": rng.normal(size=(G, P, D)).astype(np.float32),
        "rotated_features": rng.normal(size=(G, 3, D)).astype(np.float32),
        "grey_features": rng.normal(size=(G, 16, D)).astype(np.float32),
        "product_id": np.asarray(products, np.int64),
        "uniforms": rng.random((G, KaleidoPretext.num_uniforms)),
    }
    return g, masked


def apply(tasks, g, masked):
    out = KaleidoPretext(tasks).apply(g, tf.constant(masked), g["uniforms"])
    return {k: v.numpy() for k, v in out.items()}


def test_jigsaw_label_permutation_round_trip():
    perms = list(itertools.permutations(range(4)))
    assert len(JIGSAW_PERMUTATIONS) == 24
    for label, perm in enumerate(perms):
        assert jigsaw_permutation(label) == perm
        assert jigsaw_label(perm) == label
    assert jigsaw_permutation(0) == (0, 1, 2, 3)  # identity is class 0
    with pytest.raises(ValueError):
        jigsaw_label((0, 0, 1, 2))


def test_all_tasks_against_numpy():
    g, masked = group()
    out = apply(PRETEXT_TASKS, g, masked)
    f = g["patch_features"]
    new = out["patch_features"]
    rr = np.floor(g["uniforms"][:, 0] * 4).astype(int)
    jps = np.floor(g["uniforms"][:, 1] * 24).astype(int)
    np.testing.assert_array_equal(out["rr_labels"], rr)
    np.testing.assert_array_equal(out["jps_labels"], jps)
    for i in range(G):
        # RR: label 0 = the patch itself, r = rotated_features[r - 1].
        want = f[i, 0] if rr[i] == 0 else g["rotated_features"][i, rr[i] - 1]
        np.testing.assert_array_equal(new[i, 0], want)
        # JPS: slot s shows cell perm[s] of level 2.
        perm = jigsaw_permutation(int(jps[i]))
        for s in range(4):
            np.testing.assert_array_equal(new[i, 1 + s], f[i, 1 + perm[s]])
        # CP: the masked level-3 slot shows a level-3 cell of another product.
        slot = np.flatnonzero(masked[i, 5:14])[0]
        assert out["cp_labels"][i] == slot
        sources = [
            j
            for j in range(G)
            if g["product_id"][j] != g["product_id"][i]
            for c in range(9)
            if np.array_equal(new[i, 5 + slot], f[j, 5 + c])
        ]
        assert sources, f"example {i}: camouflage is not another product's cell"
        keep = [c for c in range(5, 14) if c != 5 + slot]
        np.testing.assert_array_equal(new[i, keep], f[i, keep])
        # G2CM: greyed inputs, colour targets, ascending absolute positions.
        pos = np.flatnonzero(masked[i, 14:30]) + 14
        np.testing.assert_array_equal(out["g2cm_positions"][i], pos)
        np.testing.assert_array_equal(new[i, pos], g["grey_features"][i, pos - 14])
        np.testing.assert_array_equal(out["g2cm_targets"][i], f[i, pos])
        keep = np.setdiff1d(np.arange(14, 30), pos)
        np.testing.assert_array_equal(new[i, keep], f[i, keep])
        # B2CM: zeros in, original features as targets.
        pos = np.flatnonzero(masked[i, 30:55]) + 30
        np.testing.assert_array_equal(out["b2cm_positions"][i], pos)
        assert (new[i, pos] == 0).all()
        np.testing.assert_array_equal(out["b2cm_targets"][i], f[i, pos])
        keep = np.setdiff1d(np.arange(30, 55), pos)
        np.testing.assert_array_equal(new[i, keep], f[i, keep])
    assert (out["g2cm_weights"] == 1).all() and (out["b2cm_weights"] == 1).all()


@pytest.mark.parametrize(
    "tasks", [(), ("rr",), ("jps", "g2cm"), ("cp", "b2cm"), ("rr", "jps", "cp")]
)
def test_inactive_tasks_leave_features_untouched(tasks):
    g, masked = group(seed=3)
    out = apply(tasks, g, masked)
    f = g["patch_features"]
    levels = {
        "rr": [0],
        "jps": range(1, 5),
        "cp": range(5, 14),
        "g2cm": range(14, 30),
        "b2cm": range(30, 55),
    }
    for task, cells in levels.items():
        if task in tasks:
            continue
        np.testing.assert_array_equal(out["patch_features"][:, cells], f[:, cells])
        if task in ("rr", "jps", "cp"):
            assert (out[f"{task}_labels"] == 0).all()
        else:
            assert (out[f"{task}_weights"] == 0).all()
            assert (out[f"{task}_targets"] == 0).all()
            assert out[f"{task}_positions"].shape == (G, 2 if task == "g2cm" else 3)


def test_camouflage_source_is_always_another_product():
    products = (8, 8, 8, 8, 8, 8, 9)  # only one example of product 9
    for seed in range(15):
        g, masked = group(seed, products)
        out = apply(["cp"], g, masked)
        f = g["patch_features"]
        for i in range(G):
            slot = out["cp_labels"][i]
            donors = {
                j
                for j in range(G)
                for c in range(9)
                if np.array_equal(out["patch_features"][i, 5 + slot], f[j, 5 + c])
            }
            assert donors, f"seed {seed}, example {i}: no camouflage source"
            assert all(products[j] != products[i] for j in donors)
            if i < 6:
                assert donors == {6}  # the only image of another product


def test_single_product_group_falls_back_to_another_example():
    g, masked = group(products=(4,) * G)
    out = apply(["cp"], g, masked)
    assert out["patch_features"].shape == (G, P, D)  # defined, no crash


def test_labels_cover_their_ranges():
    g, masked = group()
    grid = (np.arange(24) + 0.5) / 24  # an even grid of draws
    out = [
        apply(PRETEXT_TASKS, dict(g, uniforms=np.tile(u, (G, 4))), masked) for u in grid
    ]
    rr = [int(o["rr_labels"][0]) for o in out]
    jps = [int(o["jps_labels"][0]) for o in out]
    assert jps == list(range(24))
    assert rr == [r for r in range(4) for _ in range(6)]
