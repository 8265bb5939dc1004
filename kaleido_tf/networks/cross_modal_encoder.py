"""Single-stream cross-modal encoder: ``[CLS] text [SEP] | patches`` -> BERT stack."""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as nlp_layers

from kaleido_tf.layers.activations import gelu_tanh
from kaleido_tf.layers.attention_mask import (
    padding_attention_mask,
    seq2seq_attention_mask,
)
from kaleido_tf.layers.patch_embedding import PatchEmbedding
from kaleido_tf.layers.text_embedding import TextEmbedding

ATTENTION_PATTERNS = ("bidirectional", "seq2seq")


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class CrossModalEncoder(tf_keras.layers.Layer):
    """Text and patch embeddings, concatenated, through a stack of BERT blocks.

    The sequence is ``[CLS] t1 .. tn [SEP] [PAD].. | L1 | L2 | L3 | L4 | L5`` for the
    kaleido layout (or the 64 grid patches); every position attends to every real
    position (``attention="bidirectional"``), or with ``attention="seq2seq"`` text
    is causal and patches see only patches (captioning, K-Q19). The blocks are
    tf-models-official's ``TransformerEncoderBlock`` (post-norm, as BERT); the
    pooler is a tanh dense on [CLS].

    Args:
        vocab_size: V.
        hidden_size: H.
        num_layers: Transformer blocks.
        num_attention_heads: N; H % N == 0.
        inner_dim: Feed-forward width.
        level_sizes: Patches per level, e.g. (1, 4, 9, 16, 25).
        max_sequence_length: Rows of the text position table.
        type_vocab_size: Rows of the text token-type table.
        initializer_range: Stddev of truncated-normal initialisers.
        output_dropout: Dropout on embeddings and block outputs.
        attention_dropout: Dropout on attention probabilities.
        per_level_projection: See PatchEmbedding (K-Q7).
        per_level_segments: See PatchEmbedding (K-Q6).
        feature_dropout: See PatchEmbedding.
        attention: ``bidirectional`` (pretraining, understanding tasks) or
            ``seq2seq`` (``seq2seq_attention_mask``, captioning). Weights are the
            same either way.
        patch_position_type: See PatchEmbedding's ``position_type``: ``box``
            (Kaleido-BERT) or ``index`` (FashionBERT's learned patch table).
        patch_sequence_position: See PatchEmbedding's ``sequence_position``
            (ImageBERT's dummy sequence position of every visual token).
        patch_projection_bias: See PatchEmbedding's ``projection_bias``.

    Call arguments:
        inputs: dict with ``input_ids`` int32 [B, T], ``input_mask`` int32 [B, T]
            (1 = real token), ``segment_ids`` int32 [B, T], ``patch_features``
            float32 [B, P, D], ``patch_boxes`` float32 [B, P, 5] and optionally
            ``patch_mask`` int32 [B, P] (1 = real patch; default all ones).
        training: Dropout switch.

    Returns:
        dict: ``sequence_output`` float32 [B, T + P, H], ``pooled_output`` float32
        [B, H], ``embedding_table`` float32 [V, H] (the word table, for tied heads).

    Reference: Kaleido-BERT §3.5; FashionBERT §2.2.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_attention_heads: int,
        inner_dim: int,
        level_sizes: tuple[int, ...],
        max_sequence_length: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        output_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        per_level_projection: bool = False,
        per_level_segments: bool = False,
        feature_dropout: float = 0.0,
        attention: str = "bidirectional",
        patch_position_type: str = "box",
        patch_sequence_position: bool = False,
        patch_projection_bias: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                f"{num_attention_heads}"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.inner_dim = inner_dim
        self.level_sizes = tuple(int(n) for n in level_sizes)
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.output_dropout = output_dropout
        self.attention_dropout = attention_dropout
        self.per_level_projection = per_level_projection
        self.per_level_segments = per_level_segments
        self.feature_dropout = feature_dropout
        if attention not in ATTENTION_PATTERNS:
            raise ValueError(
                f"attention must be one of {ATTENTION_PATTERNS}, got {attention!r}"
            )
        self.attention = attention
        self.patch_position_type = patch_position_type
        self.patch_sequence_position = bool(patch_sequence_position)
        self.patch_projection_bias = bool(patch_projection_bias)

        def init():
            # A fresh initialiser per layer: a shared unseeded instance gives every
            # layer the same initial values.
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

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
            self.level_sizes,
            per_level_projection,
            per_level_segments,
            initializer_range,
            feature_dropout,
            output_dropout,
            position_type=patch_position_type,
            sequence_position=self.patch_sequence_position,
            projection_bias=self.patch_projection_bias,
            name="patch_embedding",
        )
        self.blocks = [
            nlp_layers.TransformerEncoderBlock(
                num_attention_heads=num_attention_heads,
                inner_dim=inner_dim,
                inner_activation=gelu_tanh,
                output_dropout=output_dropout,
                attention_dropout=attention_dropout,
                kernel_initializer=init(),
                norm_epsilon=1e-12,
                name=f"layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.pooler = tf_keras.layers.Dense(
            hidden_size, activation="tanh", kernel_initializer=init(), name="pooler"
        )

    @property
    def num_patches(self) -> int:
        """P."""
        return sum(self.level_sizes)

    def embed_text(self, input_ids, segment_ids, training=None):
        """Text embeddings ``[B, T, H]`` (word + position + segment, LN, dropout).

        Args:
            input_ids: int32 [B, T].
            segment_ids: int32 [B, T].
            training: Dropout switch.

        Returns:
            float32 [B, T, H]; ``call`` = ``transform(embed_text, embed_visual)``.
        """
        return self.text_embedding(input_ids, segment_ids, training=training)

    def embed_visual(self, patch_features, patch_boxes, training=None):
        """Visual-token embeddings ``[B, P, H]`` (PatchEmbedding).

        An evaluator can cache these per image and run only ``transform`` per pair.

        Args:
            patch_features: float32 [B, P, D].
            patch_boxes: float32 [B, P, 5].
            training: Dropout switch.

        Returns:
            float32 [B, P, H].
        """
        return self.patch_embedding(patch_features, patch_boxes, training=training)

    def transform(
        self,
        text_embeddings,
        visual_embeddings,
        input_mask,
        patch_mask=None,
        training=None,
    ) -> dict:
        """The BERT blocks and pooler over ``[text | visual]`` embeddings.

        Args:
            text_embeddings: float32 [B, T, H] from ``embed_text``.
            visual_embeddings: float32 [B, P, H] from ``embed_visual``.
            input_mask: int32 [B, T], 1 = real token.
            patch_mask: int32 [B, P], 1 = real patch; default all ones.
            training: Dropout switch.

        Returns:
            dict: the same as ``call``.
        """
        x = tf.concat([text_embeddings, visual_embeddings], axis=1)  # [B, T + P, H]
        if patch_mask is None:
            patch_mask = tf.ones(tf.shape(visual_embeddings)[:2], tf.int32)
        if self.attention == "seq2seq":
            attention_mask = seq2seq_attention_mask(input_mask, patch_mask)
        else:
            mask = tf.concat(
                [tf.cast(input_mask, tf.int32), tf.cast(patch_mask, tf.int32)], 1
            )
            attention_mask = padding_attention_mask(mask)  # [B, L, L]
        for block in self.blocks:
            x = block([x, attention_mask], training=training)
        return {
            "sequence_output": x,
            "pooled_output": self.pooler(x[:, 0]),
            "embedding_table": self.text_embedding.embedding_table,
        }

    def call(self, inputs, training=None):
        text = self.embed_text(
            inputs["input_ids"], inputs["segment_ids"], training=training
        )
        patches = self.embed_visual(
            inputs["patch_features"], inputs["patch_boxes"], training=training
        )
        return self.transform(
            text,
            patches,
            inputs["input_mask"],
            inputs.get("patch_mask"),
            training=training,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_attention_heads=self.num_attention_heads,
            inner_dim=self.inner_dim,
            level_sizes=list(self.level_sizes),
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
            output_dropout=self.output_dropout,
            attention_dropout=self.attention_dropout,
            per_level_projection=self.per_level_projection,
            per_level_segments=self.per_level_segments,
            feature_dropout=self.feature_dropout,
            attention=self.attention,
            patch_position_type=self.patch_position_type,
            patch_sequence_position=self.patch_sequence_position,
            patch_projection_bias=self.patch_projection_bias,
        )
        return config
