"""BERT text embeddings: word + position + token type, LayerNorm, dropout (§2.2)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class TextEmbedding(tf_keras.layers.Layer):
    """Word-piece, position and segment embeddings summed, then LayerNorm and dropout.

    The layout of Google BERT's ``bert/embeddings`` scope, so its checkpoints load by
    name (``checkpoints/google_bert.py``). The word table is exposed as
    ``embedding_table`` for the tied MLM head.

    Args:
        vocab_size: V.
        hidden_size: H.
        max_sequence_length: Rows of the position table.
        type_vocab_size: Rows of the token-type table.
        initializer_range: Stddev of the truncated-normal initialiser.
        dropout: Dropout after the LayerNorm.
        norm_epsilon: Epsilon of the LayerNorm (1e-12, Google BERT; XLM-R uses
            1e-5).

    Call arguments:
        input_ids: int32 [B, T]. Token ids.
        segment_ids: int32 [B, T]. Token-type ids (0 for product text).
        training: Dropout switch.

    Returns:
        float32 [B, T, H]; positions are 0..T-1 (Kaleido-BERT §3.1 footnote).

    Reference: BERT (Devlin et al. 2019) §3; Kaleido-BERT §3.2 "Text embeddings".
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        max_sequence_length: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        dropout: float = 0.1,
        norm_epsilon: float = 1e-12,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError(f"vocab_size={vocab_size}, hidden_size={hidden_size}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.dropout = dropout
        self.norm_epsilon = norm_epsilon
        self.layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=norm_epsilon, dtype=tf.float32, name="layer_norm"
        )
        self.dropout_layer = tf_keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape) -> None:
        def init():
            return tf_keras.initializers.TruncatedNormal(stddev=self.initializer_range)

        self.embedding_table = self.add_weight(
            name="word_embeddings",
            shape=(self.vocab_size, self.hidden_size),
            initializer=init(),
        )
        self.position_table = self.add_weight(
            name="position_embeddings",
            shape=(self.max_sequence_length, self.hidden_size),
            initializer=init(),
        )
        self.type_table = self.add_weight(
            name="token_type_embeddings",
            shape=(self.type_vocab_size, self.hidden_size),
            initializer=init(),
        )
        super().build(input_shape)

    def call(self, input_ids, segment_ids, training=None):
        length = tf.shape(input_ids)[1]
        x = tf.gather(self.embedding_table, input_ids)
        x += tf.gather(self.type_table, segment_ids)
        x += self.position_table[tf.newaxis, :length]  # [1, T, H]
        return self.dropout_layer(self.layer_norm(x), training=training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
            dropout=self.dropout,
            norm_epsilon=self.norm_epsilon,
        )
        return config
