"""``InterBertModel``: the InterBERT encoder and its MSM, MRM and ITM heads."""

from __future__ import annotations

import copy
from typing import Any

import tensorflow as tf
import tf_keras

from kaleido_tf.heads.masked_lm_head import MaskedLMHead
from kaleido_tf.heads.masked_patch_head import MaskedPatchHead
from kaleido_tf.heads.match_mlp_head import MatchMLPHead
from kaleido_tf.models.vl_model import _plain
from kaleido_tf.networks.interbert_encoder import InterBertEncoder

HEAD_IDS = ("msm", "mrm", "itm")


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class InterBertModel(tf_keras.Model):
    """InterBERT encoder + heads; a pure function of the batch tensors.

    Heads (each optional, by ``heads``):

    - ``msm``: BERT's LM head (dense + GELU + LN, tied word table + bias;
      ``MaskedLMHead``) on the text extractor's outputs at ``masked_lm_positions``
      -> ``msm_logits`` [B, M, V].
    - ``mrm``: a bias-free H -> C dense layer (``MaskedPatchHead``, as
      ImageBERT's MOC) on the image extractor's outputs at the masked regions
      (``mrm_positions`` + 1: index 0 of the image stream is the image [CLS])
      -> ``mrm_logits`` [B, K, C].
    - ``itm``: ``MatchMLPHead`` on the two [CLS] outputs -> ``itm_logits`` [B, 2]
      (index 1 = match, ``constants.ITM_MATCH``), as every ITM head of the
      framework, so the shared retrieval evaluators read it.

    A head whose position key is missing from the batch is skipped (evaluators
    pass only the encoder keys). Attributes ``encoder`` and ``heads`` (id ->
    layer) have the same checkpoint names as ``VLModel``'s, so
    ``finetuning.pretrained_weights`` restores a pretraining run into a
    fine-tuning model.

    Args:
        encoder: Keyword arguments of ``InterBertEncoder``.
        heads: Head id (``HEAD_IDS``) -> keyword arguments of its head:
            ``msm``: ``hidden_size``, ``vocab_size``, ``initializer_range``;
            ``mrm``: ``num_classes``, ``initializer_range``; ``itm``:
            ``pooled_size``, ``num_classes`` (2), ``dropout``,
            ``initializer_range``.

    Call arguments:
        inputs: The batch dict: ``InterBertEncoder``'s keys, plus
            ``masked_lm_positions`` int32 [B, M] and ``mrm_positions`` int32
            [B, K] for the MSM and MRM heads.
        training: Dropout switch.

    Returns:
        dict: the encoder's outputs (``sequence_output``,
        ``image_sequence_output``, ``text_sequence_output``,
        ``image_cls_output``, ``text_cls_output``), ``pooled_output`` float32
        [B, pooled_size] (the ITM head's ``pooled_product``, the cross-modal
        representation; with an ITM head), and ``<id>_logits`` per head.

    Example:
        >>> model = InterBertModel(encoder={...}, heads={"itm": {}})
        >>> model(batch)["itm_logits"]  # [B, 2]

    Reference: InterBERT §3.1-§3.3; imagebert_interbert_commercemm.md §3.3
    "Pre-training heads" [code], §3.10.

    Deviation: the MRM head is one bias-free dense layer (as ImageBERT's MOC
    head); the released code adds a dense + GELU + LN transform before it.
    """

    def __init__(
        self,
        encoder: dict[str, Any],
        heads: dict[str, dict[str, Any]],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(heads) - set(HEAD_IDS))
        if unknown:
            raise ValueError(f"unknown InterBERT heads {unknown}: valid are {HEAD_IDS}")
        self.encoder_kwargs = copy.deepcopy(dict(encoder))
        self.head_kwargs = copy.deepcopy({k: dict(v) for k, v in heads.items()})
        self.encoder = InterBertEncoder(**self.encoder_kwargs, name="encoder")
        kinds = {"msm": MaskedLMHead, "mrm": MaskedPatchHead, "itm": MatchMLPHead}
        self.heads = {}
        for head_id in HEAD_IDS:
            if head_id in self.head_kwargs:
                spec = dict(self.head_kwargs[head_id])
                if head_id == "mrm":
                    spec["feature_dim"] = spec.pop("num_classes")
                self.heads[head_id] = kinds[head_id](**spec, name=f"{head_id}_head")

    def call(self, inputs, training=None):
        encoded = self.encoder(inputs, training=training)
        outputs = {k: v for k, v in encoded.items() if k != "embedding_table"}
        heads = self.heads
        if "msm" in heads and "masked_lm_positions" in inputs:
            outputs["msm_logits"] = heads["msm"](
                encoded["text_sequence_output"],
                inputs["masked_lm_positions"],
                encoded["embedding_table"],
            )
        if "image_sequence_output" not in encoded:  # text-only pass
            return outputs
        if "mrm" in heads and "mrm_positions" in inputs:
            # Region r sits at r + 1 of the image stream (after the image [CLS]).
            outputs["mrm_logits"] = heads["mrm"](
                encoded["image_sequence_output"], inputs["mrm_positions"], 1
            )
        if "itm" in heads:
            image_cls = encoded["image_cls_output"]
            text_cls = encoded["text_cls_output"]
            outputs["pooled_output"] = heads["itm"].pooled_product(image_cls, text_cls)
            outputs["itm_logits"] = heads["itm"](image_cls, text_cls, training=training)
        return outputs

    def text_cls_embedding(
        self, input_ids, input_mask, segment_ids=None, training=False
    ):
        """Text [CLS] embeddings through the text stream alone (no image tokens).

        The single-modal path of spec §3.6 "GLUE" / §3.11 #18: the text runs
        through the interaction module and then the text extractor.

        Args:
            input_ids: int32 [B, T].
            input_mask: int32 [B, T]; 1 = real token.
            segment_ids: int32 [B, T]; default zeros.
            training: Dropout switch.

        Returns:
            float32 [B, H], the text extractor's [CLS] output.
        """
        if segment_ids is None:
            segment_ids = tf.zeros_like(input_ids)
        out = self.encoder(
            {
                "input_ids": input_ids,
                "input_mask": input_mask,
                "segment_ids": segment_ids,
            },
            training=training,
        )
        return out["text_cls_output"]

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "encoder": _plain(self.encoder_kwargs),
            "heads": _plain(self.head_kwargs),
        }
