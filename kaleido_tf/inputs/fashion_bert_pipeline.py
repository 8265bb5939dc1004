"""FashionBERT's online inputs on the 8x8 grid: whole-word MLM, masked patches, ITM.

What differs from Kaleido-BERT's pipeline (``pipeline.py``) is only the group
transform: words are masked at random (no alignment, ``AGMMasker`` in ``random``
mode) and K of the 64 patches are zeroed for masked patch modelling. Reading,
shuffling, negatives, seeding, batching and resume are ``pipeline.py``'s
(``KaleidoPretrainInputs`` and ``make_dataset``).

Reference: FashionBERT (Gao et al., SIGIR 2020) §2.3; kaleido_fashionbert.md §3.1,
§3.3, F-Q5, F-Q6, F-Q9, F-Q10.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import tensorflow as tf

from kaleido_tf.inputs.masking import AGMMasker
from kaleido_tf.inputs.pipeline import KaleidoPretrainInputs, make_dataset

FASHION_TASKS = ("mlm", "itm", "mpm")
# Keys of every batch. B batch, T text, P patches (64), D features, M token slots,
# K masked patches.
FASHION_BATCH_KEYS = (
    "input_ids",  # int32 [B, T], after masking
    "input_mask",  # int32 [B, T], 1 = real token, 0 = padding
    "segment_ids",  # int32 [B, T], zeros ('T')
    "patch_features",  # float32 [B, P, D], the K masked patches zeroed
    "patch_boxes",  # float32 [B, P, 5], not read by FashionBERT (index positions)
    "patch_mask",  # int32 [B, P], 1 = real patch (all)
    "masked_lm_positions",  # int32 [B, M]
    "masked_lm_ids",  # int32 [B, M], original ids
    "masked_lm_weights",  # float32 [B, M], 1 = real slot, 0 = padding
    "itm_labels",  # int32 [B], 1 = text matches image (constants.ITM_MATCH)
    "mpm_positions",  # int32 [B, K], patch indices 0..P-1, ascending
    "mpm_targets",  # float32 [B, K, D], the unmasked features
    "mpm_weights",  # float32 [B, K], 1 = a masked patch to predict
)


def _check_tasks(tasks: Collection[str]) -> tuple[str, ...]:
    unknown = sorted(set(tasks) - set(FASHION_TASKS))
    if unknown:
        raise ValueError(
            f"unknown FashionBERT task ids {unknown}: valid ids are "
            f"{list(FASHION_TASKS)}"
        )
    return tuple(t for t in FASHION_TASKS if t in set(tasks))


class FashionBertPretrainInputs(KaleidoPretrainInputs):
    """FashionBERT's per-group transform on a grid8 prepared folder.

    Per example, from its own row of stateless uniform draws (so the masks are a
    pure function of (seed, epoch, example)):

    * Whole-word masking: ``max(1, round(token_mask_rate * words))`` whole words
      at random, never more than M WordPiece slots; each masked token becomes
      [MASK] 80%, a random token 10%, itself 10% (``AGMMasker``, random mode).
    * Masked patch modelling: the K patches with the largest draws (uniform
      without replacement) are set to zero; their original features are the
      targets.

    Args:
        data_dir: A ``kaleido-tf prepare`` (or ``import-easytransfer``) output
            folder with the ``grid8`` layout.
        tasks: Active ids among ``FASHION_TASKS``. Without ``itm`` only positive
            pairs are made.
        seed: Seed of every random choice.
        max_masked_tokens: M (F-Q6: 20).
        token_mask_rate: Fraction of words masked (F-Q6: 0.15).
        num_masked_patches: K (F-Q5: 10% of 64 = 6).
        corrupt: Mask at all (False: clean pairs for fine-tuning and evaluation).
        feature_dim: If given, the D the model needs (checked on the manifest).
        max_seq_length: If given, the T the model needs (checked).
        extra_keys: Record fields passed through to every example.

    Raises:
        DataError: Not a grid8 folder, or see ``KaleidoPretrainInputs``.
        ValueError: An unknown task id, or K outside 1..P.

    Reference: FashionBERT §2.3 ("mask out all the text tokens corresponding to a
    word at once", "randomly mask out patches with the probability of 10%",
    "patch features of masked-out patches are set to zero").

    Deviation: a fixed K per example (static shapes, F-Q5) instead of a 10%
    Bernoulli per patch; 15% of the words rather than of the tokens (as the
    Kaleido-BERT masker). Masks are redrawn every epoch ([C-F]: once, offline).
    """

    def __init__(
        self,
        data_dir: str | Path,
        tasks: Collection[str] = FASHION_TASKS,
        seed: int = 0,
        max_masked_tokens: int = 20,
        token_mask_rate: float = 0.15,
        num_masked_patches: int = 6,
        corrupt: bool = True,
        feature_dim: int | None = None,
        max_seq_length: int | None = None,
        extra_keys: Collection[str] = (),
    ) -> None:
        self.tasks = _check_tasks(tasks)
        self._open_data(
            data_dir,
            "grid8",
            seed,
            corrupt,
            feature_dim,
            max_seq_length,
            extra_keys,
            batch_keys=FASHION_BATCH_KEYS,
        )
        self._corrupt_record_keys = ()  # grid8 records carry no pixel variants
        p = self.layout.num_patches
        if not 1 <= num_masked_patches <= p:
            raise ValueError(
                f"num_masked_patches must be in 1..{p}, got {num_masked_patches}"
            )
        self.num_masked_patches = num_masked_patches
        self.masker = AGMMasker(
            self.table.max_seq_length,
            mask_id=self.table.mask_id,
            random_token_ids=self.table.random_token_ids,
            mode="random",
            mask_tokens="mlm" in self.tasks,
            patch_budgets={},
            max_masked_tokens=max_masked_tokens,
            token_mask_rate=token_mask_rate,
            layout=self.layout,
            max_pairs=1,
        )
        # The masker's draws, then one key per patch for MPM.
        self._num_uniforms = self.masker.num_uniforms + p

    def group_batch(self, records: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """G / k records' ``record_examples`` -> G examples' batch keys [G, ...]."""
        group = self._expand_records(records)
        input_ids = tf.cast(group["input_ids"], tf.int32)
        g = tf.shape(input_ids)[0]
        t, p = self.table.max_seq_length, self.layout.num_patches
        m, k = self.masker.max_masked_tokens, self.num_masked_patches
        features = group["patch_features"]  # [G, P, D]
        out = {
            "input_mask": tf.cast(input_ids != self.table.pad_id, tf.int32),
            "segment_ids": tf.zeros([g, t], tf.int32),
            "patch_boxes": group["patch_boxes"],
            "patch_mask": tf.ones([g, p], tf.int32),
            "itm_labels": group["itm_labels"],
            "input_ids": input_ids,
            "masked_lm_positions": tf.zeros([g, m], tf.int32),
            "masked_lm_ids": tf.zeros([g, m], tf.int32),
            "masked_lm_weights": tf.zeros([g, m], tf.float32),
            "mpm_positions": tf.tile(tf.range(k)[None, :], [g, 1]),
            "mpm_weights": tf.zeros([g, k], tf.float32),
        }
        if self.corrupt:
            u = group["uniforms"]
            n = self.masker.num_uniforms
            no_pairs = tf.fill([g, 1], -1)
            masks = self.masker.select(
                group["word_index"], no_pairs, no_pairs, tf.zeros([g], tf.bool), u
            )
            out.update(
                self.masker.replace_tokens(input_ids, masks["token_masked"], u[:, :n])
            )
            if "mpm" in self.tasks:
                keys = tf.cast(u[:, n : n + p], tf.float32)  # [G, P]
                chosen = tf.math.top_k(keys, k).indices  # [G, K]
                positions = tf.sort(chosen, axis=1)
                out["mpm_positions"] = positions
                out["mpm_weights"] = tf.ones([g, k], tf.float32)
        out["mpm_targets"] = tf.gather(features, out["mpm_positions"], batch_dims=1)
        if self.corrupt and "mpm" in self.tasks:
            # [G, P]: 1 = masked patch; its input feature is set to zero.
            masked = tf.reduce_max(tf.one_hot(out["mpm_positions"], p), axis=1)
            features = features * (1.0 - masked)[:, :, None]
        out["patch_features"] = features
        out.update({key: group[key] for key in self.extra_keys})
        return {key: out[key] for key in (*FASHION_BATCH_KEYS, *self.extra_keys)}


def examples_per_epoch(data_dir: str | Path, tasks: Collection[str]) -> int:
    """Examples one epoch yields (image records x 2 with ITM, x 1 without)."""
    from kaleido_tf.inputs.pipeline import examples_per_epoch as count

    return count(data_dir, ("itm",) if "itm" in _check_tasks(tasks) else ())


def build_fashion_bert_dataset(
    data_dir: str | Path,
    global_batch_size: int,
    tasks: Collection[str] = FASHION_TASKS,
    seed: int = 0,
    max_masked_tokens: int = 20,
    token_mask_rate: float = 0.15,
    num_masked_patches: int = 6,
    training: bool = True,
    corrupt: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    feature_dim: int | None = None,
    max_seq_length: int | None = None,
    **kwargs,
) -> tf.data.Dataset:
    """FashionBERT pretraining batches (``FASHION_BATCH_KEYS``) of a grid8 folder.

    Args:
        data_dir, tasks, seed, max_masked_tokens, token_mask_rate,
            num_masked_patches, feature_dim, max_seq_length: See
            ``FashionBertPretrainInputs``.
        global_batch_size, training, input_context, start_step: See
            ``pipeline.build_pretrain_dataset``.
        corrupt: Mask (default ``training``).
        **kwargs: Further ``pipeline.make_dataset`` arguments (``epoch``,
            ``num_epochs``, ``shuffle_buffer_size``, ``group_size``).

    Returns:
        A dataset of dicts with exactly ``FASHION_BATCH_KEYS``.
    """
    inputs = FashionBertPretrainInputs(
        data_dir,
        tasks=tasks,
        seed=seed,
        max_masked_tokens=max_masked_tokens,
        token_mask_rate=token_mask_rate,
        num_masked_patches=num_masked_patches,
        corrupt=training if corrupt is None else corrupt,
        feature_dim=feature_dim,
        max_seq_length=max_seq_length,
    )
    return make_dataset(
        inputs,
        global_batch_size,
        training=training,
        input_context=input_context,
        start_step=start_step,
        **kwargs,
    )
