"""``CommerceMMClassifier``: CommerceMM's encoder with a classifier on the fused [CLS].

CommerceMM's categorization tasks (Catalog Categorization, Marketplace
Categorization; on Fashion-Gen: category and sub-category recognition) put a
``C``-way classifier on the fusion encoder's ``w_cls`` (spec §4.3 head table,
§4.8 downstream table, §4.11 #11) of clean (text, image) pairs.

Reference: CommerceMM (Yu et al., KDD 2022) §4.1; spec
imagebert_interbert_commercemm.md §4.3, §4.8, §4.11 #11, #18.
"""

from __future__ import annotations

import copy
from typing import Any

import tensorflow as tf
import tf_keras

from kaleido_tf.errors import DataError
from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.models.vl_model import _plain
from kaleido_tf.networks.commerce_mm_encoder import CommerceMMEncoder

# Batch keys the classifier reads.
INPUT_KEYS = ("input_ids", "input_mask", "pixels")


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class CommerceMMClassifier(tf_keras.Model):
    """CommerceMM's encoder (image encoder + L-layer stack split at K) and one
    ``ClassificationHead`` on the fused ``w_cls``.

    The encoder is the pretraining model's ``encoder`` (same class, same name), so
    ``finetuning/pretrained_weights.load_pretrained_weights`` restores it from a
    CommerceMM pretraining run; the head (``heads[head_id]``) is new.

    Args:
        encoder: Keyword arguments of ``CommerceMMEncoder``.
        head_id: The head's id and the output key prefix (``category``,
            ``subcategory``).
        num_classes: C.
        dropout: Dropout before the classifier.
        initializer_range: Stddev of the classifier's initialiser.

    Call arguments:
        inputs: ``input_ids`` int32 [B, T], ``input_mask`` int32 [B, T] (1 = real
            token, 0 = padding), ``pixels`` float32 [B, S, S, 3] RGB in [0, 255];
            optional ``segment_ids`` int32 [B, T]. Other keys are ignored.
        training: Dropout and batch-norm switch.
        num_text_layers: K for this call (None: the encoder's).

    Returns:
        ``sequence_output`` float32 [B, T + 1 + P, H] (the fusion output),
        ``fused_text_cls`` float32 [B, H] (its ``w_cls``) and
        ``<head_id>_logits`` float32 [B, C].

    Raises:
        DataError: A batch without ``INPUT_KEYS``.

    Example:
        >>> model = CommerceMMClassifier(encoder={...}, head_id="category",
        ...                              num_classes=48)
        >>> logits = model(batch)["category_logits"]

    Reference: spec imagebert_interbert_commercemm.md §4.3 ("CC / MPC classifier
    on fusion-encoder w_cls"), §4.8.
    """

    def __init__(
        self,
        encoder: dict[str, Any],
        head_id: str,
        num_classes: int,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder_kwargs = copy.deepcopy(dict(encoder))
        self.head_id = head_id
        self.num_classes = num_classes
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.encoder = CommerceMMEncoder(**self.encoder_kwargs, name="encoder")
        self.heads = {
            head_id: ClassificationHead(
                num_classes, dropout, initializer_range, name=f"{head_id}_head"
            )
        }

    def call(self, inputs, training=None, num_text_layers=None):
        missing = [k for k in INPUT_KEYS if k not in inputs]
        if missing:
            raise DataError(
                f"the CommerceMM classifier's batch lacks {missing}: build it with "
                "the CommerceMM category pipeline (inputs/commerce_mm_labels.py)"
            )
        enc = self.encoder
        mask = tf.cast(inputs["input_mask"], tf.int32)
        text = enc.embed_text(
            inputs["input_ids"], inputs.get("segment_ids"), training=training
        )
        text = enc.encode_text(text, mask, num_text_layers, training=training)
        visual = enc.encode_image(inputs["pixels"], training=training)
        dtype = self.compute_dtype
        fused = enc.fuse(
            tf.cast(text, dtype),
            tf.cast(visual, dtype),
            mask,
            num_text_layers,
            training=training,
        )  # [B, T + 1 + P, H]
        cls = fused[:, 0]
        return {
            "sequence_output": fused,
            "fused_text_cls": cls,
            f"{self.head_id}_logits": self.heads[self.head_id](cls, training=training),
        }

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "encoder": _plain(self.encoder_kwargs),
            "head_id": self.head_id,
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "initializer_range": self.initializer_range,
        }
