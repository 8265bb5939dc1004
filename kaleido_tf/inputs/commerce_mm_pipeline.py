"""CommerceMM's two online input pipelines: image-text pairs and Omni-Retrieval tuples.

Both read pixel folders (``prepare-pixels``: JPEG + teacher targets + text;
``prepare-omni``: source/target tuples with presence flags δ) and follow the
seeding and resume contract of ``pipeline.make_dataset``: per epoch e the shard
files are shuffled, interleaved and shuffled in windows by stateless ops keyed by
(seed, e); every random choice of an example comes from one stateless op keyed by
(seed, e, the example's record key); ``start_step`` resumes exactly where an
uninterrupted run would be; each input pipeline builds the one global stream and
keeps its share of every global batch, so the batches do not depend on the number
of replicas or workers.

Pixels: ``decode_image`` (shared with the offline teacher) returns float32 in
[0, 1]; the image encoder (``networks/image_encoder.py``) takes RGB in [0, 255].
The pipelines hand it ``round(255 · decode_image(jpeg))``, i.e. exactly the JPEG's
uint8 values as float32, and grey is ``GREY_PIXEL`` = 127.5, the mid-grey of
[0, 255] (``systems/commerce_mm.py``): the MIM patches and a missing Omni image
(stored as a 128-grey JPEG) both become 127.5.

Image-text example (``IMAGE_TEXT_BATCH_KEYS``): the record's text, its pixels,
its teacher targets, an MLM copy of the text (each word-piece token chosen with
``token_mask_rate``, at most M, all replaced by [MASK] or BERT's 80/10/10;
``region_masking.TokenMasker``) and a copy of the pixels with ``mim_grey_ratio``
of the ``patch_size`` patches greyed (``patch_greying.grey_patches``).

Omni example (``OMNI_BATCH_KEYS``): the tuple's source and target texts, pixels and
presence flags, unchanged (no per-example randomness besides the shuffle).

Reference: CommerceMM (Yu et al., KDD 2022) §3.2-§3.3; spec
imagebert_interbert_commercemm.md §4.2, §4.4 (MIM mask unit, grey value), §4.5,
§4.11 #4, #5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.checks import check_finite
from kaleido_tf.inputs.parse import parse_record
from kaleido_tf.inputs.patch_greying import grey_patches
from kaleido_tf.inputs.pipeline import _no_autograph, epoch_records, make_dataset
from kaleido_tf.inputs.pixel_records import decode_image
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.inputs.region_masking import TokenMasker
from kaleido_tf.manifest import manifest_fields, read_manifest

# Mid-grey of [0, 255] pixels (= systems/commerce_mm.GREY_PIXEL).
GREY_PIXEL = 127.5
MASK_POLICIES = {"all_mask": (1.0, 0.0), "bert_80_10_10": (0.8, 0.1)}
IMAGE_TEXT_KEYS = (
    "input_ids",
    "input_mask",
    "pixels",
    "masked_input_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "greyed_pixels",
    "teacher_features",
    "teacher_clusters",
)
OMNI_KEYS = tuple(
    f"{side}_{key}"
    for side in ("source", "target")
    for key in (
        "input_ids",
        "input_mask",
        "pixels",
        "text_present",
        "image_present",
    )
)
_SALT = 0x436F6D6D65726365  # "Commerce": separates these seeds from other users'
_RECORD_KEYS = (
    "image_id",
    "input_ids",
    "word_index",
    "image_jpeg",
    "teacher_features",
    "teacher_clusters",
)


def pixels_0_255(jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """``float32 [S, S, 3]``: the JPEG's RGB values in [0, 255] (integers)."""
    return tf.round(decode_image(jpeg, image_size) * 255.0)


