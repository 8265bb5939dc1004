"""ImageBERT's online pretraining inputs on a region folder (regions100 / regions36).

What differs from Kaleido-BERT's pipeline (``pipeline.py``) is the per-record and
per-group transform: the visual tokens are detector regions (``visual_tokens.py``),
ITM negatives replace the caption or the image, and text tokens and regions are
masked per token / per region (``region_masking.py``). Reading, shuffling, seeding,
batching, distribution and resume are ``pipeline.py``'s (``KaleidoPretrainInputs``
and ``make_dataset``).

Reference: ImageBERT (Qi et al., arXiv 2001.07966) §3.2-3.3;
imagebert_interbert_commercemm.md §2.2, §2.4.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.pipeline import KaleidoPretrainInputs, make_dataset
from kaleido_tf.inputs.region_masking import RegionMasker, TokenMasker
from kaleido_tf.inputs.visual_tokens import record_visual_keys, visual_inputs
from kaleido_tf.manifest import manifest_fields

REGION_TASKS = ("mlm", "moc", "mrfr", "itm")
# Keys of every batch. B batch, T text, R regions (P of the encoder), D features,
# M masked-token slots, K masked-region slots, C detector classes.
REGION_BATCH_KEYS = (
    "input_ids",  # int32 [B, T], after masking
    "input_mask",  # int32 [B, T], 1 = real token, 0 = padding
    "segment_ids",  # int32 [B, T], zeros (text; the image segment is the encoder's)
    "patch_features",  # float32 [B, R, D], masked regions zeroed (90%)
    "patch_boxes",  # float32 [B, R, 5], (x1/W, y1/H, x2/W, y2/H, area), kept
    "patch_mask",  # int32 [B, R], 1 = real region (from num_regions)
    "masked_lm_positions",  # int32 [B, M]
    "masked_lm_ids",  # int32 [B, M], original ids
    "masked_lm_weights",  # float32 [B, M], 1 = a masked token
    "itm_labels",  # int32 [B], 1 = text matches image (constants.ITM_MATCH)
    "moc_positions",  # int32 [B, K], region indices 0..R-1, ascending
    "moc_labels",  # int32 [B, K], the detector's class of each masked region
    "mrfr_positions",  # int32 [B, K], the same regions as moc_positions
    "mrfr_targets",  # float32 [B, K, D], the original (unmasked) features
    "masked_region_weights",  # float32 [B, K], 1 = a masked region
)
# Only with moc_target="distribution": the detector's class distributions.
MOC_DISTRIBUTION_KEY = "moc_target_probs"  # float32 [B, K, C]
_RECORD_KEYS = ("image_id", "product_id", "input_ids", "word_index")
_PROBS = "region_class_probs"


def _check_tasks(
    tasks: Collection[str],
    valid: tuple[str, ...] = REGION_TASKS,
    system: str = "ImageBERT",
) -> tuple[str, ...]:
    """``tasks`` in ``valid``'s order; ValueError (naming ``system``) on others."""
    unknown = sorted(set(tasks) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {system} task ids {unknown}: valid ids are {list(valid)}"
        )
    return tuple(t for t in valid if t in set(tasks))


