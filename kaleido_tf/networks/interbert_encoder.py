"""InterBERT's network: single-stream interaction, then two-stream extraction (§3.3).

The sequence is ``[o_CLS, o_1 .. o_R | [CLS] w_1 .. w_n [SEP] [PAD]..]`` (image tokens
first, as the released code orders it). The interaction module is the shared
single-stream stack (all-attention over both modalities, BERT-initialised); the
image extractor then re-reads the image slice and the text extractor the text slice,
each attending to its own modality only.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as nlp_layers

from kaleido_tf.layers.activations import gelu_tanh
from kaleido_tf.layers.attention_mask import padding_attention_mask
from kaleido_tf.layers.patch_embedding import PatchEmbedding
from kaleido_tf.layers.text_embedding import TextEmbedding

EXTRACTOR_INITS = ("normal", "copy_interaction")
EXTRACTION_ATTENTIONS = ("slice", "block_mask")
# The image [CLS] token's location (x1/W, y1/H, x2/W, y2/H, area/(W H)): the whole
# image (imagebert_interbert_commercemm.md §3.2 [code]).
IMAGE_CLS_BOX = (0.0, 0.0, 1.0, 1.0, 1.0)


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class InterBertEncoder(tf_keras.layers.Layer):
    """Image and text embeddings, an interaction stack, and two extraction stacks.

    1. **Image embedding.** An image [CLS] token is prepended to the R regions: its
       feature is the mean of the real (``patch_mask`` = 1) raw region features and
       its location the whole image ``IMAGE_CLS_BOX``; it is then embedded like a
       region by the shared ``PatchEmbedding`` (``LN(W_f f + b_f + W_b box + b_b
       + segment)``, dropout; the released code's two ``Linear`` layers), so the
       image slice has R + 1 tokens, the first always real.
    2. **Text embedding.** BERT's (``TextEmbedding``; segment ids as given, 0 for
       captions).
    3. **Interaction module.** ``num_interaction_layers`` post-LN BERT blocks (the
       shared tf-models ``TransformerEncoderBlock``, named ``layer_{i}`` like
       ``CrossModalEncoder.blocks`` so the BERT name map applies) over
       ``[image; text]`` with a padding mask: every position attends to every real
       position of both modalities ("all-attention").
    4. **Extraction module.** The output is split by modality. The image extractor
       (``num_image_extractor_layers`` blocks, ``image_layer_{i}``) reads the image
       slice and attends only to real image positions; the text extractor
       (``num_text_extractor_layers`` blocks, ``text_layer_{i}``) reads the text
       slice and attends only to real text positions. With
       ``extraction_attention="slice"`` (default, cheaper: (R+1)^2 + T^2 scores per
       head instead of 2 (R+1+T)^2) each stream runs on its slice; with
       ``"block_mask"`` each runs on the whole sequence with a mask that lets a
       query see only keys of its own modality, and its own modality's rows are
       kept. Both give the same outputs from the same weights; the second exists to
       inspect the attention over all L positions.

    Text-only path (GLUE, single-modal checks; spec §3.11 #18): without
    ``patch_features`` in the inputs the interaction module runs on the text alone
    and the text extractor follows; no image outputs are returned.

    Extractor initialisation (``extractor_init``):
    ``"normal"`` (paper): every extractor kernel drawn from N(0, ``extractor_stddev``
    = 0.02), biases 0, LayerNorm 1/0. ``"copy_interaction"`` (released code, whose
    text-side layers all load BERT): the extractors still start random, and after
    BERT weights are loaded into the interaction stack the caller runs
    ``initialize_text_extractor()``, which copies the top
    ``num_text_extractor_layers`` interaction blocks into the text extractor (with
    12 + 6 + 6 that is BERT layers 7-12, which the released code's text extractor
    loads). For the released 6 + 6 + 6, whose interaction stack holds BERT layers
    1-6, pass ``source_blocks`` holding BERT layers 7-12 (e.g. blocks 6-11 of a
    12-layer ``CrossModalEncoder`` loaded by ``load_google_bert``). The image
    extractor stays random either way: the released code's image
    layers are new, and with ``image_num_attention_heads`` = 8 their shapes differ.

    Args:
        vocab_size: V.
        hidden_size: H.
        num_attention_heads: N of the interaction and text blocks; H % N == 0.
        inner_dim: Feed-forward width (3072 for BERT-base).
        num_regions: R, region slots per image (36 pre-training, 100 Flickr30K);
            the image slice has R + 1 tokens.
        num_interaction_layers: Single-stream blocks (paper 12, released code 6).
        num_image_extractor_layers: Image extractor blocks (6).
        num_text_extractor_layers: Text extractor blocks (6).
        image_num_attention_heads: Heads of the image extractor; 0 = the same as
            ``num_attention_heads`` (paper); the released code uses 8.
        image_output_dropout: Dropout inside the image extractor; negative = the
            same as ``output_dropout`` (paper); the released code uses 0.2.
        max_sequence_length: Rows of the text position table.
        type_vocab_size: Rows of the text token-type table.
        initializer_range: Stddev of the truncated-normal initialisers of the
            embeddings and interaction blocks (overwritten by BERT weights).
        extractor_stddev: Stddev of the extractors' normal initialiser (paper
            0.02).
        extractor_init: ``"normal"`` or ``"copy_interaction"`` (see above).
        output_dropout: Dropout on embeddings and block outputs.
        attention_dropout: Dropout on attention probabilities.
        extraction_attention: ``"slice"`` or ``"block_mask"`` (see above).
        return_attention_scores: Also return every block's attention
            probabilities (for inspection and tests).

    Call arguments:
        inputs: dict with ``input_ids`` int32 [B, T], ``input_mask`` int32 [B, T]
            (1 = real token, 0 = padding), ``segment_ids`` int32 [B, T], and for
            the two-modality path ``patch_features`` float32 [B, R, D] (regions,
            zero vectors where MRM masked them), ``patch_boxes`` float32 [B, R, 5]
            ``(x1/W, y1/H, x2/W, y2/H, area/(W H))`` and optionally ``patch_mask``
            int32 [B, R] (1 = real region, 0 = padding; default all ones).
        training: Dropout switch.

    Returns:
        dict: ``sequence_output`` float32 [B, R + 1 + T, H] (interaction output;
        [B, T, H] on the text-only path); ``image_sequence_output`` float32
        [B, R + 1, H] (image extractor; index 0 = image [CLS], region r at r + 1);
        ``text_sequence_output`` float32 [B, T, H] (text extractor; text positions
        as in ``input_ids``, so ``masked_lm_positions`` index it directly);
        ``image_cls_output`` float32 [B, H]; ``text_cls_output`` float32 [B, H];
        ``embedding_table`` float32 [V, H] (for the tied MSM head). With
        ``return_attention_scores``: ``interaction_attention_scores`` float32
        [layers, B, N, Lq, Lk] and ``image_attention_scores`` /
        ``text_attention_scores`` (extractors; Lq = Lk = R + 1 or T for
        ``"slice"``, the whole L for ``"block_mask"``). The image keys are absent
        on the text-only path.

    Example:
        >>> encoder = InterBertEncoder(30522, 768, 12, 3072, num_regions=36)
        >>> out = encoder(batch)  # batch keys as above
        >>> itm_logits = MatchMLPHead(1024)(out["image_cls_output"],
        ...                                 out["text_cls_output"])

    Reference: InterBERT §3.1-§3.3 (Lin et al. 2020);
    imagebert_interbert_commercemm.md §3.2, §3.3, §3.10, §3.11 #1-#6, #18.

    Deviation: the image segment embedding is always added (the paper's choice,
    §3.11 #5; ``PatchEmbedding`` has no switch for the released code's
    segment-free image tokens). The image [CLS] feature is the mean of the
    features the encoder receives, i.e. after MRM zeroing, so a masked region's
    feature cannot leak into it through the mean.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_attention_heads: int,
        inner_dim: int,
        num_regions: int,
        num_interaction_layers: int = 12,
        num_image_extractor_layers: int = 6,
        num_text_extractor_layers: int = 6,
        image_num_attention_heads: int = 0,
        image_output_dropout: float = -1.0,
        max_sequence_length: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        extractor_stddev: float = 0.02,
        extractor_init: str = "normal",
        output_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        extraction_attention: str = "slice",
        return_attention_scores: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        image_heads = image_num_attention_heads or num_attention_heads
        for name, heads in (
            ("num_attention_heads", num_attention_heads),
            ("image_num_attention_heads", image_heads),
        ):
            if heads < 1 or hidden_size % heads:
                raise ValueError(
                    f"hidden_size {hidden_size} is not a multiple of {name} {heads}"
                )
        if num_regions < 1:
            raise ValueError(f"num_regions must be >= 1, got {num_regions}")
        for name, count in (
            ("num_interaction_layers", num_interaction_layers),
            ("num_image_extractor_layers", num_image_extractor_layers),
            ("num_text_extractor_layers", num_text_extractor_layers),
        ):
            if count < 0:
                raise ValueError(f"{name} must be >= 0, got {count}")
        if extractor_init not in EXTRACTOR_INITS:
            raise ValueError(
                f"extractor_init must be one of {EXTRACTOR_INITS}, got "
                f"{extractor_init!r}"
            )
        if extractor_init == "copy_interaction" and (
            num_text_extractor_layers > num_interaction_layers
        ):
            raise ValueError(
                "extractor_init='copy_interaction' needs num_text_extractor_layers "
                f"({num_text_extractor_layers}) <= num_interaction_layers "
                f"({num_interaction_layers})"
            )
        if extraction_attention not in EXTRACTION_ATTENTIONS:
            raise ValueError(
                f"extraction_attention must be one of {EXTRACTION_ATTENTIONS}, got "
                f"{extraction_attention!r}"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.inner_dim = inner_dim
        self.num_regions = num_regions
        self.num_interaction_layers = num_interaction_layers
        self.num_image_extractor_layers = num_image_extractor_layers
        self.num_text_extractor_layers = num_text_extractor_layers
        self.image_num_attention_heads = image_num_attention_heads
        self.image_output_dropout = image_output_dropout
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.extractor_stddev = extractor_stddev
        self.extractor_init = extractor_init
        self.output_dropout = output_dropout
        self.attention_dropout = attention_dropout
        self.extraction_attention = extraction_attention
        self.return_attention_scores = return_attention_scores

        def truncated():
            # A fresh initialiser per layer: a shared unseeded instance gives every
            # layer the same initial values.
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

        def normal():
            return tf_keras.initializers.RandomNormal(stddev=extractor_stddev)

        def block(name, heads, dropout, initializer):
            return nlp_layers.TransformerEncoderBlock(
                num_attention_heads=heads,
                inner_dim=inner_dim,
                inner_activation=gelu_tanh,
                output_dropout=dropout,
                attention_dropout=attention_dropout,
                kernel_initializer=initializer,
                norm_epsilon=1e-12,
                return_attention_scores=return_attention_scores,
                name=name,
            )

        self.text_embedding = TextEmbedding(
            vocab_size,
            hidden_size,
            max_sequence_length,
            type_vocab_size,
            initializer_range,
            output_dropout,
            name="text_embedding",
        )
        self.patch_embedding = PatchEmbedding(
            hidden_size,
            (num_regions + 1,),
            initializer_range=initializer_range,
            dropout=output_dropout,
            position_type="box",
            projection_bias=True,
            name="patch_embedding",
        )
        self.blocks = [
            block(f"layer_{i}", num_attention_heads, output_dropout, truncated())
            for i in range(num_interaction_layers)
        ]
        image_dropout = (
            output_dropout if image_output_dropout < 0 else (image_output_dropout)
        )
        self.image_blocks = [
            block(f"image_layer_{i}", image_heads, image_dropout, normal())
            for i in range(num_image_extractor_layers)
        ]
        self.text_blocks = [
            block(f"text_layer_{i}", num_attention_heads, output_dropout, normal())
            for i in range(num_text_extractor_layers)
        ]
        self._image_cls_box = tf.constant(IMAGE_CLS_BOX, tf.float32)

    def embed_image(self, patch_features, patch_boxes, patch_mask=None, training=None):
        """The image slice ``[o_CLS, o_1 .. o_R]`` embedded, and its padding mask.

        Args:
            patch_features: float32 [B, R, D]. Raw region features.
            patch_boxes: float32 [B, R, 5]. Normalised region locations.
            patch_mask: int32 [B, R]. 1 = real region, 0 = padding; default all 1.
            training: Dropout switch.

        Returns:
            ``(embeddings float32 [B, R + 1, H], mask int32 [B, R + 1])``; mask
            index 0 (the image [CLS]) is always 1.
        """
        features = tf.cast(patch_features, tf.float32)
        batch = tf.shape(features)[0]
        if patch_mask is None:
            patch_mask = tf.ones(tf.shape(features)[:2], tf.int32)
        mask = tf.cast(patch_mask, tf.int32)
        weights = tf.cast(mask, tf.float32)[..., tf.newaxis]  # [B, R, 1]
        count = tf.reduce_sum(weights, axis=1)  # [B, 1]
        cls_feature = tf.math.divide_no_nan(
            tf.reduce_sum(features * weights, axis=1), count
        )  # [B, D]
        features = tf.concat([cls_feature[:, tf.newaxis], features], axis=1)
        cls_box = tf.tile(self._image_cls_box[tf.newaxis, tf.newaxis], [batch, 1, 1])
        boxes = tf.concat([cls_box, tf.cast(patch_boxes, tf.float32)], axis=1)
        image_mask = tf.concat([tf.ones([batch, 1], tf.int32), mask], axis=1)
        embeddings = self.patch_embedding(features, boxes, training=training)
        return embeddings, image_mask

    def _run(self, blocks, x, attention_mask, training):
        scores = []
        for layer in blocks:
            out = layer([x, attention_mask], training=training)
            if self.return_attention_scores:
                x, score = out
                scores.append(score)
            else:
                x = out
        return x, scores

    def call(self, inputs, training=None):
        text = self.text_embedding(
            inputs["input_ids"], inputs["segment_ids"], training=training
        )
        text_mask = tf.cast(inputs["input_mask"], tf.int32)  # [B, T]
        outputs = {"embedding_table": self.text_embedding.embedding_table}
        if "patch_features" not in inputs:
            x, interaction_scores = self._run(
                self.blocks, text, padding_attention_mask(text_mask), training
            )
            text_out, text_scores = self._run(
                self.text_blocks, x, padding_attention_mask(text_mask), training
            )
            outputs.update(
                sequence_output=x,
                text_sequence_output=text_out,
                text_cls_output=text_out[:, 0],
            )
            if self.return_attention_scores:
                outputs["interaction_attention_scores"] = _stack(interaction_scores)
                outputs["text_attention_scores"] = _stack(text_scores)
            return outputs

        image, image_mask = self.embed_image(
            inputs["patch_features"],
            inputs["patch_boxes"],
            inputs.get("patch_mask"),
            training=training,
        )
        num_image = self.num_regions + 1
        x = tf.concat([image, text], axis=1)  # [B, L, H], L = R + 1 + T
        mask = tf.concat([image_mask, text_mask], axis=1)  # [B, L]
        x, interaction_scores = self._run(
            self.blocks, x, padding_attention_mask(mask), training
        )
        if self.extraction_attention == "slice":
            image_out, image_scores = self._run(
                self.image_blocks,
                x[:, :num_image],
                padding_attention_mask(image_mask),
                training,
            )
            text_out, text_scores = self._run(
                self.text_blocks,
                x[:, num_image:],
                padding_attention_mask(text_mask),
                training,
            )
        else:
            # [B, L]: 1 = image position, 0 = text position.
            is_image = tf.concat(
                [tf.ones_like(image_mask), tf.zeros_like(text_mask)], axis=1
            )
            same = tf.cast(
                tf.equal(is_image[:, :, tf.newaxis], is_image[:, tf.newaxis, :]),
                tf.int32,
            )  # [B, L, L]: query and key of the same modality
            block_mask = padding_attention_mask(mask) * same
            image_out, image_scores = self._run(
                self.image_blocks, x, block_mask, training
            )
            text_out, text_scores = self._run(self.text_blocks, x, block_mask, training)
            image_out = image_out[:, :num_image]
            text_out = text_out[:, num_image:]
        outputs.update(
            sequence_output=x,
            image_sequence_output=image_out,
            text_sequence_output=text_out,
            image_cls_output=image_out[:, 0],
            text_cls_output=text_out[:, 0],
        )
        if self.return_attention_scores:
            outputs["interaction_attention_scores"] = _stack(interaction_scores)
            outputs["image_attention_scores"] = _stack(image_scores)
            outputs["text_attention_scores"] = _stack(text_scores)
        return outputs

    def initialize_text_extractor(self, source_blocks=None) -> None:
        """Copies weights into the text extractor (``extractor_init`` =
        ``"copy_interaction"``; call after BERT weights are loaded).

        Args:
            source_blocks: Built ``TransformerEncoderBlock``s, one per text
                extractor layer, in order; default the top
                ``num_text_extractor_layers`` interaction blocks.

        Raises:
            ValueError: when ``extractor_init`` is not ``"copy_interaction"``, the
                encoder is not built, or the sources do not match.
        """
        if self.extractor_init != "copy_interaction":
            raise ValueError(
                "initialize_text_extractor needs extractor_init='copy_interaction', "
                f"this encoder has {self.extractor_init!r}"
            )
        if not self.built:
            raise ValueError("call the encoder once before initialize_text_extractor")
        n = self.num_text_extractor_layers
        if source_blocks is None:
            source_blocks = self.blocks[len(self.blocks) - n :]
        source_blocks = list(source_blocks)
        if len(source_blocks) != n:
            raise ValueError(f"need {n} source blocks, got {len(source_blocks)}")
        for target, source in zip(self.text_blocks, source_blocks):
            target.set_weights(source.get_weights())

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            inner_dim=self.inner_dim,
            num_regions=self.num_regions,
            num_interaction_layers=self.num_interaction_layers,
            num_image_extractor_layers=self.num_image_extractor_layers,
            num_text_extractor_layers=self.num_text_extractor_layers,
            image_num_attention_heads=self.image_num_attention_heads,
            image_output_dropout=self.image_output_dropout,
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
            extractor_stddev=self.extractor_stddev,
            extractor_init=self.extractor_init,
            output_dropout=self.output_dropout,
            attention_dropout=self.attention_dropout,
            extraction_attention=self.extraction_attention,
            return_attention_scores=self.return_attention_scores,
        )
        return config