class _PixelFolderInputs:
    """What both pipelines share: the manifest, shards and the per-epoch stream
    (``make_dataset``'s ``epoch_dataset`` contract, one example per record)."""

    examples_per_record = 1

    def _open(self, data_dir, layout_type, command: str, seed: int) -> None:
        self.data_dir = Path(data_dir)
        self.seed = int(seed)
        self.manifest = read_manifest(self.data_dir)
        layout = schema.get_layout(self.manifest["layout"])
        if not isinstance(layout, layout_type):
            raise DataError(
                f"{self.data_dir} holds {self.manifest['layout']!r} records: "
                f"prepare it with `kaleido-tf {command}`"
            )
        self.image_size = int(self.manifest["image_size"])
        self.max_seq_length = int(self.manifest["max_seq_length"])
        self.files = [str(self.data_dir / s["file"]) for s in self.manifest["shards"]]
        missing = [f for f in self.files if not Path(f).is_file()]
        if missing:
            raise DataError(
                f"{self.data_dir}: shard {missing[0]} listed in manifest.json is "
                f"missing: rerun `kaleido-tf {command}`"
            )
        self.num_records = sum(int(s["records"]) for s in self.manifest["shards"])

    def _check_image_size(self, image_size: int | None) -> None:
        if image_size is not None and image_size != self.image_size:
            raise DataError(
                f"{self.data_dir} has {self.image_size} x {self.image_size} images, "
                f"but the config needs commerce_mm.image_size {image_size}: set it "
                "or rebuild the folder with crop.output_size to match"
            )

    def example(self, serialized: tf.Tensor, epoch: tf.Tensor) -> dict:
        """One serialised record -> its example (defined by ``ImageTextInputs``
        and ``OmniInputs``; this base class only reads and shuffles records)."""
        raise NotImplementedError(f"{type(self).__name__} defines no example()")

    def epoch_dataset(
        self,
        epoch: tf.Tensor,
        training: bool,
        num_pipelines: int = 1,
        pipeline_id: int = 0,
        shuffle_buffer_size: int = 1024,
        group_size: int = 32,
        skip_records: tf.Tensor | int = 0,
        skip_examples: tf.Tensor | int | None = None,
    ) -> tf.data.Dataset:
        """Groups of ``group_size`` examples of one epoch (see ``make_dataset``)."""
        auto = tf.data.AUTOTUNE
        epoch = tf.cast(epoch, tf.int64)
        ds = epoch_records(
            self.files,
            tf.constant([self.seed, _SALT + 1], tf.int64),
            epoch,
            training,
            num_pipelines,
            pipeline_id,
            shuffle_buffer_size,
        )
        # One example per record, each a function of its own record only: a
        # resume inside a group skips records, not group heads.
        skip = tf.cast(skip_records, tf.int64)
        if skip_examples is not None:
            skip += tf.cast(skip_examples, tf.int64)
        ds = ds.skip(skip)
        ds = ds.map(
            _no_autograph(lambda s: self.example(s, epoch)),
            num_parallel_calls=auto,
            deterministic=True,
        )
        return ds.batch(group_size)