class RegionPretrainInputs(KaleidoPretrainInputs):
    """ImageBERT's per-record and per-group transform on a region folder.

    Per image record: the positive pair (its own text) and, with ITM, one negative
    (1:1). The negative replaces the image with probability
    ``image_swap_fraction`` (the regions of another record of the same group of
    ``group_size`` examples, from another product; the donor is drawn from the
    example's own draws, so it is a pure function of seed, epoch and group), else
    the caption (the text of another product, ``NegativeSampler``). If the group
    holds no record of another product, the negative is a caption swap.

    Then, on every example, positives and negatives alike (so that masks do not
    tell the ITM head the label; the objectives drop masked losses of negatives):
    text tokens are masked 15%, 80/10/10 (``TokenMasker``); real regions 15%,
    zeroed 90% / kept 10%, locations kept (``RegionMasker``). MOC targets are the
    masked regions' ``region_classes`` (and ``region_class_probs`` with
    ``moc_target="distribution"``); MRFR targets their original features.

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder with a region layout.
        tasks: Active ids among ``REGION_TASKS``. Without ``itm`` only positive
            pairs are made.
        layout: If given, the region layout the model needs (checked).
        seed: Seed of every random choice.
        max_masked_tokens: M.
        token_mask_rate: Probability that a text token is masked (0.15).
        max_masked_regions: K.
        region_mask_rate: Probability that a real region is masked (0.15).
        region_zero_prob: Probability that a masked region is zeroed (0.9).
        image_swap_fraction: Share of negatives that replace the image (0.5).
        moc_target: ``label`` or ``distribution`` (needs ``region_class_probs``).
        num_classes: If given, the C the model needs (checked on the manifest).
        corrupt: Mask at all (False: clean pairs, all slot weights 0).
        feature_dim: If given, the D the model needs (checked).
        max_seq_length: If given, the T the model needs (checked).
        extra_keys: Record fields passed through to every example.

    Raises:
        DataError: Not a region folder, a mismatching layout, D, T or C, no
            class distributions for ``moc_target="distribution"``, or see
            ``KaleidoPretrainInputs``.
        ValueError: An unknown task id or an out-of-range rate.

    Reference: ImageBERT §3.3 ("we randomly sample negative sentences for each
    image and randomly sample negative images for each sentence"; "we only
    calculate all mask losses when the input image and text is related").

    Deviation: caption-swap negatives come from the same sub-category
    (``NegativeSampler``, FashionBERT's protocol) and image-swap donors from the
    shuffled group, rather than uniformly from the corpus. At most M tokens and K
    regions are masked per example (static shapes).
    """

    def __init__(
        self,
        data_dir: str | Path,
        tasks: Collection[str] = REGION_TASKS,
        layout: str | None = None,
        seed: int = 0,
        max_masked_tokens: int = 16,
        token_mask_rate: float = 0.15,
        max_masked_regions: int = 32,
        region_mask_rate: float = 0.15,
        region_zero_prob: float = 0.9,
        image_swap_fraction: float = 0.5,
        moc_target: str = "label",
        num_classes: int | None = None,
        corrupt: bool = True,
        feature_dim: int | None = None,
        max_seq_length: int | None = None,
        extra_keys: Collection[str] = (),
    ) -> None:
        self.tasks = _check_tasks(tasks)
        if moc_target not in ("label", "distribution"):
            raise ValueError(
                f"moc_target must be 'label' or 'distribution', got {moc_target!r}"
            )
        if not 0.0 <= image_swap_fraction <= 1.0:
            raise ValueError(
                f"image_swap_fraction must be in [0, 1], got {image_swap_fraction}"
            )
        self._open_data(
            data_dir,
            layout,
            seed,
            corrupt,
            feature_dim,
            max_seq_length,
            extra_keys,
            batch_keys=REGION_BATCH_KEYS,
        )
        if not isinstance(self.layout, schema.RegionLayout):
            raise DataError(
                f"{self.data_dir} has layout {self.layout.name!r}: ImageBERT reads "
                "detector regions; prepare the data with a region layout "
                "(regions100 or regions36)"
            )
        classes = int(self.manifest.get("num_classes", 0))
        if num_classes is not None and classes != num_classes:
            raise DataError(
                f"{self.data_dir} has num_classes={classes}, but the config needs "
                f"{num_classes}: set image_bert.num_classes={classes} or prepare "
                "the data with the model's detector"
            )
        self.num_classes = classes
        self.moc_target = moc_target
        self.with_probs = moc_target == "distribution"
        if self.with_probs and not self.manifest.get("class_distribution", False):
            raise DataError(
                f"{self.data_dir}: records carry no region_class_probs, which "
                "moc_target 'distribution' needs: use moc_target 'label' or "
                "prepare the data with class distributions"
            )
        # Record fields: text, regions, classes (and distributions if used).
        self._corrupt_record_keys = ()  # region records carry no pixel variants
        self._visual_record_keys = (*record_visual_keys(self.layout), "region_classes")
        if self.with_probs:
            self._visual_record_keys += (_PROBS,)
        self.fields = {
            k: v
            for k, v in manifest_fields(self.manifest).items()
            if k in _RECORD_KEYS
            or k in self._visual_record_keys
            or k in self.extra_keys
        }
        self._record_level = (*self._visual_record_keys, "product_id", *self.extra_keys)
        self.image_swap_fraction = float(image_swap_fraction)
        self.batch_keys = REGION_BATCH_KEYS + (
            (MOC_DISTRIBUTION_KEY,) if self.with_probs else ()
        )
        self.token_masker = TokenMasker(
            self.table.max_seq_length,
            mask_id=self.table.mask_id,
            random_token_ids=self.table.random_token_ids,
            max_masked_tokens=max_masked_tokens,
            rate=token_mask_rate,
        )
        self.region_masker = RegionMasker(
            self.layout.num_patches,
            max_masked_regions=max_masked_regions,
            rate=region_mask_rate,
            zero_prob=region_zero_prob,
        )
        self.mask_text = "mlm" in self.tasks
        self.mask_regions = "moc" in self.tasks or "mrfr" in self.tasks
        # Per example: token draws then region draws (the base class adds the
        # caption-swap draw; the swap coin and donor draw are seeded apart, so
        # that clean ITM pairs get them too).
        self._num_masking = (
            self.token_masker.num_uniforms + self.region_masker.num_uniforms
        )
        self._num_uniforms = self._num_masking

    # ------------------------------------------------------------- per record
    def record_examples(
        self, record: dict[str, tf.Tensor], epoch: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One parsed record -> its k examples (positive first).

        Per-example keys ([k, ...]): ``input_ids`` and ``word_index`` (the
        negative's are a caption-swap text), ``itm_labels``, ``image_swap``
        (bool: the negative takes another record's regions instead, decided in
        ``group_batch``), ``donor_draw`` (float32, picks that record) and
        ``uniforms`` (the masking draws). Record keys (regions, classes,
        ``product_id``) stay single.
        """
        # The base class: the caption-swap negative, the masking draws, the
        # record keys (``_visual_record_keys``); then the image-swap draws.
        ex = super().record_examples(record, epoch)
        k = self.examples_per_record
        key = tf.strings.to_hash_bucket_fast(record["image_id"], 2**63 - 1)
        seed = tf.constant([self.seed, _SWAP_SALT], tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(epoch, tf.int64))
        seed = tf.random.experimental.stateless_fold_in(seed, key)
        draws = tf.random.stateless_uniform([k, 2], seed, dtype=tf.float32)
        is_negative = tf.range(k) > 0
        ex["image_swap"] = is_negative & (draws[:, 0] < self.image_swap_fraction)
        ex["donor_draw"] = draws[:, 1]
        return ex

    # -------------------------------------------------------------- per group
    def group_batch(self, records: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """G / k records' ``record_examples`` -> G examples' batch keys [G, ...].

        Example k r + j is record r's example j (j = 0 the positive).
        """
        group = self._expand_records(records)
        k = self.examples_per_record
        g = tf.shape(group["input_ids"])[0]
        num_records = g // k
        t = self.table.max_seq_length
        m = self.token_masker.max_masked_tokens
        kk = self.region_masker.max_masked_regions
        record_of = tf.range(g) // k  # [G]

        # Image swap: the donor is the first record, in a cyclic order starting
        # at a random offset, whose product differs; none -> caption swap.
        products = group["product_id"][::k] if k > 1 else group["product_id"]
        source = record_of
        input_ids = tf.cast(group["input_ids"], tf.int32)
        word_index = tf.cast(group["word_index"], tf.int32)
        if k > 1:
            n = tf.cast(num_records, tf.float32)
            start = tf.cast(tf.floor(group["donor_draw"] * n), tf.int32)  # [G]
            steps = tf.range(num_records)[None, :]  # [1, R']
            candidates = (record_of[:, None] + start[:, None] + steps) % num_records
            other = tf.not_equal(
                tf.gather(products, candidates), tf.gather(products, record_of)[:, None]
            )  # [G, R']
            first = tf.argmax(tf.cast(other, tf.int32), axis=1, output_type=tf.int32)
            donor = tf.gather(candidates, first, batch_dims=1)
            swap = group["image_swap"] & tf.reduce_any(other, axis=1)
            source = tf.where(swap, donor, record_of)
            # An image swap keeps the record's own text (its positive's).
            own = record_of * k
            input_ids = tf.where(swap[:, None], tf.gather(input_ids, own), input_ids)
            word_index = tf.where(swap[:, None], tf.gather(word_index, own), word_index)
        regions = {
            name: tf.gather(group[name], source * k)
            for name in self._visual_record_keys
        }
        visual = visual_inputs(regions, self.layout)
        features = visual["patch_features"]
        out = {
            "input_mask": tf.cast(input_ids != self.table.pad_id, tf.int32),
            "segment_ids": tf.zeros([g, t], tf.int32),
            "patch_boxes": visual["patch_boxes"],
            "patch_mask": visual["patch_mask"],
            "itm_labels": group["itm_labels"],
            "input_ids": input_ids,
            "masked_lm_positions": tf.zeros([g, m], tf.int32),
            "masked_lm_ids": tf.zeros([g, m], tf.int32),
            "masked_lm_weights": tf.zeros([g, m], tf.float32),
            "moc_positions": tf.zeros([g, kk], tf.int32),
            "masked_region_weights": tf.zeros([g, kk], tf.float32),
            "patch_features": features,
        }
        if self.corrupt:
            u = group["uniforms"]
            n_tok = self.token_masker.num_uniforms
            if self.mask_text:
                out.update(self.token_masker.apply(input_ids, word_index, u[:, :n_tok]))
            if self.mask_regions:
                masked = self.region_masker.apply(
                    features, visual["patch_mask"], u[:, n_tok : self._num_masking]
                )
                out["patch_features"] = masked["features"]
                out["moc_positions"] = masked["positions"]
                out["masked_region_weights"] = masked["weights"]
        positions = out["moc_positions"]
        classes = tf.gather(regions["region_classes"], positions, batch_dims=1)
        # A slot on a padded region (class -1) has nothing to predict.
        out["masked_region_weights"] *= tf.cast(classes >= 0, tf.float32)
        out["moc_labels"] = tf.maximum(classes, 0)
        out["mrfr_positions"] = positions
        out["mrfr_targets"] = tf.gather(features, positions, batch_dims=1)
        if self.with_probs:
            out[MOC_DISTRIBUTION_KEY] = tf.gather(
                regions[_PROBS], positions, batch_dims=1
            )
        out.update({key: group[key] for key in self.extra_keys})
        return {key: out[key] for key in (*self.batch_keys, *self.extra_keys)}


_SWAP_SALT = 0x496D616765  # "Image": the negative's swap coin and donor draw


def examples_per_epoch(data_dir: str | Path, tasks: Collection[str]) -> int:
    """Examples one epoch yields (image records x 2 with ITM, x 1 without)."""
    return _count_examples(data_dir, _check_tasks(tasks))


def _count_examples(data_dir: str | Path, tasks: tuple[str, ...]) -> int:
    """Examples one epoch yields for checked ``tasks`` (x 2 with ``itm``)."""
    from kaleido_tf.inputs.pipeline import examples_per_epoch as count

    return count(data_dir, ("itm",) if "itm" in tasks else ())


def build_region_dataset(
    data_dir: str | Path,
    global_batch_size: int,
    tasks: Collection[str] = REGION_TASKS,
    training: bool = True,
    corrupt: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    epoch: int = 0,
    num_epochs: int | None = None,
    shuffle_buffer_size: int = 1024,
    group_size: int = 32,
    inputs_class: type[RegionPretrainInputs] = RegionPretrainInputs,
    **kwargs,
) -> tf.data.Dataset:
    """ImageBERT pretraining batches (``REGION_BATCH_KEYS``) of a region folder.

    Args:
        data_dir, tasks: See ``RegionPretrainInputs``.
        global_batch_size, training, input_context, start_step, epoch,
            num_epochs, shuffle_buffer_size, group_size: See
            ``pipeline.build_pretrain_dataset``; ``group_size`` is also the pool
            of image-swap donors.
        corrupt: Mask (default ``training``).
        inputs_class: ``RegionPretrainInputs`` or a subclass (InterBERT's).
        **kwargs: Further ``RegionPretrainInputs`` arguments (``layout``,
            ``seed``, the masking rates and slot counts, ``image_swap_fraction``,
            ``moc_target``, ``num_classes``, ``feature_dim``, ``max_seq_length``,
            ``extra_keys``).

    Returns:
        A dataset of dicts with exactly ``REGION_BATCH_KEYS`` (plus
        ``moc_target_probs`` with ``moc_target="distribution"``, and
        ``extra_keys``).
    """
    inputs = inputs_class(
        data_dir,
        tasks=tasks,
        corrupt=training if corrupt is None else corrupt,
        **kwargs,
    )
    return make_dataset(
        inputs,
        global_batch_size,
        epoch=epoch,
        num_epochs=num_epochs,
        training=training,
        input_context=input_context,
        start_step=start_step,
        shuffle_buffer_size=shuffle_buffer_size,
        group_size=group_size,
    )
