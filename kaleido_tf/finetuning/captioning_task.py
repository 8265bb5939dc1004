"""Fashion captioning fine-tuning (FC), the spec's default method (K-Q19).

UniLM/VLP-style seq2seq on the single-stream encoder: with the ``seq2seq``
attention mask, patches attend to patches only and each caption token to every patch
and the tokens before it. Training masks ``mask_rate`` of the caption's tokens (the
final [SEP] included, so the model learns where to stop), 80/10/10, and predicts them
with the pretrained masked-LM head. Decoding (``caption_generation.py``) appends a
[MASK] to the words so far and predicts it, with beam search.

Reference: kaleido_fashionbert.md §4.7 (FC), K-Q19; Zhou et al. 2020 (VLP) §3.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.errors import ConfigError
from kaleido_tf.finetuning.clean_pairs import clean_pairs_dataset, clean_pairs_per_epoch
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import Objectives

HEAD = "mlm"
_SALT = 0x43617074696F6E  # "Caption"


def build_model(config: ExperimentConfig) -> VLModel:
    """The system's encoder with the seq2seq mask and the masked-LM head."""
    from kaleido_tf.systems import get_system

    enc = config.model.encoder
    longest = config.finetune.captioning.max_caption_tokens + 2  # [CLS] .. [MASK]
    if longest > enc.max_sequence_length:
        raise ConfigError(
            f"finetune.captioning.max_caption_tokens "
            f"{config.finetune.captioning.max_caption_tokens} + 2 exceeds "
            f"model.encoder.max_sequence_length {enc.max_sequence_length}"
        )
    encoder = dict(get_system(config.system).encoder_kwargs(config))
    encoder["attention"] = "seq2seq"
    heads = {
        HEAD: {
            "type": "masked_lm",
            "hidden_size": enc.hidden_size,
            "vocab_size": enc.vocab_size,
            "initializer_range": enc.initializer_range,
        }
    }
    return VLModel(encoder=encoder, heads=heads, name=f"{config.system}_captioning")


def objectives(config: ExperimentConfig) -> Objectives:
    """Masked caption-token cross-entropy and accuracy."""

    def loss(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["mlm_logits"])
        return values, batch["masked_lm_weights"]

    def accuracy(batch, out):
        predicted = tf.argmax(out["mlm_logits"], -1, output_type=tf.int32)
        correct = tf.equal(predicted, tf.cast(batch["masked_lm_ids"], tf.int32))
        return tf.cast(correct, tf.float32), batch["masked_lm_weights"]

    return Objectives({"caption": loss}, {"caption": 1.0}, {"caption": accuracy})


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """One (image, description) example per image record."""
    return clean_pairs_per_epoch(data_dir)


