"""Show-Attend-and-Tell captioner with soft attention, the text generator of AAG.

Kaleido-BERT §3.3 "directly adopt[s] the famous SAT network": a frozen CNN grid
encoder, an LSTM decoder with soft (Bahdanau) attention and SAT's gating scalar,
teacher forcing, and the doubly-stochastic attention regulariser. Each generated word
comes with its attention map over the grid, from which ``alignment_generator`` builds
the token-patch pairs.

Dimension legend (this module): B batch; G grid locations h*w (196 at 224 px);
C encoder channels (1024 for ResNet-50 conv4); T caption steps; V caption vocabulary;
E word embedding size; U LSTM units; A attention size.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from data_prep.alignment.caption_vocab import PAD_ID

_PACKAGE = "kaleido_tf"


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class GridEncoder(tf_keras.layers.Layer):
    """A frozen CNN cut at one layer: the annotation vectors a_i of SAT.

    The crop (RGB in [0, 255]) is preprocessed for the backbone, run through it up
    to ``output_layer``, average-pooled to ``grid_size`` x ``grid_size`` when that
    layer's map is larger (an integer multiple), and flattened row-major to
    G = h*w locations. The weights are random (seeded, batch-norm statistics
    calibrated on a seeded batch) until ``load_backbone_weights`` loads a
    Keras-applications "notop" file; a captioner checkpoint holds them either way.
    The layer is never trainable.

    Args:
        backbone: ``resnet50`` or ``mobilenet_v3_small`` (any name of
            ``data_prep.backbones.patch_feature_extractor.BACKBONE_NAMES``).
        output_layer: The layer whose output is the grid, e.g. ``conv4_block6_out``.
        image_size: Side S of the (square) input images.
        grid_size: Side of the output grid; 0 keeps the layer's own size.
        seed: Seed of the random weights. Building the layer resets the global
            TensorFlow/numpy seeds to it (``tf_keras.utils.set_random_seed``).

    Call arguments:
        images: uint8 or float32 [B, S, S, 3], RGB in [0, 255].

    Returns:
        float32 [B, G, C]: the annotation vectors, row-major over the h x w grid.

    Example:
        >>> encoder = GridEncoder("resnet50", "conv4_block6_out", 224)
        >>> encoder(images).shape        # [B, 196, 1024]

    Reference: Show, Attend and Tell (Xu et al. 2015) §3.1.1; Kaleido-BERT §3.3.
    Deviation: SAT uses VGG-19 conv5_4 (14 x 14 x 512); kaleido_fashionbert.md §4.2
    (K-Q10) specifies ImageNet ResNet-50 up to conv4 (14 x 14 x 1024). The
    ``grid_size`` pooling is not in SAT; the demo uses it to keep a 14 x 14 grid
    of early (local) features of a randomly initialised network.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        output_layer: str = "conv4_block6_out",
        image_size: int = 224,
        grid_size: int = 0,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from data_prep.backbones.patch_feature_extractor import truncated_backbone

        if image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        if grid_size < 0:
            raise ValueError(f"grid_size must be >= 0, got {grid_size}")
        self.backbone = backbone
        self.output_layer = output_layer
        self.image_size = image_size
        self.grid_size = grid_size
        self.seed = seed
        self.backbone_model, self._preprocess = truncated_backbone(
            backbone, image_size, output_layer, None, seed
        )
        self.trainable = False
        _, h, w, c = self.backbone_model.output_shape
        h, w = int(h), int(w)
        self.pool = 1
        if grid_size:
            if h % grid_size or w % grid_size or h != w:
                raise ValueError(
                    f"grid_size {grid_size} does not divide the {h}x{w} map of "
                    f"{output_layer} at {image_size} px"
                )
            self.pool = h // grid_size
            h = w = grid_size
        self.grid_shape = (h, w)
        self.channels = int(c)

    def load_backbone_weights(self, path: str) -> None:
        """Loads a Keras-applications "notop" ``.h5`` file into the backbone.

        Raises:
            CheckpointError: Missing file or weights of another network.
        """
        from data_prep.backbones.patch_feature_extractor import truncated_backbone

        loaded, _ = truncated_backbone(
            self.backbone, self.image_size, self.output_layer, path, self.seed
        )
        for dst, src in zip(self.backbone_model.layers, loaded.layers, strict=True):
            dst.set_weights(src.get_weights())

    def call(self, images):
        x = self._preprocess(tf.cast(images, tf.float32))
        grid = self.backbone_model(x, training=False)  # [B, h', w', C]
        if self.pool > 1:
            grid = tf.nn.avg_pool2d(grid, self.pool, self.pool, "VALID")  # [B, h, w, C]
        h, w = self.grid_shape
        return tf.reshape(grid, [-1, h * w, self.channels])  # [B, G, C]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "backbone": self.backbone,
                "output_layer": self.output_layer,
                "image_size": self.image_size,
                "grid_size": self.grid_size,
                "seed": self.seed,
            }
        )
        return config


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class SoftAttention(tf_keras.layers.Layer):
    """Deterministic soft attention: α_t = softmax_i(w^T tanh(W_a a_i + W_h h)).

    ``project_features`` computes W_a a_i + b once per image; each decoding step
    adds W_h h_{t-1}, scores every location and returns the expected annotation
    vector Σ_i α_ti a_i with the weights α_t. Softmax is computed in float32.

    Args:
        attention_dim: A, the hidden size of the attention MLP f_att.

    Call arguments:
        projected_features: float32 [B, G, A], from ``project_features``.
        features: float32 [B, G, C], the annotation vectors a_i.
        hidden: float32 [B, U], the previous LSTM state h_{t-1}.

    Returns:
        ``(context, alpha)``: float32 [B, C] and float32 [B, G]; each row of
        ``alpha`` sums to 1.

    Example:
        >>> attention = SoftAttention(512)
        >>> projected = attention.project_features(features)
        >>> context, alpha = attention(projected, features, h)

    Reference: Show, Attend and Tell (Xu et al. 2015) §3.1.2, Eq. 4-5, §4.2.
    """

    def __init__(self, attention_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if attention_dim < 1:
            raise ValueError(f"attention_dim must be >= 1, got {attention_dim}")
        self.attention_dim = attention_dim
        self.feature_projection = tf_keras.layers.Dense(
            attention_dim, name="feature_projection"
        )
        self.hidden_projection = tf_keras.layers.Dense(
            attention_dim, use_bias=False, name="hidden_projection"
        )
        self.score = tf_keras.layers.Dense(1, name="score")

    def build_for(self, channels: int, units: int) -> None:
        """Creates the weights for C = ``channels`` and U = ``units``."""
        self.feature_projection.build([None, None, channels])
        self.hidden_projection.build([None, units])
        self.score.build([None, None, self.attention_dim])
        self.built = True

    def project_features(self, features):
        """float32 [B, G, A]: W_a a_i + b for every location."""
        return self.feature_projection(features)

    def call(self, projected_features, features, hidden):
        query = self.hidden_projection(hidden)[:, None, :]  # [B, 1, A]
        energy = self.score(tf.tanh(projected_features + query))[..., 0]  # [B, G]
        alpha = tf.nn.softmax(tf.cast(energy, tf.float32), axis=-1)  # [B, G]
        context = tf.einsum("bg,bgc->bc", alpha, tf.cast(features, tf.float32))
        return context, alpha

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"attention_dim": self.attention_dim})
        return config


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class SATCaptioner(tf_keras.Model):
    """Show-Attend-and-Tell: grid encoder + LSTM decoder with soft attention.

    At step t, with the previous word y_{t-1} and state (h_{t-1}, c_{t-1}):
    α_t = attention(a, h_{t-1}); ẑ_t = β_t Σ_i α_ti a_i with the gating scalar
    β_t = σ(f_β(h_{t-1})); (h_t, c_t) = LSTM([E y_{t-1}; ẑ_t], (h_{t-1}, c_{t-1}));
    p(y_t) = softmax(L_o dropout(tanh(E y_{t-1} + L_h dropout(h_t) + L_z ẑ_t)))
    (the deep output layer, with dropout on h_t and on the deep output as in the
    reference implementation). h_0, c_0 = tanh(MLP(mean_i a_i)). ``call`` runs
    teacher forcing; ``decode_step`` runs one step for beam search.

    Args:
        vocab_size: V, the caption vocabulary size (``CaptionVocab``).
        backbone: Grid encoder network (see GridEncoder).
        output_layer: Grid encoder layer (see GridEncoder).
        image_size: Input side S of the grid encoder.
        grid_size: Output grid side of the encoder; 0 = the layer's own.
        embedding_dim: E (§4.2: 512).
        lstm_units: U (§4.2: 512).
        attention_dim: A (512).
        dropout: Dropout rate on h_t and on the deep output (0.5).
        seed: Seed of the encoder's random weights (see GridEncoder).

    Call arguments:
        inputs: A dict with ``grid_features``: float32 [B, G, C] (from
            ``encoder``) and ``input_ids``: int32 [B, T], ``<start> w_1 ... w_n``
            then padding (the targets shifted right).
        training: Enables dropout.

    Returns:
        A dict: ``logits``: float32 [B, T, V], the scores of y_1 .. y_T;
        ``alpha``: float32 [B, T, G], the attention weights of each step.

    Example:
        >>> model = SATCaptioner(len(vocab), "mobilenet_v3_small",
        ...                      "expanded_conv_7/Add", 224)
        >>> grid = model.encoder(images)                           # [B, 196, 48]
        >>> out = model({"grid_features": grid, "input_ids": ids[:, :-1]})

    Reference: Show, Attend and Tell (Xu et al. 2015) §3.1.2, Eq. 1-7, §4.2.4
    (gating scalar); Kaleido-BERT §3.3.
    Deviation: the encoder is ResNet-50 conv4 (K-Q10) instead of VGG-19; words come
    from BERT's basic tokenisation so they compare with the raw text's words.
    """

    def __init__(
        self,
        vocab_size: int,
        backbone: str = "resnet50",
        output_layer: str = "conv4_block6_out",
        image_size: int = 224,
        grid_size: int = 0,
        embedding_dim: int = 512,
        lstm_units: int = 512,
        attention_dim: int = 512,
        dropout: float = 0.5,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_dim", embedding_dim),
            ("lstm_units", lstm_units),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        self.backbone = backbone
        self.output_layer = output_layer
        self.image_size = image_size
        self.grid_size = grid_size
        self.embedding_dim = embedding_dim
        self.lstm_units = lstm_units
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.seed = seed

        # === Layers ===
        self.encoder = GridEncoder(
            backbone, output_layer, image_size, grid_size, seed, name="encoder"
        )
        self.embedding = tf_keras.layers.Embedding(
            vocab_size, embedding_dim, name="embedding"
        )
        self.init_h = tf_keras.layers.Dense(
            lstm_units, activation="tanh", name="init_h"
        )
        self.init_c = tf_keras.layers.Dense(
            lstm_units, activation="tanh", name="init_c"
        )
        self.attention = SoftAttention(attention_dim, name="attention")
        self.gate = tf_keras.layers.Dense(1, activation="sigmoid", name="gate")
        self.lstm_cell = tf_keras.layers.LSTMCell(lstm_units, name="lstm_cell")
        self.output_hidden = tf_keras.layers.Dense(embedding_dim, name="output_hidden")
        self.output_context = tf_keras.layers.Dense(
            embedding_dim, use_bias=False, name="output_context"
        )
        self.hidden_dropout = tf_keras.layers.Dropout(dropout, name="hidden_dropout")
        self.output_dropout = tf_keras.layers.Dropout(dropout, name="output_dropout")
        self.output_logits = tf_keras.layers.Dense(vocab_size, name="output_logits")
        self._decoder_built = False

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(h, w) of the encoder grid; G = h * w."""
        return self.encoder.grid_shape

    def build_decoder(self) -> None:
        """Creates every decoder weight (before any loop that uses them)."""
        if self._decoder_built:
            return
        c, u, e = self.encoder.channels, self.lstm_units, self.embedding_dim
        self.embedding.build([None, None])
        self.init_h.build([None, c])
        self.init_c.build([None, c])
        self.attention.build_for(c, u)
        self.gate.build([None, u])
        self.lstm_cell.build([None, e + c])
        self.output_hidden.build([None, None, u])
        self.output_context.build([None, None, c])
        self.output_logits.build([None, None, e])
        self._decoder_built = True

    def initial_state(self, grid_features):
        """``[h_0, c_0]``, each float32 [B, U], from the mean annotation vector."""
        mean = tf.reduce_mean(grid_features, axis=1)  # [B, C]
        return [self.init_h(mean), self.init_c(mean)]

    def _step(self, grid_features, projected, embedded, state):
        """One LSTM step: returns h_t [B, U], ẑ_t [B, C], α_t [B, G], new state."""
        h, _ = state
        context, alpha = self.attention(projected, grid_features, h)
        context = self.gate(h) * context  # β_t ẑ_t, [B, C]
        lstm_in = tf.concat([embedded, context], axis=-1)  # [B, E + C]
        h_new, new_state = self.lstm_cell(lstm_in, state)
        return h_new, context, alpha, new_state

    def _logits(self, embedded, hidden, context, training=None):
        hidden = self.hidden_dropout(hidden, training=training)
        deep = tf.tanh(
            embedded + self.output_hidden(hidden) + self.output_context(context)
        )
        return self.output_logits(self.output_dropout(deep, training=training))

    def call(self, inputs, training=None):
        self.build_decoder()
        grid = tf.cast(inputs["grid_features"], tf.float32)  # [B, G, C]
        ids = tf.cast(inputs["input_ids"], tf.int32)  # [B, T]
        embedded = self.embedding(ids)  # [B, T, E]
        projected = self.attention.project_features(grid)  # [B, G, A]
        h0, c0 = self.initial_state(grid)
        batch = tf.shape(grid)[0]

        def body(carry, emb_t):
            h, c, _, _ = carry
            h_new, context, alpha, (h2, c2) = self._step(grid, projected, emb_t, [h, c])
            return h2, c2, context, alpha

        init = (
            h0,
            c0,
            tf.zeros([batch, self.encoder.channels]),
            tf.zeros([batch, tf.shape(grid)[1]]),
        )
        # [T, B, U], [T, B, C], [T, B, G]
        hs, _, contexts, alphas = tf.scan(
            body, tf.transpose(embedded, [1, 0, 2]), initializer=init
        )
        hs = tf.transpose(hs, [1, 0, 2])  # [B, T, U]
        contexts = tf.transpose(contexts, [1, 0, 2])  # [B, T, C]
        alphas = tf.transpose(alphas, [1, 0, 2])  # [B, T, G]
        logits = self._logits(embedded, hs, contexts, training=training)
        return {"logits": logits, "alpha": alphas}

    def decode_step(self, grid_features, projected, tokens, state):
        """One inference step for beam search.

        Args:
            grid_features: float32 [N, G, C] (one row per beam).
            projected: float32 [N, G, A], ``attention.project_features(grid)``.
            tokens: int32 [N], the previous words y_{t-1}.
            state: ``[h, c]``, each float32 [N, U].

        Returns:
            ``(log_probs, alpha, new_state)``: float32 [N, V] log p(y_t | y_<t),
            float32 [N, G] the attention α_t used for y_t, and ``[h_t, c_t]``.
        """
        embedded = self.embedding(tokens)  # [N, E]
        h_new, context, alpha, new_state = self._step(
            grid_features, projected, embedded, state
        )
        logits = self._logits(embedded, h_new, context, training=False)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32)), alpha, new_state

    def get_config(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "backbone": self.backbone,
            "output_layer": self.output_layer,
            "image_size": self.image_size,
            "grid_size": self.grid_size,
            "embedding_dim": self.embedding_dim,
            "lstm_units": self.lstm_units,
            "attention_dim": self.attention_dim,
            "dropout": self.dropout,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> SATCaptioner:
        return cls(**config)


def caption_nll(target_ids, logits):
    """Summed negative log-likelihood of each caption (padding excluded).

    Args:
        target_ids: int32 [B, T], ``w_1 ... w_n <end>`` then ``<pad>`` (= 0).
        logits: float32 [B, T, V].

    Returns:
        float32 [B]: -Σ_t log p(y_t) over the non-padding steps.

    Reference: Show, Attend and Tell (Xu et al. 2015) Eq. 14, first term.
    """
    mask = tf.cast(tf.not_equal(target_ids, PAD_ID), tf.float32)  # [B, T]
    nll = tf_keras.losses.sparse_categorical_crossentropy(
        target_ids, tf.cast(logits, tf.float32), from_logits=True
    )  # [B, T]
    return tf.reduce_sum(nll * mask, axis=1)


def attention_penalty(alpha, step_mask):
    """The doubly-stochastic attention penalty Σ_i (1 − Σ_t α_ti)², per caption.

    Args:
        alpha: float32 [B, T, G], attention weights of each step.
        step_mask: float32 [B, T]; 1 = a real step (a word or ``<end>``),
            0 = padding (excluded from Σ_t).

    Returns:
        float32 [B], to be multiplied by λ.

    Reference: Show, Attend and Tell (Xu et al. 2015) §4.2.1, Eq. 14.
    """
    totals = tf.reduce_sum(
        tf.cast(alpha, tf.float32) * tf.cast(step_mask, tf.float32)[:, :, None],
        axis=1,
    )  # [B, G]: Σ_t α_ti
    return tf.reduce_sum(tf.square(1.0 - totals), axis=1)


def captioner_loss(target_ids, outputs, attention_regularization: float = 1.0):
    """Per-caption SAT loss: NLL + λ·Σ_i(1 − Σ_t α_ti)².

    Args:
        target_ids: int32 [B, T], ``w_1 ... w_n <end>`` then ``<pad>``.
        outputs: ``SATCaptioner`` outputs (``logits``, ``alpha``).
        attention_regularization: λ (§4.2: 1).

    Returns:
        A dict of float32 [B] tensors: ``loss``, ``nll``, ``penalty``.

    Reference: Show, Attend and Tell (Xu et al. 2015) Eq. 14.
    """
    mask = tf.cast(tf.not_equal(target_ids, PAD_ID), tf.float32)
    nll = caption_nll(target_ids, outputs["logits"])
    penalty = attention_penalty(outputs["alpha"], mask)
    return {
        "loss": nll + attention_regularization * penalty,
        "nll": nll,
        "penalty": penalty,
    }
