"""A linear classifier on the pooled [CLS] output (ITM; category recognition)."""

from __future__ import annotations

import tf_keras


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class ClassificationHead(tf_keras.layers.Layer):
    """Dropout, then Dense(num_classes) on the pooled output.

    For ITM, index 1 = text matches image (``constants.ITM_MATCH``), the opposite of
    Google's NSP; ``checkpoints/google_bert.py`` swaps NSP rows when it initialises
    this head.

    Args:
        num_classes: C (2 for ITM, 48 / 122 for category / sub-category).
        dropout: Dropout before the classifier (0.1 for fine-tuning, K-Q23).
        initializer_range: Stddev of the truncated-normal initialiser.

    Call arguments:
        pooled_output: float32 [B, H].
        training: Dropout switch.

    Returns:
        float32 [B, C] logits.

    Reference: Kaleido-BERT §3.5 Task #2 (ITM) and §4.2 (CR / SUB).
    """

    def __init__(
        self,
        num_classes: int,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.dropout_layer = tf_keras.layers.Dropout(dropout)
        self.logits = tf_keras.layers.Dense(
            num_classes,
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=initializer_range
            ),
            name="logits",
        )

    def call(self, pooled_output, training=None):
        return self.logits(self.dropout_layer(pooled_output, training=training))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
        )
        return config