class CaptionMasker:
    """Masks caption tokens for seq2seq training, a pure function of its seeds.

    Args:
        pad_id, mask_id: Special token ids.
        random_token_ids: int32 [V']; ids a masked token may become (10%).
        mask_rate: Fraction of the tokens after [CLS] (incl. [SEP]) to mask;
            at least one, at most ``max_masked_tokens``.
        max_masked_tokens: M.
        seed: Run seed.
    """

    def __init__(
        self,
        pad_id: int,
        mask_id: int,
        random_token_ids,
        mask_rate: float,
        max_masked_tokens: int,
        seed: int,
    ) -> None:
        self.pad_id = pad_id
        self.mask_id = mask_id
        self.random_token_ids = tf.constant(random_token_ids, tf.int32)
        self.mask_rate = mask_rate
        self.max_masked_tokens = max_masked_tokens
        self.seed = seed

    def __call__(
        self, step: tf.Tensor, image_keys: tf.Tensor, input_ids: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Masks a batch.

        Args:
            step: int64 []; the batch's global step (seeds; resume-safe).
            image_keys: int64 [B]; a hash of each image id (seeds).
            input_ids: int32 [B, T]; ``[CLS] caption [SEP]`` then padding.

        Returns:
            ``input_ids`` (masked), ``masked_lm_positions``, ``masked_lm_ids``,
            ``masked_lm_weights`` ([B, M]).
        """
        base = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, _SALT], tf.int64), tf.cast(step, tf.int64)
        )

        def one(args):
            ids, key = args
            seed = tf.random.experimental.stateless_fold_in(base, key)
            return self._mask_one(ids, seed)

        out = tf.map_fn(
            one,
            (input_ids, image_keys),
            fn_output_signature={
                "input_ids": tf.TensorSpec(input_ids.shape[1:], tf.int32),
                "masked_lm_positions": tf.TensorSpec(
                    [self.max_masked_tokens], tf.int32
                ),
                "masked_lm_ids": tf.TensorSpec([self.max_masked_tokens], tf.int32),
                "masked_lm_weights": tf.TensorSpec(
                    [self.max_masked_tokens], tf.float32
                ),
            },
        )
        return out

    def _mask_one(self, ids: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        m = self.max_masked_tokens
        t = tf.shape(ids)[0]
        u = tf.random.stateless_uniform([t, 3], seed)
        length = tf.reduce_sum(tf.cast(ids != self.pad_id, tf.int32))
        position = tf.range(t)
        candidate = (position >= 1) & (position < length)
        count = tf.cast(
            tf.round(self.mask_rate * tf.cast(length - 1, tf.float32)), tf.int32
        )
        count = tf.clip_by_value(count, 1, tf.minimum(m, tf.maximum(length - 1, 1)))
        score = tf.where(candidate, u[:, 0], -1.0)
        top = tf.math.top_k(score, k=tf.minimum(m, t)).indices
        top = tf.pad(top, [[0, m - tf.shape(top)[0]]])
        valid = tf.range(m) < count
        positions = tf.where(valid, top, 0)
        original = tf.gather(ids, positions)
        r = tf.gather(u[:, 1], positions)
        n_random = tf.shape(self.random_token_ids)[0]
        pick = tf.cast(
            tf.gather(u[:, 2], positions) * tf.cast(n_random, tf.float32), tf.int32
        )
        random_ids = tf.gather(self.random_token_ids, tf.minimum(pick, n_random - 1))
        new = tf.where(r < 0.8, self.mask_id, tf.where(r < 0.9, random_ids, original))
        updates = tf.boolean_mask(new, valid)
        where = tf.boolean_mask(positions, valid)[:, tf.newaxis]
        masked = tf.tensor_scatter_nd_update(ids, where, updates)
        return {
            "input_ids": masked,
            "masked_lm_positions": positions,
            "masked_lm_ids": tf.where(valid, original, 0),
            "masked_lm_weights": tf.cast(valid, tf.float32),
        }


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Clean (image, own description) pairs with caption tokens masked, resumable.

    Masks are drawn from (``train.seed``, global step, image id), so a resumed run
    masks exactly as an uninterrupted one.
    """
    from kaleido_tf.inputs.product_table import ProductTable
    from kaleido_tf.manifest import read_manifest

    table = ProductTable.load(data_dir, read_manifest(data_dir))
    cap = config.finetune.captioning
    masker = CaptionMasker(
        table.pad_id,
        table.mask_id,
        table.random_token_ids,
        cap.mask_rate,
        cap.max_masked_tokens,
        config.train.seed,
    )
    ds = clean_pairs_dataset(
        data_dir,
        config,
        global_batch_size,
        start_step,
        training,
        input_context,
        extra_keys=("image_id",),
    )

    def mask(step, batch):
        keys = tf.strings.to_hash_bucket_fast(batch.pop("image_id"), 2**63 - 1)
        batch.update(masker(step, keys, batch["input_ids"]))
        return batch

    return ds.enumerate(start=start_step).map(mask, num_parallel_calls=tf.data.AUTOTUNE)