class ImageTextInputs(_PixelFolderInputs):
    """Image-text examples of a ``prepare-pixels`` folder.

    Args:
        data_dir: A ``kaleido-tf prepare-pixels`` output folder.
        seed: Seed of every random choice.
        patch_size: Side of a greyed MIM patch in pixels (ViT: its patch, 16;
            ResNet-50: 32, the 7 x 7 grid's cells).
        grey_ratio: Fraction of patches greyed (0.5).
        token_mask_rate: Probability that a word-piece token is chosen for MLM.
        max_masked_tokens: M, MLM slots per example.
        mask_policy: ``all_mask`` (every chosen token -> [MASK], CommerceMM as
            written) or ``bert_80_10_10``.
        image_size: If given, the S the model needs (checked).
        teacher_feature_dim: If given, the D_t the model needs (checked).
        num_clusters: If given, the K_c the model needs (checked).
        max_seq_length: If given, the largest T the model takes (checked).
        corrupt: Make the MLM and MIM copies (False: they equal the clean inputs,
            with no MLM slot).

    Raises:
        DataError: Not a pixel folder, or a mismatch with what the model needs.
        ValueError: Unknown ``mask_policy``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        seed: int = 0,
        patch_size: int = 16,
        grey_ratio: float = 0.5,
        token_mask_rate: float = 0.15,
        max_masked_tokens: int = 20,
        mask_policy: str = "all_mask",
        image_size: int | None = None,
        teacher_feature_dim: int | None = None,
        num_clusters: int | None = None,
        max_seq_length: int | None = None,
        corrupt: bool = True,
    ) -> None:
        if mask_policy not in MASK_POLICIES:
            raise ValueError(
                f"unknown mask_policy {mask_policy!r}: valid are {list(MASK_POLICIES)}"
            )
        self._open(data_dir, schema.PixelLayout, "prepare-pixels", seed)
        self._check_image_size(image_size)
        checks = (
            ("feature_dim", teacher_feature_dim, "commerce_mm.teacher_feature_dim"),
            ("num_clusters", num_clusters, "commerce_mm.num_clusters"),
        )
        for key, wanted, name in checks:
            if wanted is not None and int(self.manifest.get(key, -1)) != wanted:
                raise DataError(
                    f"{self.data_dir} has {key}={self.manifest.get(key)}, but the "
                    f"config's {name} is {wanted}: set it to the data's value"
                )
        if max_seq_length is not None and self.max_seq_length > max_seq_length:
            raise DataError(
                f"{self.data_dir}: text length {self.max_seq_length} exceeds "
                f"model.encoder.max_sequence_length {max_seq_length}"
            )
        if self.image_size % patch_size:
            raise DataError(
                f"{self.data_dir}: image size {self.image_size} is not a multiple of "
                f"the MIM patch size {patch_size}: rebuild with another "
                "crop.output_size"
            )
        self.table = ProductTable.load(self.data_dir, self.manifest)
        self.patch_size = patch_size
        self.grey_ratio = grey_ratio
        self.corrupt = corrupt
        mask_prob, random_prob = MASK_POLICIES[mask_policy]
        self.masker = TokenMasker(
            self.max_seq_length,
            mask_id=self.table.mask_id,
            random_token_ids=self.table.random_token_ids,
            max_masked_tokens=max_masked_tokens,
            rate=token_mask_rate,
            mask_token_prob=mask_prob,
            random_token_prob=random_prob,
        )
        available = manifest_fields(self.manifest)
        self.fields = {k: v for k, v in available.items() if k in _RECORD_KEYS}

    def example_seed(self, image_id: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
        """int64 [2]: the stateless seed of one example, from (seed, epoch, id)."""
        key = tf.strings.to_hash_bucket_fast(image_id, 2**63 - 1)
        seed = tf.constant([self.seed, _SALT], tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(epoch, tf.int64))
        return tf.random.experimental.stateless_fold_in(seed, key)

    def example(self, serialized: tf.Tensor, epoch: tf.Tensor) -> dict:
        """One record -> one example with ``IMAGE_TEXT_KEYS``."""
        record = check_finite(parse_record(serialized, self.fields))
        input_ids = tf.cast(record["input_ids"], tf.int32)
        pixels = pixels_0_255(record["image_jpeg"], self.image_size)
        out = {
            "input_ids": input_ids,
            "input_mask": tf.cast(input_ids != self.table.pad_id, tf.int32),
            "pixels": pixels,
            "teacher_features": record["teacher_features"],
            "teacher_clusters": record["teacher_clusters"],
        }
        m = self.masker.max_masked_tokens
        if not self.corrupt:
            out.update(
                {
                    "masked_input_ids": input_ids,
                    "masked_lm_positions": tf.zeros([m], tf.int32),
                    "masked_lm_ids": tf.zeros([m], tf.int32),
                    "masked_lm_weights": tf.zeros([m], tf.float32),
                    "greyed_pixels": pixels,
                }
            )
            return {k: out[k] for k in IMAGE_TEXT_KEYS}
        seeds = tf.random.experimental.stateless_split(
            self.example_seed(record["image_id"], epoch), num=2
        )
        uniforms = tf.random.stateless_uniform(
            [1, self.masker.num_uniforms], seeds[0], dtype=tf.float64
        )
        masked = self.masker.apply(
            input_ids[tf.newaxis], record["word_index"][tf.newaxis], uniforms
        )
        out["masked_input_ids"] = masked["input_ids"][0]
        for key in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
            out[key] = masked[key][0]
        out["greyed_pixels"], _ = grey_patches(
            pixels, self.patch_size, seeds[1], ratio=self.grey_ratio, grey=GREY_PIXEL
        )
        return {k: out[k] for k in IMAGE_TEXT_KEYS}


class OmniInputs(_PixelFolderInputs):
    """Omni-Retrieval examples of a ``prepare-omni`` folder.

    Args:
        data_dir: A ``kaleido-tf prepare-omni`` output folder.
        seed: Seed of the shuffle.
        image_size: If given, the S the model needs (checked).
        max_seq_length: If given, the largest T the model takes (checked).

    Raises:
        DataError: Not an Omni-tuple folder, or a mismatch with the model.
    """

    def __init__(
        self,
        data_dir: str | Path,
        seed: int = 0,
        image_size: int | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        self._open(data_dir, schema.OmniTupleLayout, "prepare-omni", seed)
        self._check_image_size(image_size)
        if max_seq_length is not None and self.max_seq_length > max_seq_length:
            raise DataError(
                f"{self.data_dir}: text length {self.max_seq_length} exceeds "
                f"model.encoder.max_sequence_length {max_seq_length}"
            )
        self.fields = manifest_fields(self.manifest)

    def example(self, serialized: tf.Tensor, epoch: tf.Tensor) -> dict:
        """One tuple -> one example with ``OMNI_KEYS`` (missing image: all
        ``GREY_PIXEL``; missing text: ``[CLS] [SEP]``)."""
        del epoch
        record = parse_record(serialized, self.fields)
        out = {}
        for side, prefix in (("source", "src"), ("target", "tgt")):
            ids = tf.cast(record[f"{prefix}_input_ids"], tf.int32)
            has_image = tf.cast(record[f"{prefix}_has_image"], tf.int32)
            pixels = pixels_0_255(record[f"{prefix}_image_jpeg"], self.image_size)
            out[f"{side}_input_ids"] = ids
            out[f"{side}_input_mask"] = tf.cast(ids != 0, tf.int32)
            out[f"{side}_pixels"] = tf.where(has_image > 0, pixels, GREY_PIXEL)
            has_text = tf.cast(record[f"{prefix}_has_text"], tf.int32)
            out[f"{side}_text_present"] = has_text
            out[f"{side}_image_present"] = has_image
        return out


def _batched(inputs, global_batch_size, start_step, training, input_context, group):
    return make_dataset(
        inputs,
        global_batch_size,
        training=training,
        input_context=input_context,
        start_step=start_step,
        group_size=group,
    )


def build_image_text_dataset(
    data_dir: str | Path,
    config: Any,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """CommerceMM image-text batches of a ``prepare-pixels`` folder.

    Args:
        data_dir: A ``kaleido-tf prepare-pixels`` output folder.
        config: An ExperimentConfig with ``system: commerce_mm`` (its
            ``commerce_mm`` section, or the defaults; ``train.seed``).
        global_batch_size: Examples per global step; with ``input_context`` the
            dataset yields per-replica batches.
        start_step: Global steps of this dataset already consumed (resume).
        training: Shuffle per epoch, repeat forever, drop the remainder, and
            mask; False: one pass in file order, clean copies (no MLM slot, no
            greyed patch).
        input_context: ``tf.distribute.InputContext`` (per-replica batches).

    Returns:
        Dicts with ``IMAGE_TEXT_KEYS`` (shapes in ``systems/commerce_mm.py``
        ``IMAGE_TEXT_BATCH_KEYS``).

    Raises:
        DataError: Not a pixel folder, or a mismatch with the config.
    """
    from kaleido_tf.config.experiment import CommerceMMConfig

    cmm = config.commerce_mm or CommerceMMConfig()
    inputs = ImageTextInputs(
        data_dir,
        seed=config.train.seed,
        patch_size=cmm.mim_patch_size,
        grey_ratio=cmm.mim_grey_ratio,
        token_mask_rate=cmm.token_mask_rate,
        max_masked_tokens=cmm.max_masked_tokens,
        mask_policy=cmm.mlm_mask_policy,
        image_size=cmm.image_size,
        teacher_feature_dim=cmm.teacher_feature_dim,
        num_clusters=cmm.num_clusters,
        max_seq_length=config.model.encoder.max_sequence_length,
        corrupt=training,
    )
    return _batched(inputs, global_batch_size, start_step, training, input_context, 32)


def build_omni_dataset(
    data_dir: str | Path,
    config: Any,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """CommerceMM Omni-Retrieval batches of a ``prepare-omni`` folder.

    Args: as ``build_image_text_dataset``; ``start_step`` counts Omni steps.

    Returns:
        Dicts with ``OMNI_KEYS`` (shapes in ``systems/commerce_mm.py``
        ``OMNI_BATCH_KEYS``).

    Raises:
        DataError: Not an Omni-tuple folder, or a mismatch with the config.
    """
    from kaleido_tf.config.experiment import CommerceMMConfig

    cmm = config.commerce_mm or CommerceMMConfig()
    inputs = OmniInputs(
        data_dir,
        seed=config.train.seed,
        image_size=cmm.image_size,
        max_seq_length=config.model.encoder.max_sequence_length,
    )
    return _batched(inputs, global_batch_size, start_step, training, input_context, 32)


def examples_per_epoch(data_dir: str | Path) -> int:
    """Records (= examples) of a pixel or Omni folder."""
    manifest = read_manifest(data_dir)
    return sum(int(s["records"]) for s in manifest["shards"])
