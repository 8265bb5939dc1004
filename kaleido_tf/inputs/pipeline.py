"""The online Kaleido-BERT pretraining input pipeline (tf.data), DESIGN.md §1-2.

Per epoch e (re-drawn every epoch, a pure function of ``seed``, e and the data)::

    shard files (shuffled per epoch) -> interleave -> shard by input pipeline
      -> window shuffle (stateless) -> parse -> per record: ITM negative drawn,
      one row of uniform draws per example -> group of G examples: AGM masks,
      80/10/10, AKPM corruptions -> rebatch to the batch size

Every random choice of an example comes from one stateless op seeded by (seed,
epoch, hash of its ``image_id``); the positive and the negative pair of a record
take rows 0 and 1. The same seed gives the same batches, whatever the parallelism
or the batch size (STYLE.md §2.9 pitfall 5); the model stays a pure function of
the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf import constants, schema
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.checks import check_finite
from kaleido_tf.inputs.masking import AGMMasker
from kaleido_tf.inputs.negatives import NegativeSampler
from kaleido_tf.inputs.parse import parse_record
from kaleido_tf.inputs.pretext import NUM_BLANK, NUM_GREY, KaleidoPretext
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import manifest_fields, read_manifest

KALEIDO_TASKS = ("mlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm")
# Keys of every batch (STYLE.md §2.2, DESIGN.md §7). B batch, T text length,
# P patches (55), D feature size, M = max_masked_tokens.
BATCH_KEYS = (
    "input_ids",  # int32 [B, T], after masking
    "input_mask",  # int32 [B, T], 1 = real token, 0 = padding
    "segment_ids",  # int32 [B, T], zeros
    "patch_features",  # float32 [B, P, D], after the AKPM corruptions
    "patch_boxes",  # float32 [B, P, 5], [x1, x2, y1, y2, w*h] normalised
    "patch_mask",  # int32 [B, P], 1 = real patch (all)
    "masked_lm_positions",  # int32 [B, M]
    "masked_lm_ids",  # int32 [B, M], original ids
    "masked_lm_weights",  # float32 [B, M], 1 = real slot, 0 = padding
    "itm_labels",  # int32 [B], 1 = text matches image (constants.ITM_MATCH)
    "rr_labels",  # int32 [B], rotation / 90 degrees
    "jps_labels",  # int32 [B], jigsaw permutation index (0..23)
    "cp_labels",  # int32 [B], camouflaged level-3 slot (0..8)
    "g2cm_positions",  # int32 [B, 2], absolute patch indices 14..29
    "g2cm_targets",  # float32 [B, 2, D], original colour features
    "g2cm_weights",  # float32 [B, 2]
    "b2cm_positions",  # int32 [B, 3], absolute patch indices 30..54
    "b2cm_targets",  # float32 [B, 3, D], original features
    "b2cm_weights",  # float32 [B, 3]
    "agm_pairs_used",  # int32 [B], alignment pairs that masked a side (0 = random)
)
_SALT = 0x4B616C6569646F  # "Kaleido": separates these seeds from other users'
_RECORD_LEVEL_KEYS = (
    "patch_features",
    "patch_boxes",
    "product_id",
    "rotated_features",
    "grey_features",
    "align_word_index",
    "align_patch_index",
)
_RECORD_KEYS = (
    "image_id",
    "product_id",
    "input_ids",
    "word_index",
    "patch_features",
    "patch_boxes",
    "rotated_features",
    "grey_features",
    "align_word_index",
    "align_patch_index",
)


def _check_tasks(tasks: Collection[str]) -> tuple[str, ...]:
    unknown = sorted(set(tasks) - set(KALEIDO_TASKS))
    if unknown:
        raise ValueError(
            f"unknown task ids {unknown}: valid ids are {list(KALEIDO_TASKS)}"
        )
    return tuple(t for t in KALEIDO_TASKS if t in set(tasks))


class KaleidoPretrainInputs:
    """Builds the per-epoch example streams of one prepared folder.

    Use ``build_pretrain_dataset``; this class holds what the stream functions
    share (manifest, product table, negative sampler, masker, pretext).

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder (kaleido layout).
        tasks: Active task ids (subset of ``KALEIDO_TASKS``).
        masking: ``"agm"`` or ``"random"``.
        seed: Seed of every random choice.
        max_masked_tokens: M.
        token_mask_rate: Fraction of words masked.
        corrupt: Apply masking and AKPM corruptions (False: clean inputs).
        feature_dim: If given, the D the model needs (checked on the manifest).
        max_seq_length: If given, the T the model needs (checked).
        extra_keys: Record fields passed through to every example of the record
            (e.g. ``category_id`` for classification fine-tuning, ``image_id``).

    Raises:
        DataError: Not a kaleido-layout folder, a mismatching D or T, fewer than 2
            products, or missing files.
        ValueError: An unknown task id or masking mode.
    """

    # Record fields of the visual tokens that every example of a record shares
    # (a region pipeline reads region fields instead).
    _visual_record_keys: tuple[str, ...] = ("patch_features", "patch_boxes")

    def __init__(
        self,
        data_dir: str | Path,
        tasks: Collection[str] = KALEIDO_TASKS,
        masking: str = "agm",
        seed: int = 0,
        max_masked_tokens: int = 10,
        token_mask_rate: float = 0.15,
        corrupt: bool = True,
        feature_dim: int | None = None,
        max_seq_length: int | None = None,
        extra_keys: Collection[str] = (),
    ) -> None:
        self.tasks = _check_tasks(tasks)
        self._open_data(
            data_dir, "kaleido", seed, corrupt, feature_dim, max_seq_length, extra_keys
        )
        self._corrupt_record_keys = (
            "rotated_features",
            "grey_features",
            "align_word_index",
            "align_patch_index",
        )
        self.masker = AGMMasker(
            self.table.max_seq_length,
            mask_id=self.table.mask_id,
            random_token_ids=self.table.random_token_ids,
            mode=masking,
            mask_tokens="mlm" in self.tasks,
            patch_budgets={
                3: 1 if "cp" in self.tasks else 0,
                4: NUM_GREY if "g2cm" in self.tasks else 0,
                5: NUM_BLANK if "b2cm" in self.tasks else 0,
            },
            max_masked_tokens=max_masked_tokens,
            token_mask_rate=token_mask_rate,
            layout=self.layout,
        )
        self.pretext = KaleidoPretext(self.tasks, self.layout)
        self._num_uniforms = self.masker.num_uniforms + self.pretext.num_uniforms

    def _open_data(
        self,
        data_dir: str | Path,
        layout: str,
        seed: int,
        corrupt: bool,
        feature_dim: int | None,
        max_seq_length: int | None,
        extra_keys: Collection[str],
        batch_keys: Collection[str] = BATCH_KEYS,
    ) -> None:
        """Reads and checks the manifest, shards and product table of ``data_dir``
        (what every layout's inputs share); sets the negative sampler for ITM."""
        self.data_dir = Path(data_dir)
        self.seed = int(seed)
        self.corrupt = corrupt
        self.manifest = read_manifest(
            self.data_dir,
            layout=layout,
            feature_dim=feature_dim,
            max_seq_length=max_seq_length,
        )
        self.layout = schema.get_layout(self.manifest["layout"])
        available = manifest_fields(self.manifest)
        unknown = [k for k in extra_keys if k not in available]
        if unknown:
            raise DataError(
                f"{self.data_dir}: records have no field {unknown[0]!r} "
                f"(fields: {sorted(available)})"
            )
        self.extra_keys = tuple(k for k in extra_keys if k not in batch_keys)
        self._record_level = _RECORD_LEVEL_KEYS + self.extra_keys
        self.fields = {
            k: v
            for k, v in available.items()
            if k in _RECORD_KEYS or k in self.extra_keys
        }
        self.files = [str(self.data_dir / s["file"]) for s in self.manifest["shards"]]
        missing = [f for f in self.files if not Path(f).is_file()]
        if missing:
            raise DataError(
                f"{self.data_dir}: shard {missing[0]} listed in manifest.json is "
                "missing: rerun `kaleido-tf prepare`"
            )
        self.num_records = sum(int(s["records"]) for s in self.manifest["shards"])
        self.table = ProductTable.load(self.data_dir, self.manifest)
        if self.table.max_seq_length != self.manifest["max_seq_length"]:
            raise DataError(f"{self.data_dir}: products.jsonl does not match T")
        self.with_negatives = "itm" in self.tasks
        self.sampler = NegativeSampler(self.table) if self.with_negatives else None
        self._index = self.table.index_lookup()
        self._table_ids = tf.constant(self.table.input_ids)
        self._table_words = tf.constant(self.table.word_index)

    @property
    def examples_per_record(self) -> int:
        """2 (a positive and a negative pair) with ITM, else 1."""
        return 2 if self.with_negatives else 1

    # ------------------------------------------------------------- per record
    def record_examples(
        self, record: dict[str, tf.Tensor], epoch: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One parsed record -> what its k examples need (positive first).

        Per-example keys (``input_ids``, ``word_index``, ``itm_labels`` and
        ``uniforms``: float64 [k, U], the example's draws) are stacked [k, ...];
        the record's own keys (features, boxes, alignment pairs) stay single and
        are repeated for the k examples in ``group_batch``, after batching, so
        they are copied once.

        The positive keeps the record's own text (the text its alignment pairs
        were extracted for); the negative takes the padded text of a product
        drawn by ``NegativeSampler``, with that product's ``word_index``.
        """
        key = tf.strings.to_hash_bucket_fast(record["image_id"], 2**63 - 1)
        seed = tf.constant([self.seed, _SALT], tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(epoch, tf.int64))
        seed = tf.random.experimental.stateless_fold_in(seed, key)
        k = self.examples_per_record
        # Row i: every draw of side i (masking, pretext), then the negative's.
        uniforms = tf.random.stateless_uniform(
            [k, self._num_uniforms + 1], seed, dtype=tf.float64
        )
        ids = [record["input_ids"]]
        words = [record["word_index"]]
        labels = [constants.ITM_MATCH]
        if self.with_negatives:
            index = self._index.lookup(record["product_id"])
            check = tf.debugging.assert_non_negative(
                index, message="image record of a product missing in products.jsonl"
            )
            with tf.control_dependencies([check]):
                index = tf.identity(index)
            u = tf.cast(uniforms[1, -1], tf.float32)
            negative = self.sampler.sample(index, u)
            ids.append(tf.gather(self._table_ids, negative))
            words.append(tf.gather(self._table_words, negative))
            labels.append(constants.ITM_MISMATCH)
        ex = {
            "input_ids": tf.stack(ids),
            "word_index": tf.stack(words),
            "itm_labels": tf.constant(labels, tf.int32),
        }
        names = [*self._visual_record_keys, "product_id"]
        if self.corrupt:
            ex["uniforms"] = uniforms[:, :-1]
            names += list(self._corrupt_record_keys)
        for name in (*names, *self.extra_keys):
            ex[name] = record[name]
        return ex

    # -------------------------------------------------------------- per group
    def group_batch(self, records: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """G / k records' ``record_examples`` -> G examples' ``BATCH_KEYS`` [G, ...].

        Example 2 r is record r's positive and 2 r + 1 its negative (with ITM).
        """
        group = self._expand_records(records)
        input_ids = group["input_ids"]
        g = tf.shape(input_ids)[0]
        t, p = self.table.max_seq_length, self.layout.num_patches
        m = self.masker.max_masked_tokens
        features = group["patch_features"]
        out = {
            "input_mask": tf.cast(input_ids != self.table.pad_id, tf.int32),
            "segment_ids": tf.zeros([g, t], tf.int32),
            "patch_boxes": group["patch_boxes"],
            "patch_mask": tf.ones([g, p], tf.int32),
            "itm_labels": group["itm_labels"],
        }
        if self.corrupt:
            u = group["uniforms"]
            n_mask = self.masker.num_uniforms
            masks = self.masker.select(
                group["word_index"],
                group["align_word_index"],
                group["align_patch_index"],
                # The pairs were extracted for the positive's text only.
                tf.equal(group["itm_labels"], constants.ITM_MATCH),
                u[:, :n_mask],
            )
            out.update(
                self.masker.replace_tokens(
                    input_ids, masks["token_masked"], u[:, :n_mask]
                )
            )
            out.update(self.pretext.apply(group, masks["patch_masked"], u[:, n_mask:]))
            out["agm_pairs_used"] = masks["pairs_used"]
            out.update({key: group[key] for key in self.extra_keys})
            return {key: out[key] for key in (*BATCH_KEYS, *self.extra_keys)}
        zeros = tf.zeros([g], tf.int32)
        out.update(
            {
                "input_ids": input_ids,
                "patch_features": features,
                "masked_lm_positions": tf.zeros([g, m], tf.int32),
                "masked_lm_ids": tf.zeros([g, m], tf.int32),
                "masked_lm_weights": tf.zeros([g, m], tf.float32),
                "rr_labels": zeros,
                "jps_labels": zeros,
                "cp_labels": zeros,
                "agm_pairs_used": zeros,
            }
        )
        for task, grid, n in (("g2cm", 4, NUM_GREY), ("b2cm", 5, NUM_BLANK)):
            start = self.layout.level_slice(grid).start
            positions = tf.tile(tf.range(start, start + n)[None, :], [g, 1])
            out[f"{task}_positions"] = positions
            out[f"{task}_targets"] = tf.zeros_like(
                tf.gather(features, positions, batch_dims=1)
            )
            out[f"{task}_weights"] = tf.zeros([g, n], tf.float32)
        out.update({key: group[key] for key in self.extra_keys})
        return {key: out[key] for key in (*BATCH_KEYS, *self.extra_keys)}

    def _expand_records(self, records: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """[R, ...] record keys and [R, k, ...] example keys -> [R k, ...] each."""
        k = self.examples_per_record
        group = {}
        for name, x in records.items():
            if name in self._record_level:  # [R, ...] -> [R k, ...]
                if k > 1:
                    x = tf.reshape(tf.stack([x] * k, axis=1), [-1, *x.shape[1:]])
                group[name] = x
            else:  # [R, k, ...] -> [R k, ...]
                group[name] = tf.reshape(x, [-1, *x.shape[2:]])
        return group

    # ------------------------------------------------------------- per epoch
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
        """The groups of examples ([G, ...] each) of one epoch of this pipeline.

        Args:
            epoch: int64 []. The epoch (seeds the shuffle, negatives and masks).
            training: Shuffle (files per epoch, then records in windows).
            num_pipelines: Input pipelines sharing the data (multi-worker).
            pipeline_id: This pipeline's index.
            shuffle_buffer_size: Records per shuffle window.
            group_size: G, examples transformed together (camouflage donors).
            skip_records: Records to drop at the start (resume; whole groups).
            skip_examples: Examples to drop from the first group (resume); None
                adds no slicing step.
        """
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
        ds = ds.skip(tf.cast(skip_records, tf.int64))
        fields = self.fields
        ds = ds.map(
            _no_autograph(
                lambda s: self.record_examples(
                    check_finite(parse_record(s, fields)), epoch
                )
            ),
            num_parallel_calls=auto,
            deterministic=True,
        )
        ds = ds.batch(group_size // self.examples_per_record).map(
            _no_autograph(self.group_batch), num_parallel_calls=auto, deterministic=True
        )
        if skip_examples is not None:  # resume inside a group: drop its head
            skip = tf.cast(skip_examples, tf.int64)

            def drop_head(i: tf.Tensor, group: dict[str, Any]) -> dict[str, Any]:
                start = tf.where(tf.equal(i, 0), skip, 0)
                return {key: x[start:] for key, x in group.items()}

            ds = ds.enumerate().map(_no_autograph(drop_head))
        return ds


def epoch_records(
    files: list[str],
    seed: tf.Tensor,
    epoch: tf.Tensor,
    training: bool,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
    shuffle_buffer_size: int = 1024,
) -> tf.data.Dataset:
    """The serialized records of one epoch of ``files``, in this pipeline's order.

    Training: the files shuffled per epoch and interleaved 16 at a time, then the
    records shuffled in windows of ``shuffle_buffer_size``; else file order. With
    several pipelines each takes every ``num_pipelines``-th record.

    Args:
        files: TFRecord shard paths.
        seed: int64 [2], the caller's (seed, salt); folded with ``epoch``.
        epoch: int64 [].
        training, num_pipelines, pipeline_id, shuffle_buffer_size: See
            ``KaleidoPretrainInputs.epoch_dataset``.
    """
    auto = tf.data.AUTOTUNE
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(epoch, tf.int64))
    names = tf.constant(files)
    if training:
        key = tf.random.stateless_uniform([len(files)], seed)
        names = tf.gather(names, tf.argsort(key))
    cycle = min(len(files), 16) if training else 1
    ds = tf.data.Dataset.from_tensor_slices(names)
    if cycle > 1:
        ds = ds.interleave(
            tf.data.TFRecordDataset,
            cycle_length=cycle,
            block_length=1,
            num_parallel_calls=auto,
            deterministic=True,
        )
    else:
        ds = ds.flat_map(tf.data.TFRecordDataset)
    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_id)
    if training:
        ds = ds.batch(shuffle_buffer_size).enumerate()
        ds = ds.map(
            _no_autograph(lambda i, window: _shuffle_window(window, seed, i)),
            num_parallel_calls=auto,
            deterministic=True,
        ).unbatch()
    return ds


def _no_autograph(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Skips AutoGraph: the map functions use explicit ``tf.while_loop``s only, and
    converting them costs seconds of start-up per dataset."""
    return tf.autograph.experimental.do_not_convert(fn)


def _shuffle_window(window: tf.Tensor, seed: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """A stateless permutation of a window of serialised records."""
    seed = tf.random.experimental.stateless_fold_in(seed, index)
    key = tf.random.stateless_uniform(tf.shape(window), seed)
    return tf.gather(window, tf.argsort(key))


def examples_per_epoch(
    data_dir: str | Path,
    tasks: Collection[str] = KALEIDO_TASKS,
    input_context: tf.distribute.InputContext | None = None,
) -> int:
    """Examples one epoch yields (image records x 2 with ITM, x 1 without).

    With ``input_context``, the examples of that input pipeline only.
    """
    manifest = read_manifest(data_dir)
    n = sum(int(s["records"]) for s in manifest["shards"])
    if input_context is not None and input_context.num_input_pipelines > 1:
        pipes, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        n = len(range(i, n, pipes))
    return n * (2 if "itm" in _check_tasks(tasks) else 1)


def build_pretrain_dataset(
    data_dir: str | Path,
    global_batch_size: int,
    tasks: Collection[str] = KALEIDO_TASKS,
    masking: str = "agm",
    seed: int = 0,
    epoch: int = 0,
    num_epochs: int | None = None,
    max_masked_tokens: int = 10,
    token_mask_rate: float = 0.15,
    training: bool = True,
    corrupt: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    shuffle_buffer_size: int = 1024,
    group_size: int = 32,
    feature_dim: int | None = None,
    max_seq_length: int | None = None,
    extra_keys: Collection[str] = (),
) -> tf.data.Dataset:
    """The Kaleido-BERT pretraining (or evaluation) dataset of a prepared folder.

    Each image record yields a positive pair (its own product's text, label
    ``constants.ITM_MATCH`` = 1) and, when ``itm`` is active, a negative pair (the
    text of another product of the same sub-category, label 0); then AGM masking
    (``masking.py``) and the AKPM corruptions of the active tasks (``pretext.py``).
    All of it is redrawn every epoch from (``seed``, epoch, example).

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder with the kaleido layout.
        global_batch_size: Examples per global step (a positive and a negative
            pair count as two). With ``input_context`` the dataset yields
            per-replica batches (``get_per_replica_batch_size``), as
            ``strategy.distribute_datasets_from_function`` expects.
        tasks: Active task ids, a subset of ``KALEIDO_TASKS`` (Table 4 ablations:
            a task that is off leaves its inputs untouched, K-Q25; without
            ``itm`` only positive pairs are made and ``itm_labels`` are all 1).
        masking: ``"agm"`` (§3.4) or ``"random"`` (the ablation).
        seed: Seed of every random choice; same seed, same batches.
        epoch: The first epoch (its seeds); resume passes the epoch it reached,
            or use ``start_step``.
        num_epochs: Epochs to yield; None repeats forever in training and gives
            one pass otherwise.
        max_masked_tokens: M, the masked-LM slots per example (10 for Kaleido).
        token_mask_rate: Fraction of each text's words to mask (0.15).
        training: Training: per-epoch shuffle (shard files, then windows of
            ``shuffle_buffer_size`` records), ``drop_remainder=True``.
            Evaluation (False): file order, partial last batch kept, and no
            masking or corruption unless ``corrupt`` says otherwise (K-Q18).
        corrupt: Apply masking and AKPM corruptions; default ``training``. Set
            True with ``training=False`` for validation losses (Fig. 6) on a fixed
            order with fixed (seeded) corruptions.
        input_context: ``tf.distribute.InputContext``: shards the records over
            ``num_input_pipelines`` and batches per replica.
        start_step: Global steps already taken (resume): the dataset continues
            exactly where an uninterrupted run with the same arguments would be.
        shuffle_buffer_size: Records per shuffle window (memory: about 300 KB
            per record at D = 2048).
        group_size: G (even), examples corrupted together; the camouflage source
            is another product's image from the same group. It does not depend on
            the batch size, so 1 and N replicas see the same examples.
        feature_dim: If given, checked against the manifest's D.
        max_seq_length: If given, checked against the manifest's T.
        extra_keys: Record fields added to every batch (fine-tuning labels, ids);
            with no ``tasks`` and ``corrupt=False`` the dataset is the clean
            positive pairs (one per image record) plus these fields.

    Returns:
        A dataset of dicts with exactly ``BATCH_KEYS`` and ``extra_keys``
        (shapes in that tuple's comments), static except for the batch
        dimension of a partial last evaluation batch.

    Raises:
        DataError: See ``KaleidoPretrainInputs``.
        ValueError: Bad batch size, group size, task id or masking mode.

    Example:
        >>> ds = build_pretrain_dataset("prepared/train", 256, seed=1)
        >>> batch = next(iter(ds))  # batch["input_ids"]: int32 [256, 64]

    Reference: Kaleido-BERT §3.4-3.6; kaleido_fashionbert.md §2.1 (negatives),
    §4.3 (AGM), §4.5 (AKPM).

    Deviation: records are shuffled in windows of ``shuffle_buffer_size`` after a
    per-epoch shuffle of the shard files (interleaved 16 at a time), not with
    ``Dataset.shuffle``, whose order also depends on TensorFlow's global seed.
    """
    corrupt = training if corrupt is None else corrupt
    kwargs = dict(
        tasks=tasks,
        seed=seed,
        max_masked_tokens=max_masked_tokens,
        token_mask_rate=token_mask_rate,
        corrupt=corrupt,
        feature_dim=feature_dim,
        max_seq_length=max_seq_length,
        extra_keys=extra_keys,
    )
    layout = read_manifest(data_dir)["layout"]
    if isinstance(schema.get_layout(layout), schema.RegionLayout):
        # Detector regions (ImageBERT, InterBERT): the clean pairs of fine-tuning
        # and evaluation, with caption- and image-swap negatives (ImageBERT §2.6).
        from kaleido_tf.inputs.region_pipeline import RegionPretrainInputs

        if masking != "random":
            raise DataError(
                f"{data_dir} has the region layout {layout!r}: Kaleido-BERT's "
                "tasks and alignment-guided masking need the kaleido layout; "
                "pretrain region folders with system image_bert or inter_bert"
            )
        inputs = RegionPretrainInputs(
            data_dir,
            tasks=tasks,
            seed=seed,
            max_masked_tokens=max_masked_tokens,
            token_mask_rate=token_mask_rate,
            corrupt=corrupt,
            feature_dim=feature_dim,
            max_seq_length=max_seq_length,
            extra_keys=extra_keys,
        )
    elif layout == "grid8":
        # FashionBERT's 8x8 grid (fine-tuning and evaluation of its clean pairs).
        from kaleido_tf.inputs.fashion_bert_pipeline import FashionBertPretrainInputs

        kaleido_only = sorted(set(tasks) - {"mlm", "itm"})
        if kaleido_only or masking != "random":
            raise DataError(
                f"{data_dir} has layout 'grid8', but the tasks {kaleido_only} and "
                f"masking {masking!r} need the kaleido layout: prepare the data "
                "with configs/data/fashiongen_kaleido.yaml (or use masking "
                "'random' with mlm/itm only)"
            )
        inputs = FashionBertPretrainInputs(data_dir, **kwargs)
    else:
        inputs = KaleidoPretrainInputs(data_dir, masking=masking, **kwargs)
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


def make_dataset(
    inputs: KaleidoPretrainInputs,
    global_batch_size: int,
    epoch: int = 0,
    num_epochs: int | None = None,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    shuffle_buffer_size: int = 1024,
    group_size: int = 32,
) -> tf.data.Dataset:
    """Epochs of ``inputs`` (any layout's pretraining inputs), batched and resumable.

    The arguments are those of ``build_pretrain_dataset``; ``inputs`` provides
    ``num_records``, ``examples_per_record`` and ``epoch_dataset``.
    """
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if group_size < 2 or group_size % 2:
        raise ValueError(f"group_size must be even and >= 2, got {group_size}")
    if shuffle_buffer_size < 1:
        raise ValueError(f"shuffle_buffer_size must be >= 1, got {shuffle_buffer_size}")
    if start_step < 0 or epoch < 0:
        raise ValueError("start_step and epoch must be >= 0")
    pipes, pipe_id, batch_size = 1, 0, global_batch_size
    if input_context is not None:
        pipes = input_context.num_input_pipelines
        pipe_id = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    if global_batch_size % pipes:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the "
            f"{pipes} input pipelines"
        )
    k = inputs.examples_per_record
    # Every input pipeline (worker) builds the one example stream of a single
    # process and keeps its 1/pipes of each global batch (below), so W workers
    # train on exactly the batches of one process. Deviation from sharding the
    # records by worker (which changes the batches with the worker count): each
    # worker parses and transforms every record, about W times the input work;
    # the record sharding it replaces already read every shard on every worker.
    per_epoch = inputs.num_records * k
    if per_epoch == 0:
        raise DataError(f"{inputs.data_dir}: no image records")
    consumed = start_step * global_batch_size
    first_epoch = epoch + consumed // per_epoch
    offset = consumed % per_epoch
    skip_groups = offset // group_size
    skip_records = skip_groups * (group_size // k)
    skip_examples = offset - skip_groups * group_size
    if num_epochs is None and not training:
        num_epochs = 1
    stop = first_epoch + num_epochs if num_epochs is not None else tf.int64.max

    def one_epoch(e: tf.Tensor) -> tf.data.Dataset:
        first = tf.equal(e, first_epoch)
        return inputs.epoch_dataset(
            e,
            training=training,
            shuffle_buffer_size=shuffle_buffer_size,
            group_size=group_size,
            skip_records=tf.where(first, tf.constant(skip_records, tf.int64), 0),
            skip_examples=(
                tf.where(first, tf.constant(skip_examples, tf.int64), 0)
                if skip_examples
                else None
            ),
        )

    ds = tf.data.Dataset.range(first_epoch, stop).flat_map(_no_autograph(one_epoch))
    # One copy per example, unlike unbatch().batch() (two).
    if pipes > 1:  # this worker's share of each global batch
        ds = ds.rebatch(global_batch_size // pipes, drop_remainder=training)
        ds = ds.shard(pipes, pipe_id)
    ds = ds.rebatch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = True
    if input_context is not None:
        # Sharded above; the strategy must not shard again.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