def _stack(scores: list[tf.Tensor]) -> tf.Tensor:
    """[layers, B, N, Lq, Lk]; an empty stack gives shape [0]."""
    return tf.stack(scores) if scores else tf.zeros([0])


def count_parameters(
    vocab_size: int = 30522,
    hidden_size: int = 768,
    num_attention_heads: int = 12,
    inner_dim: int = 3072,
    num_regions: int = 36,
    feature_dim: int = 2048,
    **encoder_kwargs,
) -> dict[str, int]:
    """Parameters of an InterBERT encoder, built by one call on a zero example.

    The defaults are the paper's configuration (12 + 6 + 6 layers, H 768, 12
    heads, BERT-base vocabulary and 512 text positions; spec §3.3 "Parameter
    count" derives about 199M with heads, the paper reports 173M, §3.11 #2).

    Args:
        vocab_size: V.
        hidden_size: H.
        num_attention_heads: N.
        inner_dim: Feed-forward width.
        num_regions: R.
        feature_dim: D, the region feature size.
        **encoder_kwargs: Further ``InterBertEncoder`` arguments (layer counts,
            ``image_num_attention_heads``, ...).

    Returns:
        dict: parameter counts of ``text_embedding``, ``image_embedding``,
        ``interaction``, ``image_extractor``, ``text_extractor`` and ``total``.
    """
    encoder = InterBertEncoder(
        vocab_size,
        hidden_size,
        num_attention_heads,
        inner_dim,
        num_regions,
        **encoder_kwargs,
    )
    # One zero example of two tokens creates the weights; its values are unused.
    tokens = tf.zeros([1, 2], tf.int32)
    encoder(
        {
            "input_ids": tokens,
            "input_mask": tokens,
            "segment_ids": tokens,
            "patch_features": tf.zeros([1, num_regions, feature_dim]),
            "patch_boxes": tf.zeros([1, num_regions, 5]),
        },
        training=False,
    )

    def size(layers):
        return sum(w.shape.num_elements() for layer in layers for w in layer.weights)

    counts = {
        "text_embedding": size([encoder.text_embedding]),
        "image_embedding": size([encoder.patch_embedding]),
        "interaction": size(encoder.blocks),
        "image_extractor": size(encoder.image_blocks),
        "text_extractor": size(encoder.text_blocks),
    }
    counts["total"] = sum(counts.values())
    return counts
