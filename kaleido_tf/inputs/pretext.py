"""Aligned kaleido patch modeling (AKPM) inputs: the five feature-space corruptions.

Kaleido-BERT §3.6 Task #3 applies one sub-task per kaleido level: rotation (level
1), jigsaw (level 2), camouflage (level 3), grey (level 4) and blank (level 5).
Rotation and grey need pixels, so ``kaleido-tf prepare`` stores those variants in
every record; this module only picks among them. Jigsaw, camouflage and blanking
are feature operations, exactly equivalent to doing them on pixels because each
patch is embedded on its own (DESIGN.md §2).

As in ``masking.py``, every random choice comes from the example's own row of
uniform draws (one stateless op per record, seeded per example), and
``KaleidoPretext.apply`` works on a group of examples at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import tensorflow as tf

from kaleido_tf import schema

PRETEXT_TASKS = ("rr", "jps", "cp", "g2cm", "b2cm")
NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees counter-clockwise
# All 4! permutations of the level-2 cells, identity first, in lexicographic order:
# JPS label i <-> permutation JIGSAW_PERMUTATIONS[i] (K-Q15).
JIGSAW_PERMUTATIONS = np.asarray(list(itertools.permutations(range(4))), np.int32)
NUM_GREY = 2  # level-4 patches greyed per example (AGM budget)
NUM_BLANK = 3  # level-5 patches blanked per example (AGM budget)


def jigsaw_permutation(label: int) -> tuple[int, ...]:
    """The permutation of JPS class ``label`` (0..23): slot s shows cell perm[s]."""
    return tuple(int(x) for x in JIGSAW_PERMUTATIONS[label])


def jigsaw_label(permutation: Sequence[int]) -> int:
    """The JPS class of ``permutation`` (its lexicographic index among the 24)."""
    hits = np.flatnonzero((JIGSAW_PERMUTATIONS == np.asarray(permutation)).all(1))
    if len(hits) != 1:
        raise ValueError(f"{permutation!r} is not a permutation of (0, 1, 2, 3)")
    return int(hits[0])


class KaleidoPretext:
    """Applies the AKPM corruptions of the active tasks to a group of examples.

    Per task (kaleido_fashionbert.md §4.5, K-Q14..K-Q17):

    - ``rr`` (level 1): label r ~ U{0..3}; the level-1 slot gets the unrotated
      patch (r = 0) or ``rotated_features[r - 1]`` (rotated by r x 90 degrees
      counter-clockwise). ``rr_labels`` = r.
    - ``jps`` (level 2): permutation pi ~ U(S4), identity included; slot s
      receives the feature of cell pi(s); boxes (positions) stay canonical.
      ``jps_labels`` = lexicographic index of pi (``jigsaw_label``).
    - ``cp`` (level 3): the masked level-3 slot (chosen by ``AGMMasker``) gets the
      feature of a random level-3 cell of an image of *another product* from the
      same group of examples. ``cp_labels`` = slot index 0..8.
    - ``g2cm`` (level 4): the 2 masked level-4 slots get their greyed features
      (``grey_features``); targets = the original colour features.
    - ``b2cm`` (level 5): the 3 masked level-5 slots are zeroed; targets = the
      original features.

    A task that is off changes nothing (K-Q25): its labels are 0 (for ``rr`` and
    ``jps`` that is also the truth: unrotated, identity) and its weights 0.

    Args:
        tasks: Active task ids; ids outside ``PRETEXT_TASKS`` are ignored.
        layout: The patch layout (must be the kaleido 1x1..5x5 layout).

    Example:
        >>> pretext = KaleidoPretext(["rr", "jps", "cp", "g2cm", "b2cm"])
        >>> u = tf.random.stateless_uniform([g, pretext.num_uniforms], seed)
        >>> out = pretext.apply(group, patch_masked, u)

    Reference: Kaleido-BERT §3.6 Eq. 3-7, footnote 6 ("The camouflaged patch is
    the same scale as the patch randomly selected from the other product").

    Deviation: the camouflage source is not drawn from the whole training set but
    from the other examples of the same group (``group_size`` consecutive
    examples of the shuffled stream, ``pipeline.py``): a uniformly drawn example
    whose image belongs to a different product, and a uniformly drawn level-3 cell
    of it. This needs no feature bank and keeps every example a pure function of
    its group. A group that holds a single product (only possible with tiny data
    or groups) falls back to another example of the group, and a group of one to
    its own image: the only cases where the source is not another product (the
    label stays valid; the camouflage is weaker, possibly none).
    """

    num_uniforms = 4  # rotation, permutation, camouflage source and its cell

    def __init__(
        self,
        tasks: Collection[str],
        layout: schema.Layout | str = "kaleido",
    ) -> None:
        self.layout = schema.get_layout(layout) if isinstance(layout, str) else layout
        if self.layout.grids != (1, 2, 3, 4, 5):
            raise ValueError(
                f"AKPM needs the kaleido layout (grids 1..5), got {self.layout.name!r}"
            )
        self.tasks = tuple(t for t in PRETEXT_TASKS if t in set(tasks))
        self._permutations = tf.constant(JIGSAW_PERMUTATIONS)

    @staticmethod
    def _pick(uniform: tf.Tensor, n: int) -> tf.Tensor:
        """int32: a uniform draw in [0, 1) mapped to 0..n-1."""
        return tf.minimum(tf.cast(tf.floor(uniform * n), tf.int32), n - 1)

    def apply(
        self,
        group: Mapping[str, tf.Tensor],
        patch_masked: tf.Tensor,
        uniforms: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """Corrupts the features of a group of G examples.

        Args:
            group: ``patch_features`` float32 [G, P, D], ``rotated_features``
                float32 [G, 3, D], ``grey_features`` float32 [G, 16, D] and
                ``product_id`` int64 [G] (product of the image).
            patch_masked: bool [G, P]. 1 = masked by AGM (1 cell on level 3,
                2 on level 4, 3 on level 5 for the active tasks).
            uniforms: float [G, 4]. Each example's draws in [0, 1) (stateless,
                seeded per example): the rotation r = floor(4 u0), the jigsaw
                class floor(24 u1), the camouflage source u2 and its level-3
                cell floor(9 u3).

        Returns:
            ``patch_features`` float32 [G, P, D] (after the corruptions),
            ``rr_labels``, ``jps_labels``, ``cp_labels`` int32 [G],
            ``g2cm_positions`` int32 [G, 2] (absolute, 14..29),
            ``g2cm_targets`` float32 [G, 2, D], ``g2cm_weights`` float32 [G, 2],
            ``b2cm_positions`` int32 [G, 3] (absolute, 30..54),
            ``b2cm_targets`` float32 [G, 3, D], ``b2cm_weights`` float32 [G, 3].
            Weights: 1 = a real corrupted patch, 0 = none (task off).
        """
        lay = self.layout
        features = tf.convert_to_tensor(group["patch_features"])
        g = tf.shape(features)[0]
        rr_label = self._pick(uniforms[:, 0], NUM_ROTATIONS)
        jps_label = self._pick(uniforms[:, 1], len(JIGSAW_PERMUTATIONS))
        donor_uniform = tf.cast(uniforms[:, 2], tf.float32)
        donor_cell = self._pick(uniforms[:, 3], 9)
        zero_labels = tf.zeros([g], tf.int32)
        out: dict[str, tf.Tensor] = {}
        # The corrupted rows are written with one scatter into the features
        # (a few rows per example) instead of rebuilding all P rows per task.
        rows: list[tf.Tensor] = []  # int32 [G, n]: patch indices written
        values: list[tf.Tensor] = []  # float32 [G, n, D]: what they get

        def level(grid: int) -> tf.Tensor:
            return features[:, lay.level_slice(grid)]

        # Level 1: rotation recognition (0 = the patch itself).
        if "rr" in self.tasks:
            variants = tf.concat([level(1), group["rotated_features"]], axis=1)
            rows.append(tf.zeros([g, 1], tf.int32))
            values.append(tf.gather(variants, rr_label, batch_dims=1)[:, None])
            out["rr_labels"] = rr_label
        else:
            out["rr_labels"] = zero_labels

        # Level 2: jigsaw; slot s shows cell perm[s].
        if "jps" in self.tasks:
            perm = tf.gather(self._permutations, jps_label)  # [G, 4]
            start = lay.level_slice(2).start
            rows.append(tf.tile(tf.range(start, start + 4)[None, :], [g, 1]))
            values.append(tf.gather(level(2), perm, batch_dims=1))
            out["jps_labels"] = jps_label
        else:
            out["jps_labels"] = zero_labels

        # Level 3: camouflage with a cell of another product's image.
        level3 = level(3)
        if "cp" in self.tasks:
            slot, has_slot = _first_masked(patch_masked[:, lay.level_slice(3)])
            donor_feat = self._donor_features(
                group["product_id"], level3, donor_uniform, donor_cell
            )
            own = tf.gather(level3, slot, batch_dims=1)
            rows.append((slot + lay.level_slice(3).start)[:, None])
            values.append(tf.where(has_slot[:, None], donor_feat, own)[:, None])
            out["cp_labels"] = tf.where(has_slot, slot, 0)
        else:
            out["cp_labels"] = zero_labels

        # Level 4: grey-to-colour; level 5: blank-to-colour.
        for task, grid, k in (("g2cm", 4, NUM_GREY), ("b2cm", 5, NUM_BLANK)):
            start = lay.level_slice(grid).start
            rel, weights = _masked_slots(patch_masked[:, lay.level_slice(grid)], k)
            targets = tf.gather(level(grid), rel, batch_dims=1)  # [G, k, D]
            if task in self.tasks:
                if task == "g2cm":
                    new = tf.gather(group["grey_features"], rel, batch_dims=1)
                else:
                    new = tf.zeros_like(targets)
                rows.append(rel + start)
                values.append(tf.where(weights[..., None], new, targets))
            else:
                weights = tf.zeros_like(weights)
            out[f"{task}_positions"] = rel + start
            out[f"{task}_weights"] = tf.cast(weights, tf.float32)
            out[f"{task}_targets"] = targets * out[f"{task}_weights"][..., None]

        if rows:
            rows_t = tf.concat(rows, axis=1)  # [G, n]
            batch_index = tf.broadcast_to(tf.range(g)[:, None], tf.shape(rows_t))
            index = tf.reshape(tf.stack([batch_index, rows_t], axis=-1), [-1, 2])
            update = tf.concat(values, axis=1)
            features = tf.tensor_scatter_nd_update(
                features, index, tf.reshape(update, [-1, features.shape[-1]])
            )
        out["patch_features"] = features
        return out

    @staticmethod
    def _donor_features(
        product_id: tf.Tensor,
        level3: tf.Tensor,
        uniform: tf.Tensor,
        cell: tf.Tensor,
    ) -> tf.Tensor:
        """float32 [G, D]: a level-3 cell of another product's image, per example.

        Args:
            product_id: int64 [G]. Product of each example's image.
            level3: float32 [G, 9, D]. Uncorrupted level-3 features.
            uniform: float32 [G]. Picks the donor among the candidates.
            cell: int32 [G]. The donor's cell.
        """
        g = tf.shape(product_id)[0]
        other = ~tf.eye(g, dtype=tf.bool)
        candidates = tf.not_equal(product_id[:, None], product_id[None, :])  # [G, G]
        has_other_product = tf.reduce_any(candidates, axis=1, keepdims=True)
        candidates = tf.where(has_other_product, candidates, other)
        candidates = tf.where(
            tf.reduce_any(candidates, axis=1, keepdims=True), candidates, ~other
        )
        count = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)  # >= 1
        r = tf.cast(tf.floor(uniform * tf.cast(count, tf.float32)), tf.int32)
        r = tf.minimum(r, count - 1)
        # The r-th candidate (0-based) of each row.
        rank = tf.cumsum(tf.cast(candidates, tf.int32), axis=1) - 1
        donor = tf.argmax(
            tf.cast(candidates & tf.equal(rank, r[:, None]), tf.int32),
            axis=1,
            output_type=tf.int32,
        )
        return tf.gather_nd(level3, tf.stack([donor, cell], axis=1))


def _first_masked(mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(int32 [G] first masked index, bool [G] any masked) of a bool [G, n]."""
    slots, weights = _masked_slots(mask, 1)
    return slots[:, 0], weights[:, 0]


def _masked_slots(mask: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The first k masked indices of each row of ``mask`` (bool [G, n]).

    Returns:
        int32 [G, k] indices (ascending; unmasked fill-ins follow the masked
        ones) and bool [G, k] (1 = the index is masked).
    """
    n = mask.shape[1]
    idx = tf.range(n)[None, :]
    order = tf.argsort(tf.where(mask, idx, n + idx), axis=1)[:, :k]
    return order, tf.gather(mask, order, batch_dims=1)
