"""Patch features from a frozen Keras-applications CNN, global-average pooled.

Kaleido-BERT §3.2 embeds each kaleido patch with "the standard ResNet-50"; FashionBERT
§3.1 with ResNeXt-101 (ResNet-101 here, F-Q2). Weights come only from a local ``.h5``
file (Keras-applications "notop" weights); random weights need an explicit choice
and are seeded, so every worker and every split gets the same network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kaleido_tf.errors import CheckpointError


def _registry() -> dict[str, tuple[Callable, Callable]]:
    import tf_keras

    apps = tf_keras.applications
    return {
        "resnet50": (apps.ResNet50, apps.resnet.preprocess_input),
        "resnet101": (apps.ResNet101, apps.resnet.preprocess_input),
        "resnet152": (apps.ResNet152, apps.resnet.preprocess_input),
        # MobileNetV3 carries its own rescaling layer (include_preprocessing=True).
        "mobilenet_v3_small": (apps.MobileNetV3Small, lambda x: x),
    }


BACKBONE_NAMES = ("resnet50", "resnet101", "resnet152", "mobilenet_v3_small")


class PatchFeatureExtractor:
    """Embeds uint8 patches into D-dimensional pooled features, in batches.

    Args:
        name: One of ``BACKBONE_NAMES``.
        patch_size: Input side; patches must already have this size.
        weights: Path of a Keras ``.h5`` weights file for the headless network, or
            None for random weights (demo and tests only), whose batch-norm
            statistics are calibrated on a seeded batch (see
            ``_calibrate_batch_norm``).
        seed: Seed of the random weights when ``weights`` is None.
        batch_size: Patches per forward pass.

    Example:
        >>> extractor = PatchFeatureExtractor("resnet50", 224, "resnet50_notop.h5")
        >>> features = extractor(patches)   # float32 [n, 2048]
    """

    def __init__(
        self,
        name: str,
        patch_size: int,
        weights: str | Path | None,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        import tensorflow as tf
        import tf_keras

        registry = _registry()
        if name not in registry:
            raise CheckpointError(
                f"unknown backbone {name!r}: choose one of {sorted(registry)}"
            )
        self.name = name
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.weights_path = str(weights) if weights is not None else None
        self.seed = seed if weights is None else None
        build, self._preprocess = registry[name]
        tf_keras.utils.set_random_seed(seed)
        kwargs = dict(
            include_top=False,
            weights=None,
            input_shape=(patch_size, patch_size, 3),
            pooling="avg",
        )
        self.model = build(**kwargs)
        if weights is not None:
            self._load(Path(weights))
        else:
            self._calibrate_batch_norm(seed)
        self.model.trainable = False
        self.feature_dim = int(self.model.output_shape[-1])
        self._forward = tf.function(
            self._call_model,
            input_signature=[
                tf.TensorSpec([None, patch_size, patch_size, 3], tf.uint8)
            ],
        )

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise CheckpointError(
                f"backbone weights {path} not found: give the local .h5 file of "
                f"{self.name} (include_top=False), or `--backbone-weights none`"
            )
        try:
            self.model.load_weights(str(path))
        except (ValueError, OSError) as e:
            msg = str(e).splitlines()[0][:200]
            raise CheckpointError(
                f"backbone weights {path} do not fit {self.name} without its "
                f"classification top ({msg}); use the Keras-applications 'notop' "
                "weights of this network"
            ) from None

    def _calibrate_batch_norm(self, seed: int, count: int = 32) -> None:
        """Sets every BatchNorm's moving statistics from one seeded batch.

        See ``calibrate_batch_norm``.
        """
        calibrate_batch_norm(
            self.model, self._preprocess, self.patch_size, seed, count=count
        )

    def _call_model(self, patches):
        import tensorflow as tf

        x = self._preprocess(tf.cast(patches, tf.float32))
        return self.model(x, training=False)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        """float32 [n, D] features of uint8 [n, S, S, 3] patches."""
        if patches.ndim != 4 or patches.shape[1:] != (
            self.patch_size,
            self.patch_size,
            3,
        ):
            raise ValueError(
                f"patches have shape {patches.shape}, expected (n, {self.patch_size}, "
                f"{self.patch_size}, 3)"
            )
        out = np.empty((len(patches), self.feature_dim), np.float32)
        for a in range(0, len(patches), self.batch_size):
            b = min(a + self.batch_size, len(patches))
            out[a:b] = self._forward(patches[a:b]).numpy()
        return out

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of all weights: identifies the network."""
        h = hashlib.sha256()
        for w in self.model.weights:
            h.update(w.name.encode())
            h.update(np.ascontiguousarray(w.numpy(), np.float32).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """The backbone's entry of the manifest."""
        return {
            "name": self.name,
            "patch_size": self.patch_size,
            "feature_dim": self.feature_dim,
            "weights": self.weights_path,
            "random_init_seed": self.seed,
            "fingerprint": self.fingerprint(),
        }


def calibrate_batch_norm(
    model, preprocess: Callable, image_size: int, seed: int, count: int = 32
) -> None:
    """Sets every BatchNorm's moving statistics of ``model`` from one seeded batch.

    With random weights and identity BN statistics, activations shrink layer
    after layer (MobileNetV3's pooled features fall to ~1e-10, below float16's
    range). One training-mode pass with momentum 0 over seeded smooth colour
    fields makes each BN normalise its actual input, so features are
    well-scaled. The batch depends only on the seed: every split and worker
    gets the same network.

    Args:
        model: A Keras model taking preprocessed float32 [n, S, S, 3] images.
        preprocess: The network's input preprocessing (``_registry()``).
        image_size: S.
        seed: Seed of the calibration batch.
        count: Images in the calibration batch.
    """
    import cv2
    import tensorflow as tf
    import tf_keras

    rng = np.random.default_rng(seed)
    s = image_size
    batch = []
    for _ in range(count):
        g = int(rng.integers(2, 9))
        low = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
        field = cv2.resize(low, (s, s), interpolation=cv2.INTER_CUBIC)
        field += rng.normal(0, 8, field.shape).astype(np.float32)
        batch.append(np.clip(field, 0, 255))
    layers = [
        layer
        for layer in model.submodules
        if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    x = preprocess(tf.constant(np.stack(batch), tf.float32))
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def truncated_backbone(
    name: str,
    image_size: int,
    output_layer: str,
    weights: str | Path | None,
    seed: int = 0,
) -> tuple:
    """A frozen backbone cut after ``output_layer``: a spatial feature grid.

    The whole headless network is built (and given the ``weights`` file, which
    holds all of it), then a Keras model from its input to ``output_layer`` is
    returned; layers after the cut are dropped. With ``weights=None`` the weights
    are random (seeded) and batch-norm statistics are calibrated as in
    ``calibrate_batch_norm``.

    Args:
        name: One of ``BACKBONE_NAMES``.
        image_size: Input side S.
        output_layer: Name of the layer whose output is returned, e.g.
            ``conv4_block6_out`` (ResNet-50 conv4, stride 16).
        weights: A Keras-applications "notop" ``.h5`` file, or None.
        seed: Seed of the random weights when ``weights`` is None.

    Returns:
        ``(model, preprocess)``: ``model`` maps preprocessed float32
        [n, S, S, 3] to float32 [n, h, w, C]; ``preprocess`` maps RGB values in
        [0, 255] to the network's input range.

    Raises:
        CheckpointError: Unknown backbone or layer; unusable weights file.
    """
    import tf_keras

    registry = _registry()
    if name not in registry:
        raise CheckpointError(
            f"unknown backbone {name!r}: choose one of {sorted(registry)}"
        )
    build, preprocess = registry[name]
    tf_keras.utils.set_random_seed(seed)
    full = build(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(
                f"backbone weights {path} not found: give the local .h5 file of "
                f"{name} (include_top=False), or `--backbone-weights none`"
            )
        try:
            full.load_weights(str(path))
        except (ValueError, OSError) as e:
            msg = str(e).splitlines()[0][:200]
            raise CheckpointError(
                f"backbone weights {path} do not fit {name} without its "
                f"classification top ({msg}); use the Keras-applications 'notop' "
                "weights of this network"
            ) from None
    names = [layer.name for layer in full.layers]
    if output_layer not in names:
        close = [n for n in names if n.endswith(("_out", "/Add"))][-6:]
        raise CheckpointError(
            f"backbone {name} has no layer {output_layer!r} (e.g. {close})"
        )
    safe = output_layer.replace("/", "_")
    model = tf_keras.Model(
        full.input, full.get_layer(output_layer).output, name=f"{name}_to_{safe}"
    )
    if weights is None:
        calibrate_batch_norm(model, preprocess, image_size, seed)
    model.trainable = False
    return model, preprocess
