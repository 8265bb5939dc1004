"""InterBERT's online pretraining inputs on a region folder: MSM, MRM, ITM-hn.

ImageBERT's region pipeline (``region_pipeline.RegionPretrainInputs``: reading,
seeding, grouping, resume, caption-swap negatives, static shapes) with InterBERT's
choices swapped in:

- text: Masked Segment Modeling spans (``span_masking.SpanMasker``) instead of
  per-token masking;
- regions: IoU-group masking (``region_overlap_masking.RegionOverlapMasker``):
  anchors 10%, every region with IoU > 0.4 to an anchor zeroed, targets the
  detector classes (or distributions);
- ITM: one caption-swap negative per positive (50% / 50%), of which
  ``hard_negative_fraction`` (20%) come from the mined TF-IDF pool
  (``hard_negative_sampler.HardNegativeSampler``); no image swaps.

Masking runs on every pair; the objectives weight the masked losses by the ITM
label (positives only).

Reference: InterBERT (Lin et al. 2020) §3.2-§3.3; imagebert_interbert_commercemm.md
§3.4, §3.11 #9-#12, #14.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.inputs import region_pipeline
from kaleido_tf.inputs.hard_negative_sampler import HardNegativeSampler
from kaleido_tf.inputs.region_overlap_masking import RegionOverlapMasker
from kaleido_tf.inputs.region_pipeline import RegionPretrainInputs
from kaleido_tf.inputs.span_masking import SpanMasker

INTER_BERT_TASKS = ("msm", "mrm", "itm")
HARD_NEGATIVES_FILE = "hard_negatives.npz"  # data_prep.hard_negatives.tfidf_miner
# Keys of every batch. B batch, T text, R regions, D features, M MSM slots, K MRM
# slots, C detector classes.
INTER_BERT_BATCH_KEYS = (
    "input_ids",  # int32 [B, T], after MSM replacement
    "input_mask",  # int32 [B, T], 1 = real token, 0 = padding
    "segment_ids",  # int32 [B, T], zeros (the image segment is the encoder's)
    "patch_features",  # float32 [B, R, D], MRM-masked regions zeroed
    "patch_boxes",  # float32 [B, R, 5], (x1/W, y1/H, x2/W, y2/H, area), kept
    "patch_mask",  # int32 [B, R], 1 = real region
    "masked_lm_positions",  # int32 [B, M], MSM positions (text indices)
    "masked_lm_ids",  # int32 [B, M], original ids
    "masked_lm_weights",  # float32 [B, M], 1 = a masked token
    "mrm_positions",  # int32 [B, K], region indices 0..R-1 (image stream: +1)
    "mrm_labels",  # int32 [B, K], detector class of each masked region
    "mrm_weights",  # float32 [B, K], 1 = a masked region
    "itm_labels",  # int32 [B], 1 = text matches image (constants.ITM_MATCH)
    "itm_hard",  # int32 [B], 1 = a negative drawn from the hard pool
)
# Only with mrm_target="distribution".
MRM_DISTRIBUTION_KEY = "mrm_label_probs"  # float32 [B, K, C]


def _check_tasks(tasks: Collection[str]) -> tuple[str, ...]:
    return region_pipeline._check_tasks(tasks, INTER_BERT_TASKS, "InterBERT")


class _SpanTokenMasker:
    """``SpanMasker`` behind ``region_masking.TokenMasker``'s ``apply`` contract."""

    def __init__(self, masker: SpanMasker) -> None:
        self.masker = masker
        self.max_masked_tokens = masker.max_masked_tokens
        self.num_uniforms = masker.num_uniforms

    def apply(self, input_ids, word_index, uniforms):
        del word_index  # spans run over WordPieces, specials excluded by id
        u = uniforms[:, : self.num_uniforms]
        masked = self.masker.select(input_ids, u)["token_masked"]
        return self.masker.replace_tokens(input_ids, masked, u)


