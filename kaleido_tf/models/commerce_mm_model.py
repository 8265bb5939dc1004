"""``CommerceMMModel``: CommerceMM's encoder, its heads and its two forward passes.

One Keras model serves both step types of CommerceMM pretraining (spec §4.6); its
``call`` dispatches statically on the batch keys:

- an **image-text** batch (``input_ids`` ...) runs the three sub-passes of one step
  (clean: ITC and ITM with hard negatives; text-masked: MLM; image-masked: MIM-kl and
  MIM-fr) inside one call, so the trainer takes one backward pass over their
  weighted sum;
- an **Omni-Retrieval** batch (``source_input_ids`` ...) runs the siamese forward of
  source and target through the same weights and returns the text, image and
  multimodal embeddings of each side for the 9 gated InfoNCE terms.

Reference: CommerceMM (Yu et al., KDD 2022) §3.1-§3.4; spec
imagebert_interbert_commercemm.md §4.3-§4.7, §4.10, §4.11.
"""

from __future__ import annotations

import copy
from typing import Any

import tensorflow as tf
import tf_keras

from kaleido_tf.constants import ITM_MATCH, ITM_MISMATCH
from kaleido_tf.errors import DataError
from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.heads.masked_lm_head import MaskedLMHead
from kaleido_tf.inputs.itc_hard_negatives import sample_hard_negatives
from kaleido_tf.losses.contrastive import (
    LearnedTemperature,
    gather_across_replicas,
    global_similarities,
)
from kaleido_tf.models.vl_model import _plain
from kaleido_tf.networks.commerce_mm_encoder import CommerceMMEncoder

