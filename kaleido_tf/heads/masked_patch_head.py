"""Feature regression at masked patches (G2CM, B2CM; FashionBERT's MPM)."""

from __future__ import annotations

import tf_keras

from kaleido_tf.layers.gather import gather_positions


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class MaskedPatchHead(tf_keras.layers.Layer):
    """A bias-free H -> D projection of the hidden states at given patches.

    Args:
        feature_dim: D, the backbone feature size to reconstruct.
        initializer_range: Stddev of the truncated-normal initialiser.

    Call arguments:
        sequence_output: float32 [B, T + P, H].
        patch_positions: int32 [B, K]; patch indices (0..P-1).
        text_length: int32 scalar T.

    Returns:
        float32 [B, K, D]; compared with the target after a softmax over D.

    Reference: Kaleido-BERT §3.5 Task #3 (IV) Eq. 6, (V) Eq. 7; FashionBERT Eq. 2.
    """

    def __init__(
        self, feature_dim: int, initializer_range: float = 0.02, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.feature_dim = feature_dim
        self.initializer_range = initializer_range
        self.logits = tf_keras.layers.Dense(
            feature_dim,
            use_bias=False,
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=initializer_range
            ),
            name="logits",
        )

    def call(self, sequence_output, patch_positions, text_length):
        hidden = gather_positions(sequence_output, patch_positions + text_length)
        return self.logits(hidden)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            feature_dim=self.feature_dim, initializer_range=self.initializer_range
        )
        return config