class _AllRegions:
    """Stands in for ``RegionMasker``: masks nothing and lists every region slot,
    so the parent's group transform gathers every region's class (and
    distribution); ``InterBertPretrainInputs.group_batch`` then masks by IoU
    groups with the boxes, which ``RegionMasker.apply`` does not receive."""

    def __init__(self, num_regions: int, num_uniforms: int) -> None:
        self.max_masked_regions = num_regions
        self.num_uniforms = num_uniforms

    def apply(self, features, patch_mask, uniforms):
        del uniforms
        g = tf.shape(features)[0]
        r = self.max_masked_regions
        return {
            "features": features,
            "positions": tf.tile(tf.range(r)[tf.newaxis], [g, 1]),
            "weights": tf.cast(patch_mask, tf.float32),
        }


class _RecordingSampler:
    """A ``HardNegativeSampler`` whose last ``sample`` call (inside the traced
    per-record map) leaves its hard/random flag in ``last_hard``."""

    def __init__(self, sampler: HardNegativeSampler) -> None:
        self.sampler = sampler
        self.last_hard = None

    def sample(self, product_index, uniform):
        negative, self.last_hard = self.sampler.sample_with_source(
            product_index, uniform
        )
        return negative


class InterBertPretrainInputs(RegionPretrainInputs):
    """InterBERT's per-record and per-group transform on a region folder.

    Per image record: the positive pair and, with ITM, one negative (1:1, the
    caption replaced, never the image). The negative's product comes from the
    mined TF-IDF pool of the positive's product with probability
    ``hard_negative_fraction`` (``HardNegativeSampler``; a product with an empty
    pool falls back to the ordinary same-sub-category ``NegativeSampler``), else
    from ``NegativeSampler``.

    Then, on every example (positives and negatives alike): MSM spans
    (``SpanMasker``: 10% anchors, spans of 1-3 WordPieces, 80/10/10, [CLS]/[SEP]/
    [PAD] never masked, at least one anchor per text) and MRM IoU groups
    (``RegionOverlapMasker``: 10% anchor regions, every real region with IoU >
    ``iou_threshold`` to an anchor zeroed, locations kept), with the masked
    regions' detector classes (and distributions with ``mrm_target=
    "distribution"``) as targets.

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder with a region layout.
        tasks: Active ids among ``INTER_BERT_TASKS``. Without ``itm`` only
            positive pairs are made.
        layout: If given, the region layout the model needs (checked).
        seed: Seed of every random choice.
        max_masked_tokens: M.
        anchor_rate: MSM anchor probability (0.1).
        max_span_length: Longest MSM span (3).
        max_masked_regions: K; 0 = R.
        region_anchor_rate: MRM anchor probability (0.1).
        iou_threshold: MRM IoU threshold (0.4).
        mrm_target: ``label`` or ``distribution`` (needs ``region_class_probs``).
        num_classes: If given, the C the model needs (checked on the manifest).
        hard_negative_fraction: Share of negatives from the hard pool (0.2); > 0
            with ITM needs ``<data_dir>/hard_negatives.npz``.
        corrupt: Mask at all (False: clean pairs, all slot weights 0).
        feature_dim: If given, the D the model needs (checked).
        max_seq_length: If given, the T the model needs (checked).
        extra_keys: Record fields passed through to every example.

    Raises:
        DataError: ``hard_negative_fraction`` > 0 with ITM but no (or a stale)
            ``hard_negatives.npz`` (the message names the mining command and the
            setting that turns hard negatives off), or see
            ``RegionPretrainInputs``.
        ValueError: An unknown task id.

    Reference: InterBERT §3.2 (MSM, MRM), §3.3 (ITM-hn: "20% of negatives use
    these hard captions"); imagebert_interbert_commercemm.md §3.4.

    Deviation: random (non-hard) negatives come from the same sub-category
    (``NegativeSampler``, FashionBERT's protocol) rather than the whole corpus.
    """

    def __init__(
        self,
        data_dir: str | Path,
        tasks: Collection[str] = INTER_BERT_TASKS,
        layout: str | None = None,
        seed: int = 0,
        max_masked_tokens: int = 12,
        anchor_rate: float = 0.1,
        max_span_length: int = 3,
        max_masked_regions: int = 0,
        region_anchor_rate: float = 0.1,
        iou_threshold: float = 0.4,
        mrm_target: str = "label",
        num_classes: int | None = None,
        hard_negative_fraction: float = 0.2,
        corrupt: bool = True,
        feature_dim: int | None = None,
        max_seq_length: int | None = None,
        extra_keys: Collection[str] = (),
    ) -> None:
        self.inter_bert_tasks = _check_tasks(tasks)
        # The parent's task ids: MRM reads the classes the way MOC does.
        region_tasks = ["mlm"]
        if "mrm" in self.inter_bert_tasks:
            region_tasks.append("moc")
        if "itm" in self.inter_bert_tasks:
            region_tasks.append("itm")
        super().__init__(
            data_dir,
            tasks=region_tasks,
            layout=layout,
            seed=seed,
            max_masked_tokens=max_masked_tokens,
            image_swap_fraction=0.0,  # InterBERT replaces the caption only
            moc_target=mrm_target,
            num_classes=num_classes,
            corrupt=corrupt,
            feature_dim=feature_dim,
            max_seq_length=max_seq_length,
            extra_keys=extra_keys,
        )
        self.mrm_target = mrm_target
        table = self.table
        span = SpanMasker(
            table.max_seq_length,
            mask_id=table.mask_id,
            random_token_ids=table.random_token_ids,
            special_token_ids=(table.pad_id, table.cls_id, table.sep_id),
            max_masked_tokens=max_masked_tokens,
            anchor_rate=anchor_rate,
            max_span_length=max_span_length,
        )
        r = self.layout.num_patches
        self.overlap_masker = RegionOverlapMasker(
            r,
            max_masked_regions=max_masked_regions,
            anchor_rate=region_anchor_rate,
            iou_threshold=iou_threshold,
        )
        self.token_masker = _SpanTokenMasker(span)
        self.region_masker = _AllRegions(r, self.overlap_masker.num_uniforms)
        self.mask_text = "msm" in self.inter_bert_tasks
        self.mask_regions = "mrm" in self.inter_bert_tasks
        self._num_masking = span.num_uniforms + self.overlap_masker.num_uniforms
        self._num_uniforms = self._num_masking
        self.hard_negative_fraction = float(hard_negative_fraction)
        self.hard_sampler = None
        if self.with_negatives and self.hard_negative_fraction > 0:
            self.hard_sampler = HardNegativeSampler(
                table,
                _load_pools(self.data_dir),
                self.hard_negative_fraction,
                base=self.sampler,
            )
            self.sampler = _RecordingSampler(self.hard_sampler)
        # ``batch_keys`` stays the parent's (its group transform returns them);
        # ``output_keys`` are this pipeline's.
        self.output_keys = INTER_BERT_BATCH_KEYS + (
            (MRM_DISTRIBUTION_KEY,) if self.with_probs else ()
        )

    # ------------------------------------------------------------- per record
    def record_examples(
        self, record: dict[str, tf.Tensor], epoch: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """The parent's examples plus ``itm_hard`` (int32 [k]: 1 = the negative
        came from the hard pool)."""
        ex = super().record_examples(record, epoch)
        hard = tf.zeros([self.examples_per_record], tf.int32)
        if isinstance(self.sampler, _RecordingSampler):
            flag = tf.cast(self.sampler.last_hard, tf.int32)
            hard = tf.concat([[0], tf.reshape(flag, [1])], axis=0)
        ex["itm_hard"] = hard
        return ex

    # -------------------------------------------------------------- per group
    def group_batch(self, records: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """G / k records -> G examples' ``INTER_BERT_BATCH_KEYS`` [G, ...]."""
        hard = tf.reshape(records["itm_hard"], [-1])
        out = super().group_batch(records)  # MSM done; every region listed
        g = tf.shape(out["input_ids"])[0]
        kk = self.overlap_masker.num_slots
        result = {
            key: out[key]
            for key in (
                "input_ids",
                "input_mask",
                "segment_ids",
                "patch_features",
                "patch_boxes",
                "patch_mask",
                "masked_lm_positions",
                "masked_lm_ids",
                "masked_lm_weights",
                "itm_labels",
            )
        }
        result["itm_hard"] = hard
        result["mrm_positions"] = tf.zeros([g, kk], tf.int32)
        result["mrm_labels"] = tf.zeros([g, kk], tf.int32)
        result["mrm_weights"] = tf.zeros([g, kk], tf.float32)
        if self.with_probs:
            result[MRM_DISTRIBUTION_KEY] = tf.zeros(
                [g, kk, self.num_classes], tf.float32
            )
        if self.corrupt and self.mask_regions:
            # The parent listed every region slot: moc_labels / moc_target_probs
            # hold every region's class / distribution (-1 padding -> 0 there,
            # never masked: patch_mask is 0).
            u = tf.reshape(records["uniforms"], [g, -1])
            n_tok = self.token_masker.num_uniforms
            u_regions = tf.cast(u[:, n_tok : self._num_masking], tf.float32)
            selected = self.overlap_masker.select(
                out["patch_boxes"], out["patch_mask"], u_regions
            )
            masked = self.overlap_masker.apply(
                out["patch_features"],
                selected["region_masked"],
                out["moc_labels"],
                out.get("moc_target_probs"),
            )
            result["patch_features"] = masked["patch_features"]
            result["mrm_positions"] = masked["mrm_positions"]
            result["mrm_labels"] = masked["mrm_labels"]
            result["mrm_weights"] = masked["mrm_weights"]
            if self.with_probs:
                result[MRM_DISTRIBUTION_KEY] = masked["mrm_label_probs"]
        result.update({key: out[key] for key in self.extra_keys})
        return {key: result[key] for key in (*self.output_keys, *self.extra_keys)}


def _load_pools(data_dir: Path):
    """The mined pools of ``data_dir``, with a message that says what to do."""
    from data_prep.hard_negatives.tfidf_miner import load_hard_negatives

    if not (data_dir / HARD_NEGATIVES_FILE).is_file():
        raise DataError(
            f"{data_dir / HARD_NEGATIVES_FILE} not found: InterBERT draws "
            "hard ITM negatives from it; mine them with `kaleido-tf mine-negatives "
            f"--data {data_dir}`, or set inter_bert.hard_negative_fraction=0 for "
            "random negatives only"
        )
    return load_hard_negatives(data_dir)


def examples_per_epoch(data_dir: str | Path, tasks: Collection[str]) -> int:
    """Examples one epoch yields (image records x 2 with ITM, x 1 without)."""
    return region_pipeline._count_examples(data_dir, _check_tasks(tasks))


def build_inter_bert_dataset(
    data_dir: str | Path,
    global_batch_size: int,
    tasks: Collection[str] = INTER_BERT_TASKS,
    **kwargs,
) -> tf.data.Dataset:
    """InterBERT pretraining batches (``INTER_BERT_BATCH_KEYS``) of a region folder.

    Args:
        data_dir, tasks: See ``InterBertPretrainInputs``.
        global_batch_size: See ``pipeline.build_pretrain_dataset``.
        **kwargs: ``region_pipeline.build_region_dataset``'s batching arguments
            (``training``, ``corrupt``, ``input_context``, ``start_step``,
            ``epoch``, ``num_epochs``, ``shuffle_buffer_size``, ``group_size``)
            and further ``InterBertPretrainInputs`` arguments.

    Returns:
        A dataset of dicts with exactly ``INTER_BERT_BATCH_KEYS`` (plus
        ``mrm_label_probs`` with ``mrm_target="distribution"``, and
        ``extra_keys``).
    """
    return region_pipeline.build_region_dataset(
        data_dir,
        global_batch_size,
        tasks=tasks,
        inputs_class=InterBertPretrainInputs,
        **kwargs,
    )


__all__ = [
    "INTER_BERT_BATCH_KEYS",
    "INTER_BERT_TASKS",
    "InterBertPretrainInputs",
    "build_inter_bert_dataset",
    "examples_per_epoch",
]
