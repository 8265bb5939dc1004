"""Patch embeddings ``LN(FC_img(f) + position + segment [+ sequence position])``.

The position is ``FC_pos(box)`` (Kaleido-BERT §3.2) or a learned table indexed by
patch order (FashionBERT §3.2, F-Q3). ImageBERT's region embedding adds one
"dummy" sequence-position vector shared by every visual token and biases on the
projections (``sequence_position=True, projection_bias=True``).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

POSITION_TYPES = ("box", "index")


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class PatchEmbedding(tf_keras.layers.Layer):
    """Embeds patch features with their 5-D boxes and the image segment.

    Each patch's D-dimensional backbone feature is projected to H (no bias, as the
    released code), its box ``[x1, x2, y1, y2, w*h]`` is projected by a bias-free
    5 x H matrix shared by every level (``position_type="box"``) or its order
    0..P-1 looks up a learned P x H table (``position_type="index"``, FashionBERT's
    ``patch_position_embeddings``; the boxes are then not read), and the
    image-modality segment embedding ('I') is added; LayerNorm and dropout follow.

    ImageBERT's region embedding (§3.2) is ``sequence_position=True,
    projection_bias=True`` with the ``box`` position: ``LN(W_img r + b_img +
    W_loc c + b_loc + segment + p_seq)``, where ``c`` is the region's 5-D location
    and ``p_seq`` one learned H-vector added to every visual token (the paper's
    "fixed dummy position for all the visual tokens", ``checkpoints/google_bert.py``
    initialises it from BERT's position row 0).

    Args:
        hidden_size: H.
        level_sizes: Patches per level in sequence order, e.g. (1, 4, 9, 16, 25)
            for the kaleido layout or (64,) for the 8x8 grid.
        per_level_projection: One image projection and LayerNorm per level (the
            released code's variant, K-Q7) instead of one shared (the paper).
        per_level_segments: Segment ids 1..n per level (released code, K-Q6)
            instead of one image segment id 1 (the paper's 'T'/'I').
        initializer_range: Stddev of the truncated-normal initialiser.
        feature_dropout: Dropout on the raw features before projection (released
            code).
        dropout: Dropout after the LayerNorm.
        position_type: ``"box"`` (Kaleido-BERT) or ``"index"`` (FashionBERT, F-Q3).
        sequence_position: Add one learned H-vector (``sequence_position``) to
            every token: ImageBERT's fixed dummy sequence position.
        projection_bias: Biases on the image and box projections (ImageBERT's
            "projected"; Kaleido-BERT's released code has none).

    Call arguments:
        patch_features: float32 [B, P, D]. Backbone features (zeros = blanked).
        patch_boxes: float32 [B, P, 5]. Normalised boxes.
        training: Dropout switch.

    Returns:
        float32 [B, P, H].

    Reference: Kaleido-BERT §3.2 "Kaleido embeddings"; FashionBERT §3.2
    (kaleido_fashionbert.md §3.2: the released ``ImageEmbeddings``); ImageBERT §3.2
    (imagebert_interbert_commercemm.md §2.2).

    Deviation: ImageBERT's dummy position is a separate learned vector (set from
    BERT's position row 0 when BERT is loaded) rather than a shared row of the
    text position table (the spec's [D] alternative).
    """

    def __init__(
        self,
        hidden_size: int,
        level_sizes: tuple[int, ...],
        per_level_projection: bool = False,
        per_level_segments: bool = False,
        initializer_range: float = 0.02,
        feature_dropout: float = 0.0,
        dropout: float = 0.1,
        position_type: str = "box",
        sequence_position: bool = False,
        projection_bias: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        level_sizes = tuple(int(n) for n in level_sizes)
        if not level_sizes or min(level_sizes) < 1:
            raise ValueError(f"level_sizes must be positive, got {level_sizes}")
        if position_type not in POSITION_TYPES:
            raise ValueError(
                f"position_type must be one of {POSITION_TYPES}, got {position_type!r}"
            )
        self.position_type = position_type
        self.hidden_size = hidden_size
        self.level_sizes = level_sizes
        self.per_level_projection = per_level_projection
        self.per_level_segments = per_level_segments
        self.initializer_range = initializer_range
        self.feature_dropout = feature_dropout
        self.dropout = dropout
        self.sequence_position = bool(sequence_position)
        self.projection_bias = bool(projection_bias)

        def init():
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

        count = len(level_sizes) if per_level_projection else 1
        self.image_projections = [
            tf_keras.layers.Dense(
                hidden_size,
                use_bias=self.projection_bias,
                kernel_initializer=init(),
                name="image_projection" if count == 1 else f"image_projection_{i + 1}",
            )
            for i in range(count)
        ]
        self.layer_norms = [
            tf_keras.layers.LayerNormalization(
                epsilon=1e-12,
                dtype=tf.float32,
                name="layer_norm" if count == 1 else f"layer_norm_{i + 1}",
            )
            for i in range(count)
        ]
        self.position_projection = None
        if position_type == "box":
            self.position_projection = tf_keras.layers.Dense(
                hidden_size,
                use_bias=self.projection_bias,
                kernel_initializer=init(),
                name="box_projection",
            )
        self.feature_dropout_layer = tf_keras.layers.Dropout(feature_dropout)
        self.dropout_layer = tf_keras.layers.Dropout(dropout)

    def build(self, input_shape) -> None:
        segments = 1 + (len(self.level_sizes) if self.per_level_segments else 1)
        self.segment_table = self.add_weight(
            name="segment_embeddings",
            shape=(segments, self.hidden_size),
            initializer=tf_keras.initializers.TruncatedNormal(
                stddev=self.initializer_range
            ),
        )
        self.position_table = None
        if self.position_type == "index":
            self.position_table = self.add_weight(
                name="patch_position_embeddings",
                shape=(sum(self.level_sizes), self.hidden_size),
                initializer=tf_keras.initializers.TruncatedNormal(
                    stddev=self.initializer_range
                ),
            )
        self.sequence_position_vector = None
        if self.sequence_position:
            self.sequence_position_vector = self.add_weight(
                name="sequence_position",
                shape=(self.hidden_size,),
                initializer=tf_keras.initializers.TruncatedNormal(
                    stddev=self.initializer_range
                ),
            )
        ids = []
        for level, n in enumerate(self.level_sizes):
            ids += [level + 1 if self.per_level_segments else 1] * n
        self._segment_ids = tf.constant(ids, tf.int32)  # [P]
        super().build(input_shape)

    def call(self, patch_features, patch_boxes, training=None):
        x = self.feature_dropout_layer(patch_features, training=training)
        if self.per_level_projection:
            parts = tf.split(x, self.level_sizes, axis=1)
            x = tf.concat([p(v) for p, v in zip(self.image_projections, parts)], 1)
        else:
            x = self.image_projections[0](x)
        if self.position_table is not None:
            x += self.position_table[tf.newaxis]  # [1, P, H]
        else:
            x += self.position_projection(patch_boxes)
        x += tf.gather(self.segment_table, self._segment_ids)[tf.newaxis]  # [1, P, H]
        if self.sequence_position_vector is not None:
            x += self.sequence_position_vector  # [H]: the same for every token
        if self.per_level_projection:
            parts = tf.split(x, self.level_sizes, axis=1)
            x = tf.concat([n(v) for n, v in zip(self.layer_norms, parts)], 1)
        else:
            x = self.layer_norms[0](x)
        return self.dropout_layer(x, training=training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            level_sizes=list(self.level_sizes),
            per_level_projection=self.per_level_projection,
            per_level_segments=self.per_level_segments,
            initializer_range=self.initializer_range,
            feature_dropout=self.feature_dropout,
            dropout=self.dropout,
            position_type=self.position_type,
            sequence_position=self.sequence_position,
            projection_bias=self.projection_bias,
        )
        return config
