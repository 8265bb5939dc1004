"""InterBERT's matching head: an MLP on the product of the two [CLS] outputs (§3.3)."""

from __future__ import annotations

import tf_keras


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class MatchMLPHead(tf_keras.layers.Layer):
    """``Dense(2)(Dropout(ReLU(W_t h_t) * ReLU(W_v h_v)))``.

    Each modality's [CLS] output is pooled by its own ReLU dense layer to
    ``pooled_size``; the two pooled vectors are multiplied element-wise (the
    cross-modal representation), dropped out and mapped to ``num_classes``
    logits. With 2 classes index 1 means "text matches image"
    (``constants.ITM_MATCH``); a 1-class head gives the score of a
    multiple-choice option.

    Args:
        pooled_size: Width of the poolers (1024 in the released code).
        num_classes: 2 for ITM (index 1 = match), 1 for multiple choice.
        dropout: Dropout on the product (0.1).
        initializer_range: Stddev of the truncated-normal initialiser.

    Call arguments:
        image_cls_output: float32 [B, H]. The image extractor's [CLS] output.
        text_cls_output: float32 [B, H]. The text extractor's [CLS] output.
        training: Dropout switch.

    Returns:
        float32 [B, num_classes] logits.

    Example:
        >>> head = MatchMLPHead(1024)
        >>> logits = head(out["image_cls_output"], out["text_cls_output"])

    Reference: InterBERT §3.3 "we first element-wisely multiply the image and
    text representations ... through the MLP"; imagebert_interbert_commercemm.md
    §3.3 [code] and §3.11 #4.

    Deviation: the released code's class 0 means "matched"; here index 1 does,
    as in every head of this framework (STYLE §2.9 pitfall 4).
    """

    def __init__(
        self,
        pooled_size: int = 1024,
        num_classes: int = 2,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if pooled_size < 1:
            raise ValueError(f"pooled_size must be >= 1, got {pooled_size}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.pooled_size = pooled_size
        self.num_classes = num_classes
        self.dropout = dropout
        self.initializer_range = initializer_range

        def init():
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

        self.text_pooler = tf_keras.layers.Dense(
            pooled_size,
            activation="relu",
            kernel_initializer=init(),
            name="text_pooler",
        )
        self.image_pooler = tf_keras.layers.Dense(
            pooled_size,
            activation="relu",
            kernel_initializer=init(),
            name="image_pooler",
        )
        self.dropout_layer = tf_keras.layers.Dropout(dropout, name="dropout")
        self.logits = tf_keras.layers.Dense(
            num_classes, kernel_initializer=init(), name="logits"
        )

    def pooled_product(self, image_cls_output, text_cls_output):
        """The cross-modal representation ``ReLU(W_v h_v) * ReLU(W_t h_t)``.

        Args:
            image_cls_output: float32 [B, H].
            text_cls_output: float32 [B, H].

        Returns:
            float32 [B, pooled_size]; L2-normalised, it is the deployment vector
            (spec §3.11 #20).
        """
        return self.image_pooler(image_cls_output) * self.text_pooler(text_cls_output)

    def call(self, image_cls_output, text_cls_output, training=None):
        z = self.pooled_product(image_cls_output, text_cls_output)  # [B, pooled]
        return self.logits(self.dropout_layer(z, training=training))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            pooled_size=self.pooled_size,
            num_classes=self.num_classes,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
        )
        return config
