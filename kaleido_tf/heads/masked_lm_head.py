"""Masked-language-model head tied to the word embeddings (BERT ``cls/predictions``)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from kaleido_tf.layers.activations import gelu_tanh
from kaleido_tf.layers.gather import gather_positions


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class MaskedLMHead(tf_keras.layers.Layer):
    """Dense + GELU + LayerNorm at the masked positions, then the tied word table.

    Args:
        hidden_size: H.
        vocab_size: V (rows of the tied table; for the output bias).
        initializer_range: Stddev of the truncated-normal initialiser.

    Call arguments:
        sequence_output: float32 [B, L, H].
        positions: int32 [B, M]; token positions to predict.
        embedding_table: float32 [V, H]; the word embeddings (shared weights are
            call arguments so the head stays serialisable, STYLE §2.3).

    Returns:
        float32 [B, M, V] logits.

    Reference: Kaleido-BERT §3.5 Task #1 (AMLM); BERT ``run_pretraining.py``.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.initializer_range = initializer_range
        self.transform = tf_keras.layers.Dense(
            hidden_size,
            activation=gelu_tanh,
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=initializer_range
            ),
            name="transform",
        )
        self.layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=1e-12, dtype=tf.float32, name="layer_norm"
        )

    def build(self, input_shape) -> None:
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.vocab_size,), initializer="zeros"
        )
        super().build(input_shape)

    def call(self, sequence_output, positions, embedding_table):
        x = gather_positions(sequence_output, positions)  # [B, M, H]
        x = self.layer_norm(self.transform(x))
        table = tf.cast(embedding_table, x.dtype)  # float16 under mixed precision
        return tf.einsum("bmh,vh->bmv", x, table) + tf.cast(self.output_bias, x.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            vocab_size=self.vocab_size,
            initializer_range=self.initializer_range,
        )
        return config
