"""CommerceMM's network: image encoder, and one transformer stack split at K (§4.3)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as nlp_layers

from kaleido_tf.layers.attention_mask import padding_attention_mask
from kaleido_tf.layers.text_embedding import TextEmbedding
from kaleido_tf.networks.image_encoder import ImageEncoder


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class CommerceMMEncoder(tf_keras.layers.Layer):
    """Text encoder = layers 1..K, fusion encoder = layers K+1..L of one stack.

    One list of L ``TransformerEncoderBlock``s (post-norm, as XLM-R/BERT). Text
    embeddings ``[w_cls, w_1 .. w_T]`` go through blocks 1..K alone, with a
    text-only padding mask: that is the text encoder, and its [CLS] output is the
    text embedding ``f`` reads for ITC and Omni-Retrieval. Then the image
    encoder's tokens ``[v_cls, v_1 .. v_N]`` are appended and blocks K+1..L run
    over ``[text; image]`` with a joint padding mask: the fusion encoder. Image
    tokens enter the stack only at the fusion encoder.

    K (``num_text_layers``) is a constructor value and can be overridden per call
    by a Python int or an int32 scalar tensor. A tensor K does not retrace a
    ``tf.function``: each block runs inside a ``tf.cond`` on ``i < K`` (text
    encoder) and on ``i >= K`` (fusion encoder), so every step executes exactly L
    blocks and the text blocks never see image keys, whatever K is. This is how
    modality randomization re-samples K every step
    (``training/modality_randomization.py``). A Python int K (or a constant
    tensor) needs no ``tf.cond``: the graph holds just the L blocks.

    ``embed_text``, ``encode_image``, ``encode_text`` and ``fuse`` are the parts of
    ``call``; a training step reuses the clean pass's image tokens in its
    text-masked pass and its text-encoder output in its image-masked pass
    (spec §4.6).

    Args:
        vocab_size: V.
        hidden_size: H.
        num_layers: L = K + M.
        num_attention_heads: N; H % N == 0.
        inner_dim: Feed-forward width.
        num_text_layers: The default K, 0 <= K <= L (K = 0: no text encoder, text
            enters fusion directly; early fusion, Table 2 L3).
        image_encoder: Keyword arguments of ``ImageEncoder`` except
            ``hidden_size``, which is this encoder's.
        max_sequence_length: Rows of the text position table.
        type_vocab_size: Rows of the token-type table (1 for XLM-R).
        initializer_range: Stddev of the truncated-normal initialisers.
        output_dropout: Dropout on embeddings and block outputs.
        attention_dropout: Dropout on attention probabilities.
        inner_activation: Feed-forward activation; ``gelu`` (exact, XLM-R).
        norm_epsilon: LayerNorm epsilon of the blocks (1e-5, XLM-R).

    Call arguments:
        inputs: dict with ``input_ids`` int32 [B, T], ``input_mask`` int32 [B, T]
            (1 = real token, 0 = padding), ``pixels`` float32 [B, S, S, 3] (RGB in
            [0, 255]) and optionally ``segment_ids`` int32 [B, T] (default zeros)
            and ``visual_mask`` int32 [B, 1 + P] (1 = real visual token; default
            all ones).
        num_text_layers: K for this call: None (the constructor's), a Python int
            or an int32 scalar tensor.
        training: Dropout and batch-norm switch.

    Returns:
        dict (P = image patches, so the visual sequence is 1 + P):
        ``text_encoder_output`` float32 [B, T, H] (after the K text layers; the
        text embeddings when K = 0), ``text_cls`` float32 [B, H] (its [CLS], for
        ``f``), ``image_encoder_output`` float32 [B, 1 + P, H],
        ``image_cls`` float32 [B, H] (the visual [CLS] before fusion, for ``g``),
        ``sequence_output`` float32 [B, T + 1 + P, H] (fusion output),
        ``fused_text_cls`` float32 [B, H] (fusion ``w_cls``: ITM, ``h``, CC/MPC),
        ``fused_image_cls`` float32 [B, H] (fusion ``v_cls``: MIM-kl, MIM-fr),
        ``embedding_table`` float32 [V, H] (word table, for the tied MLM head).

    Example:
        >>> encoder = CommerceMMEncoder(250002, 512, 6, 8, 2048, num_text_layers=3,
        ...                             image_encoder={"backbone": "resnet"})
        >>> out = encoder(batch, num_text_layers=tf.constant(2))
        >>> out["sequence_output"].shape   # [B, T + 50, 512]

    Reference: CommerceMM §3.1 (architecture), §3.4 (modality randomization);
    spec imagebert_interbert_commercemm.md §4.2, §4.3, §4.7, §4.10.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_attention_heads: int,
        inner_dim: int,
        num_text_layers: int,
        image_encoder: dict[str, Any],
        max_sequence_length: int = 512,
        type_vocab_size: int = 1,
        initializer_range: float = 0.02,
        output_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        inner_activation: Any = "gelu",
        norm_epsilon: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                f"{num_attention_heads}"
            )
        if not 0 <= num_text_layers <= num_layers:
            raise ValueError(
                f"num_text_layers {num_text_layers} is outside [0, num_layers "
                f"{num_layers}]"
            )
        if "hidden_size" in image_encoder:
            raise ValueError(
                "image_encoder must not set hidden_size: the image tokens take the "
                f"encoder's hidden_size {hidden_size}"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.inner_dim = inner_dim
        self.num_text_layers = num_text_layers
        self.image_encoder_kwargs = dict(image_encoder)
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.output_dropout = output_dropout
        self.attention_dropout = attention_dropout
        self.inner_activation = tf_keras.activations.get(inner_activation)
        self.norm_epsilon = norm_epsilon

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
            norm_epsilon=norm_epsilon,
            name="text_embedding",
        )
        self.image_encoder = ImageEncoder(
            hidden_size, **self.image_encoder_kwargs, name="image_encoder"
        )
        self.blocks = [
            nlp_layers.TransformerEncoderBlock(
                num_attention_heads=num_attention_heads,
                inner_dim=inner_dim,
                inner_activation=self.inner_activation,
                output_dropout=output_dropout,
                attention_dropout=attention_dropout,
                kernel_initializer=init(),
                norm_epsilon=norm_epsilon,
                name=f"layer_{i}",
            )
            for i in range(num_layers)
        ]

    def _split(self, num_text_layers):
        """K as a Python int when it is known statically, else an int32 tensor."""
        if num_text_layers is None:
            return self.num_text_layers
        static = tf.get_static_value(num_text_layers)
        if static is not None:
            k = int(static)
            if not 0 <= k <= self.num_layers:
                raise ValueError(
                    f"num_text_layers {k} is outside [0, num_layers {self.num_layers}]"
                )
            return k
        k = tf.cast(num_text_layers, tf.int32)
        tf.debugging.assert_greater_equal(k, 0, message="num_text_layers < 0")
        tf.debugging.assert_less_equal(
            k, self.num_layers, message="num_text_layers > num_layers"
        )
        return k

    def _blocks_where(self, run, x, attention_mask, training):
        """Applies block i to ``x`` where ``run(i)`` holds; identity elsewhere."""
        for i, block in enumerate(self.blocks):
            condition = run(i)
            if isinstance(condition, bool):
                if condition:
                    x = block([x, attention_mask], training=training)
            else:
                x = tf.cond(
                    condition,
                    lambda block=block, x=x: block(
                        [x, attention_mask], training=training
                    ),
                    lambda x=x: tf.identity(x),
                )
        return x

    def embed_text(self, input_ids, segment_ids=None, training=None):
        """Text embeddings (word + position + type, LN, dropout).

        Args:
            input_ids: int32 [B, T].
            segment_ids: int32 [B, T]; default zeros.
            training: Dropout switch.

        Returns:
            float32 [B, T, H].
        """
        if segment_ids is None:
            segment_ids = tf.zeros_like(input_ids)
        return self.text_embedding(input_ids, segment_ids, training=training)

    def encode_image(self, pixels, training=None):
        """The image encoder's visual tokens.

        Args:
            pixels: float32 [B, S, S, 3], RGB in [0, 255].
            training: Dropout and batch-norm switch.

        Returns:
            float32 [B, 1 + P, H]; position 0 is the visual [CLS].
        """
        return self.image_encoder(pixels, training=training)

    def encode_text(
        self, text_embeddings, input_mask, num_text_layers=None, training=None
    ):
        """The text encoder: blocks 1..K over the text alone.

        Args:
            text_embeddings: float32 [B, T, H] from ``embed_text``.
            input_mask: int32 [B, T]; 1 = real token, 0 = padding.
            num_text_layers: K (None, a Python int or an int32 scalar tensor).
            training: Dropout switch.

        Returns:
            float32 [B, T, H]; ``text_embeddings`` unchanged when K = 0.
        """
        k = self._split(num_text_layers)
        mask = padding_attention_mask(input_mask)  # [B, T, T]
        return self._blocks_where(lambda i: i < k, text_embeddings, mask, training)

    def fuse(
        self,
        text_states,
        visual_tokens,
        input_mask,
        num_text_layers=None,
        visual_mask=None,
        training=None,
    ):
        """The fusion encoder: blocks K+1..L over ``[text; image]``.

        Args:
            text_states: float32 [B, T, H] from ``encode_text`` with the same K.
            visual_tokens: float32 [B, 1 + P, H] from ``encode_image``.
            input_mask: int32 [B, T]; 1 = real token, 0 = padding.
            num_text_layers: K (None, a Python int or an int32 scalar tensor).
            visual_mask: int32 [B, 1 + P]; 1 = real visual token; default ones.
            training: Dropout switch.

        Returns:
            float32 [B, T + 1 + P, H].
        """
        k = self._split(num_text_layers)
        if visual_mask is None:
            visual_mask = tf.ones(tf.shape(visual_tokens)[:2], tf.int32)
        token_mask = tf.concat(
            [tf.cast(input_mask, tf.int32), tf.cast(visual_mask, tf.int32)], axis=1
        )
        mask = padding_attention_mask(token_mask)  # [B, T + 1 + P, T + 1 + P]
        # One dtype under mixed precision (LayerNorm outputs may be float32).
        dtype = self.compute_dtype
        x = tf.concat(
            [tf.cast(text_states, dtype), tf.cast(visual_tokens, dtype)], axis=1
        )  # [B, T + 1 + P, H]
        return self._blocks_where(lambda i: i >= k, x, mask, training)

    def call(self, inputs, num_text_layers=None, training=None):
        k = self._split(num_text_layers)
        text = self.embed_text(
            inputs["input_ids"], inputs.get("segment_ids"), training=training
        )
        visual = self.encode_image(inputs["pixels"], training=training)
        text = self.encode_text(text, inputs["input_mask"], k, training=training)
        fused = self.fuse(
            text,
            visual,
            inputs["input_mask"],
            k,
            inputs.get("visual_mask"),
            training=training,
        )
        t = tf.shape(text)[1]
        return {
            "text_encoder_output": text,
            "text_cls": text[:, 0],
            "image_encoder_output": visual,
            "image_cls": visual[:, 0],
            "sequence_output": fused,
            "fused_text_cls": fused[:, 0],
            "fused_image_cls": fused[:, t],
            "embedding_table": self.text_embedding.embedding_table,
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_attention_heads=self.num_attention_heads,
            inner_dim=self.inner_dim,
            num_text_layers=self.num_text_layers,
            image_encoder=dict(self.image_encoder_kwargs),
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
            output_dropout=self.output_dropout,
            attention_dropout=self.attention_dropout,
            inner_activation=tf_keras.activations.serialize(self.inner_activation),
            norm_epsilon=self.norm_epsilon,
        )
        return config