# The 5 image-text tasks (spec §4.4), in the paper's order.
IMAGE_TEXT_TASKS = ("mlm", "mim_kl", "mim_fr", "itc", "itm")
# Batch keys the image-text forward reads (the loss terms read more, see
# systems/commerce_mm.py IMAGE_TEXT_BATCH_KEYS).
_IMAGE_TEXT_INPUTS = ("input_ids", "input_mask", "pixels")
_TASK_INPUTS = {
    "mlm": ("masked_input_ids", "masked_lm_positions"),
    "mim_kl": ("greyed_pixels",),
    "mim_fr": ("greyed_pixels",),
    "itc": (),
    "itm": (),
}
# Batch keys the Omni forward reads (the presence flags are read by the losses).
OMNI_INPUTS = tuple(
    f"{side}_{key}"
    for side in ("source", "target")
    for key in ("input_ids", "input_mask", "pixels")
)
# Head ids (checkpoint names under ``heads``).
PROJECTION_HEADS = ("text_projection", "image_projection", "multimodal_projection")


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class CommerceMMModel(tf_keras.Model):
    """CommerceMM: image encoder + text/fusion stack split at K, and its heads.

    Heads (``heads`` dict; spec §4.3 head table):

    - ``text_projection`` ``f``: Linear(H -> E) on the text encoder's [CLS]
      (after the K text layers, before fusion), L2-normalised.
    - ``image_projection`` ``g``: Linear(H -> E) on the image encoder's [CLS],
      L2-normalised.
    - ``multimodal_projection`` ``h``: Linear(H -> E) on the fusion encoder's
      ``w_cls``, L2-normalised (Omni only; spec §4.11 #11).
    - ``mlm``: BERT/XLM-R LM head tied to the word table (``MaskedLMHead``) on the
      fused text states of the text-masked pass.
    - ``mim_kl``: Linear(H -> K_c) and ``mim_fr``: Linear(H -> D_t) on the fused
      ``v_cls`` of the image-masked pass.
    - ``itm``: ``ClassificationHead`` (2-way, index 1 = match,
      ``constants.ITM_MATCH``) on the fused ``w_cls``.

    One ``LearnedTemperature`` (``temperature``) is shared by ITC and the 9 Omni
    terms (spec §4.11 #7).

    **Image-text forward** (spec §4.6, three sub-passes, one call):

    1. Text embedding + the K text layers run once over ``[input_ids;
       masked_input_ids]`` (2B rows); the image encoder runs on ``pixels`` and,
       separately (its own batch-norm statistics), on ``greyed_pixels``.
    2. Clean pass: ``text_embedding = f(text cls)``, ``image_embedding = g(image
       cls)`` (ITC). ITM negatives: for each text one image, for each image one
       text, drawn from the **global** batch ∝ softmax(s/τ) without the positive
       (``inputs/itc_hard_negatives.py``); the text states, masks and visual
       tokens are all-gathered across replicas for it (differentiable). At K = 0
       (no text encoder) or without ITC the draw is uniform (random negatives,
       spec §4.11 #9, #17) and ``itc_weight`` is 0 (ITC skipped).
    3. One fusion call over 5B rows (B positives, B (text, negative image), B
       (negative text, image), B (masked text, clean image), B (clean text,
       greyed image)); rows never attend to each other, so this equals the
       separate sub-passes. Disabled tasks drop their rows.

    **Omni forward** (spec §4.5, §4.6): source and target rows are concatenated
    and run through the same encoder (siamese); each side gets ``f``, ``g`` and
    ``h``. Missing modalities are not special-cased here: the data gives grey
    pixels or an empty text, they run like any other row, and the loss terms' δ
    gates remove them (``losses/omni_retrieval.py``).

    K (``num_text_layers``): the encoder's constructor value, or per call a Python
    int or an int32 scalar tensor (modality randomization); a tensor K does not
    retrace a ``tf.function``.

    Args:
        encoder: Keyword arguments of ``CommerceMMEncoder``.
        projection_dim: E of ``f``, ``g`` and ``h`` (256, spec §4.11 #7).
        num_clusters: K_c, the MIM-kl head's outputs (the teacher's clusters).
        teacher_feature_dim: D_t, the MIM-fr head's outputs (teacher pool5 width).
        initial_temperature: τ at initialization (0.07).
        min_temperature: Smallest τ (0.001).
        max_temperature: Largest τ (0.5).
        tasks: The enabled image-text tasks, a subset of ``IMAGE_TEXT_TASKS``;
            disabled tasks have no head and no sub-pass.
        itm_dropout: Dropout before the ITM classifier.
        initializer_range: Stddev of the heads' truncated-normal initialisers.

    Call arguments:
        inputs: An image-text batch (``input_ids`` int32 [B, T], ``input_mask``
            int32 [B, T], ``pixels`` float32 [B, S, S, 3] in [0, 255]; with MLM
            ``masked_input_ids`` int32 [B, T] and ``masked_lm_positions`` int32
            [B, M]; with MIM ``greyed_pixels`` float32 [B, S, S, 3]; optional
            ``segment_ids``) or an Omni batch (``OMNI_INPUTS``: ``source_*`` and
            ``target_*`` ``input_ids``, ``input_mask``, ``pixels``). See
            ``systems/commerce_mm.py`` for the full batch contract.
        training: Dropout and batch-norm switch.
        num_text_layers: K for this call (None: the encoder's).
        seed: int32/int64 [2]; stateless seed of the ITM negative draws, the same
            on every replica (e.g. ``stateless_fold_in([run seed, stream],
            step)``). None: drawn from the global generator (then the draw may
            differ between replicas and runs).

    Returns:
        Image-text batch: ``text_embedding``, ``image_embedding`` float32 [B, E]
        (``f``, ``g``; L2-normalised), ``multimodal_embedding`` [B, E] (``h`` of
        the positive pairs; no image-text loss reads it), ``contrastive_scale``
        float32 [] (1/τ), ``itc_weight`` float32 [B] (1 = ITC counts, 0 at K = 0),
        ``sequence_output`` [B, T + 1 + P, H] and ``fused_text_cls`` [B, H] of the
        positive pairs; with ITM ``itm_logits`` [3B, 2] (rows: B positives, B
        (text_i, negative image), B (negative text, image_i)), ``itm_labels``
        int32 [3B], ``itm_weights`` float32 [3B] (0 = no negative could be drawn),
        ``itm_negative_image_index`` and ``itm_negative_text_index`` int32 [B]
        (global batch indices), ``itm_sampling_scale`` float32 [] (the 1/τ the
        draw used; 0 = uniform); with MLM ``mlm_logits`` [B, M, V]; with MIM
        ``mim_kl_logits`` [B, K_c], ``mim_fr_predictions`` [B, D_t].
        Omni batch: ``{side}_{modality}_embedding`` float32 [B, E] for side in
        (source, target) and modality in (text, image, multimodal), and
        ``contrastive_scale``.

    Raises:
        DataError: A batch key the enabled tasks need is missing.

    Example:
        >>> model = CommerceMMModel(encoder={...}, num_clusters=10000,
        ...                         teacher_feature_dim=2048)
        >>> out = model(batch, training=True, num_text_layers=tf.constant(2),
        ...             seed=tf.constant([7, 123]))

    Reference: CommerceMM §3.1-§3.4; spec imagebert_interbert_commercemm.md
    §4.3-§4.7, §4.11 #3, #7, #9, #11-#13, #17.

    Deviation: ITM is a 2-way softmax (index 1 = match, the framework's
    convention) instead of the paper's single sigmoid, as for ImageBERT
    (equivalent up to parametrisation). ITM negatives are drawn from the global
    batch (as BLIP), not from each replica's local batch (ALBEF).
    """

    def __init__(
        self,
        encoder: dict[str, Any],
        projection_dim: int = 256,
        num_clusters: int = 10000,
        teacher_feature_dim: int = 2048,
        initial_temperature: float = 0.07,
        min_temperature: float = 0.001,
        max_temperature: float = 0.5,
        tasks=IMAGE_TEXT_TASKS,
        itm_dropout: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(tasks) - set(IMAGE_TEXT_TASKS))
        if unknown:
            raise ValueError(
                f"unknown CommerceMM tasks {unknown}: valid are "
                f"{list(IMAGE_TEXT_TASKS)}"
            )
        self.encoder_kwargs = copy.deepcopy(dict(encoder))
        self.projection_dim = projection_dim
        self.num_clusters = num_clusters
        self.teacher_feature_dim = teacher_feature_dim
        self.initial_temperature = initial_temperature
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature
        self.tasks = tuple(t for t in IMAGE_TEXT_TASKS if t in set(tasks))
        self.itm_dropout = itm_dropout
        self.initializer_range = initializer_range

        def init():
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

        self.encoder = CommerceMMEncoder(**self.encoder_kwargs, name="encoder")
        hidden = self.encoder.hidden_size
        heads = {
            name: tf_keras.layers.Dense(
                projection_dim, kernel_initializer=init(), name=name
            )
            for name in PROJECTION_HEADS
        }
        if "mlm" in self.tasks:
            heads["mlm"] = MaskedLMHead(
                hidden, self.encoder.vocab_size, initializer_range, name="mlm_head"
            )
        if "mim_kl" in self.tasks:
            heads["mim_kl"] = tf_keras.layers.Dense(
                num_clusters, kernel_initializer=init(), name="mim_kl_head"
            )
        if "mim_fr" in self.tasks:
            heads["mim_fr"] = tf_keras.layers.Dense(
                teacher_feature_dim, kernel_initializer=init(), name="mim_fr_head"
            )
        if "itm" in self.tasks:
            heads["itm"] = ClassificationHead(
                2, itm_dropout, initializer_range, name="itm_head"
            )
        self.heads = heads
        self.temperature = LearnedTemperature(
            initial_temperature, min_temperature, max_temperature, name="temperature"
        )

    # --- helpers -------------------------------------------------------------

    def _num_text_layers(self, num_text_layers):
        """K as a Python int when static, else an int32 scalar tensor."""
        if num_text_layers is None:
            return self.encoder.num_text_layers
        static = tf.get_static_value(num_text_layers)
        if static is not None:
            return int(static)
        return tf.cast(num_text_layers, tf.int32)

    def _fuse(self, text_states, visual_tokens, input_mask, k, training):
        """The fusion encoder; both sequences in the compute dtype first (under
        mixed precision the text blocks return float32, the image encoder
        float16)."""
        dtype = self.compute_dtype
        return self.encoder.fuse(
            tf.cast(text_states, dtype),
            tf.cast(visual_tokens, dtype),
            input_mask,
            k,
            training=training,
        )

    def _project(self, head: str, x):
        """``head``(x), L2-normalised: float32 [B, E]."""
        y = tf.cast(self.heads[head](x), tf.float32)
        return tf.math.l2_normalize(y, axis=-1)

    def embeddings(
        self,
        input_ids,
        input_mask,
        pixels,
        num_text_layers=None,
        training=None,
        segment_ids=None,
    ):
        """``f``, ``g``, ``h`` of (text, image) rows; the Omni tower, one side.

        Args:
            input_ids: int32 [B, T].
            input_mask: int32 [B, T].
            pixels: float32 [B, S, S, 3] in [0, 255].
            num_text_layers: K (None, a Python int or an int32 scalar tensor).
            training: Dropout and batch-norm switch.
            segment_ids: int32 [B, T] or None (zeros).

        Returns:
            dict ``text``, ``image``, ``multimodal`` -> float32 [B, E],
            L2-normalised.
        """
        k = self._num_text_layers(num_text_layers)
        enc = self.encoder
        text = enc.embed_text(input_ids, segment_ids, training=training)
        text = enc.encode_text(text, input_mask, k, training=training)  # [B, T, H]
        visual = enc.encode_image(pixels, training=training)  # [B, 1 + P, H]
        fused = self._fuse(text, visual, input_mask, k, training)
        return {
            "text": self._project("text_projection", text[:, 0]),
            "image": self._project("image_projection", visual[:, 0]),
            "multimodal": self._project("multimodal_projection", fused[:, 0]),
        }

    # --- forward passes --------------------------------------------------------

    def call(self, inputs, training=None, num_text_layers=None, seed=None):
        if "source_input_ids" in inputs:
            return self._omni(inputs, training, num_text_layers)
        return self._image_text(inputs, training, num_text_layers, seed)

    def _image_text(self, inputs, training, num_text_layers, seed):
        needed = list(_IMAGE_TEXT_INPUTS)
        for task in self.tasks:
            needed += [k for k in _TASK_INPUTS[task] if k not in needed]
        _require(inputs, needed, "image-text")
        k = self._num_text_layers(num_text_layers)
        enc = self.encoder
        run_mlm = "mlm" in self.tasks
        run_mim = "mim_kl" in self.tasks or "mim_fr" in self.tasks
        run_itm = "itm" in self.tasks
        input_ids = inputs["input_ids"]
        input_mask = tf.cast(inputs["input_mask"], tf.int32)
        b = tf.shape(input_ids)[0]
        t = tf.shape(input_ids)[1]

        # Text embedding + text encoder over [clean; masked] (one call, 2B rows).
        ids = [input_ids] + ([inputs["masked_input_ids"]] if run_mlm else [])
        copies = len(ids)
        segments = inputs.get("segment_ids")
        if segments is not None:
            segments = tf.concat([segments] * copies, axis=0)
        text = enc.embed_text(tf.concat(ids, 0), segments, training=training)
        text = enc.encode_text(
            text, tf.concat([input_mask] * copies, 0), k, training=training
        )  # [copies*B, T, H]
        clean_text = text[:b]
        visual = enc.encode_image(inputs["pixels"], training=training)  # [B, 1+P, H]

        # Clean pass: ITC embeddings (before fusion).
        outputs = {
            "text_embedding": self._project("text_projection", clean_text[:, 0]),
            "image_embedding": self._project("image_projection", visual[:, 0]),
        }
        scale = self.temperature(tf.constant(1.0))  # 1/τ
        outputs["contrastive_scale"] = scale
        if isinstance(k, int):
            text_encoder = tf.constant(k > 0)
        else:
            text_encoder = k > 0
        itc_on = tf.logical_and(text_encoder, tf.constant("itc" in self.tasks))
        outputs["itc_weight"] = tf.fill([b], tf.cast(itc_on, tf.float32))

        # Fusion rows: (text states, text mask, visual tokens) per block of B.
        rows = [(clean_text, input_mask, visual)]
        if run_itm:
            sampling_scale = tf.where(itc_on, scale, 0.0)  # 0: uniform draw
            seeds = _split_seed(seed)
            sims_t2i, offset = global_similarities(
                outputs["text_embedding"], outputs["image_embedding"]
            )  # [B_local, B_global]
            sims_i2t, _ = global_similarities(
                outputs["image_embedding"], outputs["text_embedding"]
            )
            neg_image, valid_image = sample_hard_negatives(
                sims_t2i, sampling_scale, seeds[0], offset
            )
            neg_text, valid_text = sample_hard_negatives(
                sims_i2t, sampling_scale, seeds[1], offset
            )
            (text_all, mask_all, visual_all), _ = gather_across_replicas(
                (clean_text, input_mask, visual)
            )
            rows.append((clean_text, input_mask, tf.gather(visual_all, neg_image)))
            rows.append(
                (tf.gather(text_all, neg_text), tf.gather(mask_all, neg_text), visual)
            )
            outputs["itm_negative_image_index"] = neg_image
            outputs["itm_negative_text_index"] = neg_text
            outputs["itm_sampling_scale"] = sampling_scale
        if run_mlm:  # text-masked pass: masked text, intact image
            rows.append((text[b:], input_mask, visual))
        if run_mim:  # image-masked pass: intact text, greyed image
            greyed = enc.encode_image(inputs["greyed_pixels"], training=training)
            rows.append((clean_text, input_mask, greyed))

        dtype = self.compute_dtype
        fused = self._fuse(
            tf.concat([tf.cast(r[0], dtype) for r in rows], 0),
            tf.concat([tf.cast(r[2], dtype) for r in rows], 0),
            tf.concat([r[1] for r in rows], 0),
            k,
            training,
        )  # [len(rows)*B, T + 1 + P, H]
        blocks = iter(range(len(rows)))

        def block():
            i = next(blocks)
            return fused[i * b : (i + 1) * b]

        positive = block()
        outputs["sequence_output"] = positive
        outputs["fused_text_cls"] = positive[:, 0]
        outputs["multimodal_embedding"] = self._project(
            "multimodal_projection", positive[:, 0]
        )
        if run_itm:
            negatives = tf.concat([block(), block()], 0)
            pairs = tf.concat([positive[:, 0], negatives[:, 0]], 0)  # [3B, H]
            outputs["itm_logits"] = self.heads["itm"](pairs, training=training)
            outputs["itm_labels"] = tf.concat(
                [tf.fill([b], ITM_MATCH), tf.fill([2 * b], ITM_MISMATCH)], 0
            )
            outputs["itm_weights"] = tf.concat(
                [tf.ones([b]), valid_image, valid_text], 0
            )
        if run_mlm:
            outputs["mlm_logits"] = self.heads["mlm"](
                block(),
                inputs["masked_lm_positions"],
                enc.text_embedding.embedding_table,
            )
        if run_mim:
            image_cls = block()[:, t]  # fused v_cls
            if "mim_kl" in self.tasks:
                outputs["mim_kl_logits"] = self.heads["mim_kl"](image_cls)
            if "mim_fr" in self.tasks:
                outputs["mim_fr_predictions"] = self.heads["mim_fr"](image_cls)
        return outputs

    def _omni(self, inputs, training, num_text_layers):
        _require(inputs, OMNI_INPUTS, "Omni-Retrieval")
        sides = ("source", "target")
        ids, masks = _pad_to_same_length(
            [inputs[f"{s}_input_ids"] for s in sides],
            [tf.cast(inputs[f"{s}_input_mask"], tf.int32) for s in sides],
        )
        b = tf.shape(ids[0])[0]
        both = self.embeddings(
            tf.concat(ids, 0),
            tf.concat(masks, 0),
            tf.concat([inputs[f"{s}_pixels"] for s in sides], 0),
            num_text_layers,
            training=training,
        )  # siamese: one pass over [source; target]
        outputs = {"contrastive_scale": self.temperature(tf.constant(1.0))}
        for modality, embedding in both.items():
            outputs[f"source_{modality}_embedding"] = embedding[:b]
            outputs[f"target_{modality}_embedding"] = embedding[b:]
        return outputs

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "encoder": _plain(self.encoder_kwargs),
            "projection_dim": self.projection_dim,
            "num_clusters": self.num_clusters,
            "teacher_feature_dim": self.teacher_feature_dim,
            "initial_temperature": self.initial_temperature,
            "min_temperature": self.min_temperature,
            "max_temperature": self.max_temperature,
            "tasks": list(self.tasks),
            "itm_dropout": self.itm_dropout,
            "initializer_range": self.initializer_range,
        }


def _require(inputs, keys, kind: str) -> None:
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise DataError(
            f"the CommerceMM {kind} batch lacks {missing} (has {sorted(inputs)}): "
            "build it with the CommerceMM pipeline (systems/commerce_mm.py batch keys)"
        )


def _split_seed(seed) -> tf.Tensor:
    """Two stateless seeds [2, 2] (image draw, text draw) from ``seed`` or the
    global generator."""
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)


def _pad_to_same_length(ids, masks):
    """Pads each side's text (ids 0, mask 0) to the longer of the two."""
    if ids[0].shape[1] is not None and ids[0].shape[1] == ids[1].shape[1]:
        return ids, masks
    length = tf.maximum(tf.shape(ids[0])[1], tf.shape(ids[1])[1])

    def pad(x):
        return tf.pad(x, [[0, 0], [0, length - tf.shape(x)[1]]])

    return [pad(x) for x in ids], [pad(m) for m in masks]
