"""CommerceMM's image encoder: pixels -> [CLS] + grid/patch tokens (CommerceMM §4.2)."""

from __future__ import annotations

import math
from pathlib import Path

import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import resnet, vit
from official.vision.ops import preprocess_ops

from kaleido_tf.errors import CheckpointError

BACKBONES = ("resnet", "vit")
RESNET_STRIDE = 32  # C5, the last block group of a ResNet


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class ImageEncoder(tf_keras.layers.Layer):
    """A trainable vision backbone in the graph, as a sequence of H-wide visual tokens.

    Pixels are normalised with the ImageNet mean and standard deviation (the
    normalisation of tf-models-official's classification checkpoints), then run
    through a tf-models-official vision backbone, trained end to end with the rest
    of the model:

    - ``backbone="resnet"``: ``official.vision.modeling.backbones.ResNet``; its C5
      grid (7x7 at 224 px, 2048-d for ResNet-50) gives N = (S/32)^2 tokens, and the
      visual [CLS] is the grid's global average (spec §4.2 [D]). Learned position
      embeddings (1 + N rows) are added, spec §4.11 #10.
    - ``backbone="vit"``: ``official.vision.modeling.backbones.VisionTransformer``
      with its class token (``pooler="token"``); N = (S/patch)^2 patch tokens (196 for
      ViT-B/16 at 224 px) after the ViT's final LayerNorm, and its class token
      as the visual [CLS]. The ViT carries its own position embeddings.

    The 1 + N backbone features are projected to H, LayerNorm'd and dropped out
    (``LN(Linear(v) [+ position])``, spec §4.2 "Into the fusion encoder").

    Deviation: the spec's learned image modality-type embedding is the projection's
    bias here. A type vector added to every image token is indistinguishable from
    that bias (text gets its type from ``TextEmbedding``'s token-type table), so a
    separate weight would only duplicate it.

    Backbone weights come from a local TensorFlow checkpoint
    (``load_image_encoder_weights``); the projection is trained from scratch. The
    backbone's variables have Keras auto-generated names: checkpoints match them by
    object graph (``tf.train.Checkpoint(backbone=...)``), never by name.

    Args:
        hidden_size: H, the width of the transformer the tokens feed.
        backbone: ``resnet`` or ``vit``.
        image_size: S; input images are S x S. A multiple of 32 (ResNet) or of
            ``vit_patch_size``.
        resnet_model_id: ResNet depth (50 in the paper; 18 for tests).
        resnet_depth_multiplier: Channel-width multiplier of the ResNet (1.0 in
            the paper; e.g. 0.0625 for tests).
        vit_hidden_size: ViT width (768 for ViT-B).
        vit_num_layers: ViT blocks (12 for ViT-B).
        vit_num_heads: ViT attention heads (12 for ViT-B).
        vit_mlp_dim: ViT feed-forward width (3072 for ViT-B).
        vit_patch_size: ViT patch side (16 for ViT-B/16).
        vit_dropout: Dropout inside the ViT (its ``dropout_rate``; attention
            dropout is 0). Not given by the paper [D].
        initializer_range: Stddev of the truncated-normal initialisers of the
            projection and position table.
        output_dropout: Dropout on the projected tokens.

    Call arguments:
        pixels: float32 [B, S, S, 3]. RGB values in [0, 255] (grey = 127.5 before
            normalisation, spec §4.11 #5).
        training: Dropout and batch-norm switch.

    Returns:
        float32 [B, 1 + N, H]: the visual [CLS] token, then the N grid or patch
        tokens in row-major order.

    Example:
        >>> encoder = ImageEncoder(512, backbone="resnet")
        >>> encoder(pixels).shape   # pixels [B, 224, 224, 3]
        TensorShape([B, 50, 512])

    Reference: CommerceMM §3.1, §4.1 (image encoder); spec
    imagebert_interbert_commercemm.md §4.2, §4.3, §4.11 #10.
    """

    def __init__(
        self,
        hidden_size: int,
        backbone: str = "resnet",
        image_size: int = 224,
        resnet_model_id: int = 50,
        resnet_depth_multiplier: float = 1.0,
        vit_hidden_size: int = 768,
        vit_num_layers: int = 12,
        vit_num_heads: int = 12,
        vit_mlp_dim: int = 3072,
        vit_patch_size: int = 16,
        vit_dropout: float = 0.0,
        initializer_range: float = 0.02,
        output_dropout: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        stride = RESNET_STRIDE if backbone == "resnet" else vit_patch_size
        if image_size < stride or image_size % stride:
            raise ValueError(
                f"image_size {image_size} is not a positive multiple of the "
                f"{backbone} stride {stride}"
            )
        if backbone == "resnet" and resnet_model_id not in resnet.RESNET_SPECS:
            raise ValueError(
                f"resnet_model_id {resnet_model_id} is not one of "
                f"{sorted(resnet.RESNET_SPECS)}"
            )
        self.hidden_size = hidden_size
        self.backbone = backbone
        self.image_size = image_size
        self.resnet_model_id = resnet_model_id
        self.resnet_depth_multiplier = resnet_depth_multiplier
        self.vit_hidden_size = vit_hidden_size
        self.vit_num_layers = vit_num_layers
        self.vit_num_heads = vit_num_heads
        self.vit_mlp_dim = vit_mlp_dim
        self.vit_patch_size = vit_patch_size
        self.vit_dropout = vit_dropout
        self.initializer_range = initializer_range
        self.output_dropout = output_dropout

        specs = tf_keras.layers.InputSpec(shape=[None, image_size, image_size, 3])
        if backbone == "resnet":
            self.backbone_network = resnet.ResNet(
                model_id=resnet_model_id,
                input_specs=specs,
                depth_multiplier=resnet_depth_multiplier,
                name="resnet",
            )
        else:
            self.backbone_network = vit.VisionTransformer(
                mlp_dim=vit_mlp_dim,
                num_heads=vit_num_heads,
                num_layers=vit_num_layers,
                attention_dropout_rate=0.0,
                dropout_rate=vit_dropout,
                input_specs=specs,
                patch_size=vit_patch_size,
                hidden_size=vit_hidden_size,
                pooler="token",
                output_2d_feature_maps=True,
            )

        def init():
            return tf_keras.initializers.TruncatedNormal(stddev=initializer_range)

        self.projection = tf_keras.layers.Dense(
            hidden_size, kernel_initializer=init(), name="projection"
        )
        self.layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=1e-12, dtype=tf.float32, name="layer_norm"
        )
        self.dropout_layer = tf_keras.layers.Dropout(output_dropout, name="dropout")
        self._position_init = init()

    @property
    def num_patches(self) -> int:
        """N, the grid or patch tokens (49 for ResNet, 196 for ViT-B/16 at 224)."""
        stride = RESNET_STRIDE if self.backbone == "resnet" else (self.vit_patch_size)
        return (self.image_size // stride) ** 2

    @property
    def num_tokens(self) -> int:
        """1 + N, the visual sequence length including the [CLS] token."""
        return 1 + self.num_patches

    def build(self, input_shape) -> None:
        if self.backbone == "resnet":
            self.position_table = self.add_weight(
                name="position_embeddings",
                shape=(self.num_tokens, self.hidden_size),
                initializer=self._position_init,
            )
        super().build(input_shape)

    def backbone_tokens(self, pixels, training=None):
        """The backbone's 1 + N features before the projection.

        Args:
            pixels: float32 [B, S, S, 3], RGB in [0, 255].
            training: Batch-norm and dropout switch.

        Returns:
            float32 [B, 1 + N, D]; D = the backbone's width (2048 x multiplier for
            ResNet-50, ``vit_hidden_size`` for ViT).
        """
        mean = tf.constant(preprocess_ops.MEAN_RGB, tf.float32)
        std = tf.constant(preprocess_ops.STDDEV_RGB, tf.float32)
        x = (tf.cast(pixels, tf.float32) - mean) / std
        endpoints = self.backbone_network(x, training=training)
        if self.backbone == "resnet":
            grid = endpoints[str(int(math.log2(RESNET_STRIDE)))]  # [B, s, s, D]
            depth = grid.shape[-1]
            grid = tf.reshape(grid, [-1, self.num_patches, depth])  # [B, N, D]
            cls = tf.reduce_mean(grid, axis=1, keepdims=True)  # [B, 1, D]
        else:
            level = str(round(math.log2(self.vit_patch_size)))
            patches = endpoints[level]  # [B, s, s, D]
            depth = patches.shape[-1]
            grid = tf.reshape(patches, [-1, self.num_patches, depth])  # [B, N, D]
            cls = tf.reshape(endpoints["pre_logits"], [-1, 1, depth])  # [B, 1, D]
        return tf.concat([cls, grid], axis=1)  # [B, 1 + N, D]

    def call(self, pixels, training=None):
        x = self.projection(self.backbone_tokens(pixels, training=training))
        if self.backbone == "resnet":
            x += self.position_table[tf.newaxis]  # [1, 1 + N, H]
        return self.dropout_layer(self.layer_norm(x), training=training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            backbone=self.backbone,
            image_size=self.image_size,
            resnet_model_id=self.resnet_model_id,
            resnet_depth_multiplier=self.resnet_depth_multiplier,
            vit_hidden_size=self.vit_hidden_size,
            vit_num_layers=self.vit_num_layers,
            vit_num_heads=self.vit_num_heads,
            vit_mlp_dim=self.vit_mlp_dim,
            vit_patch_size=self.vit_patch_size,
            vit_dropout=self.vit_dropout,
            initializer_range=self.initializer_range,
            output_dropout=self.output_dropout,
        )
        return config


def _checkpoint_prefix(path: Path) -> str:
    """The checkpoint prefix that ``path`` names (a prefix or a folder)."""
    if path.is_dir():
        prefix = tf.train.latest_checkpoint(str(path))
        if prefix is None:
            raise CheckpointError(
                f"image encoder weights: folder {path} holds no TensorFlow checkpoint "
                "(no `checkpoint` file): give the checkpoint prefix, e.g. "
                f"{path}/ckpt-1"
            )
        return prefix
    if not Path(str(path) + ".index").is_file():
        raise CheckpointError(
            f"image encoder weights {path} not found ({path}.index is missing): give "
            "the local prefix of a TensorFlow checkpoint of the backbone"
        )
    return str(path)


def save_image_encoder_weights(encoder: ImageEncoder, path: str | Path) -> str:
    """Writes the backbone's weights as a TensorFlow checkpoint at prefix ``path``.

    The checkpoint's root has one child, ``backbone``, as in tf-models-official's
    training checkpoints of classification models (their ``checkpoint_items``), so
    the two kinds of file load the same way. TensorFlow writes the files under a
    temporary name and renames them when complete.

    Args:
        encoder: A built ``ImageEncoder``.
        path: Checkpoint prefix (``.index`` and ``.data-*`` files are written).

    Returns:
        The prefix written.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return tf.train.Checkpoint(backbone=encoder.backbone_network).write(str(path))


def load_image_encoder_weights(encoder: ImageEncoder, path: str | Path) -> None:
    """Restores the backbone's weights from a local TensorFlow checkpoint.

    Every backbone variable (including batch-norm statistics) must be found in the
    checkpoint with the right shape; other objects in the file (a classification
    head, an optimizer) are ignored. The projection and position table are not in
    the file and keep their initial values.

    Args:
        encoder: The ``ImageEncoder`` to fill (its backbone is built at
            construction).
        path: A checkpoint prefix, or a folder whose ``checkpoint`` file names
            one. Accepted: ``save_image_encoder_weights`` output and
            tf-models-official image-classification checkpoints of the same
            backbone (root child ``backbone``).

    Raises:
        CheckpointError: The file is missing, or lacks or mis-shapes a backbone
            variable; the encoder's weights are then left as they were.
    """
    prefix = _checkpoint_prefix(Path(path))
    variables = encoder.backbone_network.variables
    before = [v.numpy() for v in variables]
    checkpoint = tf.train.Checkpoint(backbone=encoder.backbone_network)
    try:
        status = checkpoint.read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        # A failed read may have restored some variables: put them all back.
        for variable, value in zip(variables, before):
            variable.assign(value)
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"image encoder weights {prefix} do not fit the {encoder.backbone} "
            f"backbone of this config ({msg}); give a checkpoint of the same "
            "backbone (model id, width, patch size, image size)"
        ) from None
