"""``VLModel``: a cross-modal encoder and named heads, returning a dict of outputs."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras

from kaleido_tf.errors import ConfigError
from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.heads.level_classification_head import LevelClassificationHead
from kaleido_tf.heads.masked_lm_head import MaskedLMHead
from kaleido_tf.heads.masked_patch_head import MaskedPatchHead
from kaleido_tf.networks.cross_modal_encoder import CrossModalEncoder

HEADS = {
    "masked_lm": MaskedLMHead,
    "classification": ClassificationHead,
    "level_classification": LevelClassificationHead,
    "masked_patch": MaskedPatchHead,
}


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class VLModel(tf_keras.Model):
    """Encoder + heads; a pure function of the batch tensors (STYLE §2.3.8).

    Each head id gives the output key ``<id>_logits``. What a head reads follows its
    type: ``masked_lm`` the hidden states at ``masked_lm_positions`` and the tied word
    table; ``classification`` the pooled output; ``level_classification`` one kaleido
    level's hidden states; ``masked_patch`` the hidden states at ``<id>_positions``.

    Args:
        encoder: Keyword arguments of CrossModalEncoder.
        heads: Head id -> {"type": one of HEADS, **keyword arguments of that head}.
        trim_text_padding: Variable sequence length (VSL) inference, FashionBERT
            §3.4 / Table 4: outside training, the text is cut to the longest real
            text of the batch before the patches are appended, instead of being
            padded to the data's T. Real positions' outputs are unchanged (padding
            is never attended to); ``sequence_output`` is then [B, T' + P, H].

    Call arguments:
        inputs: The batch dict (keys of CrossModalEncoder, plus the positions the
            heads read: ``masked_lm_positions`` int32 [B, M], ``<id>_positions``
            int32 [B, K]).
        training: Dropout switch.

    Returns:
        dict: ``sequence_output`` float32 [B, T + P, H], ``pooled_output`` float32
        [B, H], and ``<id>_logits`` for every head.

    Example:
        >>> model = VLModel(encoder={...}, heads={"itm": {"type": "classification",
        ...                                               "num_classes": 2}})
        >>> model(batch)["itm_logits"]  # [B, 2]
    """

    def __init__(
        self,
        encoder: dict[str, Any],
        heads: dict[str, dict[str, Any]],
        trim_text_padding: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.trim_text_padding = bool(trim_text_padding)
        self.encoder_kwargs = copy.deepcopy(dict(encoder))
        self.head_kwargs = copy.deepcopy({k: dict(v) for k, v in heads.items()})
        self.encoder = CrossModalEncoder(**self.encoder_kwargs, name="encoder")
        self.head_types = {}
        self.heads = {}
        for head_id, spec in self.head_kwargs.items():
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in HEADS:
                raise ConfigError(
                    f"head {head_id!r} has type {kind!r}: valid types are "
                    f"{sorted(HEADS)}"
                )
            self.head_types[head_id] = kind
            self.heads[head_id] = HEADS[kind](**spec, name=f"{head_id}_head")

    def call(self, inputs, training=None):
        if self.trim_text_padding and not training:
            inputs = _trim_text(inputs)
        encoded = self.encoder(inputs, training=training)
        sequence = encoded["sequence_output"]
        pooled = encoded["pooled_output"]
        text_length = tf.shape(inputs["input_ids"])[1]
        outputs = {"sequence_output": sequence, "pooled_output": pooled}
        for head_id, head in self.heads.items():
            kind = self.head_types[head_id]
            if kind == "masked_lm":
                logits = head(
                    sequence, inputs["masked_lm_positions"], encoded["embedding_table"]
                )
            elif kind == "classification":
                logits = head(pooled, training=training)
            elif kind == "level_classification":
                logits = head(sequence, text_length)
            else:
                logits = head(sequence, inputs[f"{head_id}_positions"], text_length)
            outputs[f"{head_id}_logits"] = logits
        return outputs

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "encoder": _plain(self.encoder_kwargs),
            "heads": _plain(self.head_kwargs),
            "trim_text_padding": self.trim_text_padding,
        }


def _trim_text(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with its text keys cut to the longest real text (at least 1)."""
    mask = tf.cast(inputs["input_mask"], tf.int32)  # [B, T], 1 = real token
    length = tf.maximum(tf.reduce_max(tf.reduce_sum(mask, axis=1)), 1)
    out = dict(inputs)
    for key in ("input_ids", "input_mask", "segment_ids"):
        out[key] = inputs[key][:, :length]  # [B, T']
    return out


def _plain(value: Any) -> Any:
    # Keras wraps dict/list attributes in tracking wrappers; configs are plain data.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        return [_plain(v) for v in value]
    return value
