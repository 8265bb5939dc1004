"""The stored image of CommerceMM's records: KPG crop (or full image) -> S x S JPEG.

CommerceMM feeds raw pixels at 224 x 224 to an end-to-end image encoder
(imagebert_interbert_commercemm.md §4.2). Records keep the image as JPEG bytes,
encoded and decoded with TensorFlow's libjpeg (``tf.io.encode_jpeg`` /
``tf.io.decode_jpeg``), so the pixels the offline teacher embeds are exactly the
pixels ``kaleido_tf.inputs.pixel_records`` decodes at training time. A missing
image is mid-grey (spec §4.2, §4.4 [D]: 0.5 in [0, 1]).
"""

from __future__ import annotations

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_prep.kpg.foreground import CropBox, extract_crop, make_cropper
from kaleido_tf.schema import GREY_PIXEL

# TensorFlow's default JPEG decoder uses a fast, less accurate inverse DCT (about
# 15 dB worse PSNR than libjpeg's accurate one on small crops); offline and online
# decoding both use the accurate one (``kaleido_tf.inputs.pixel_records``).
DCT_METHOD = "INTEGER_ACCURATE"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of ``image`` (uint8 [S, S, 3] RGB), 4:2:0 chroma, baseline."""
    import tensorflow as tf

    return tf.io.encode_jpeg(
        tf.constant(image, tf.uint8), quality=quality, chroma_downsampling=True
    ).numpy()


def decode_jpeg(data: bytes) -> np.ndarray:
    """uint8 [S, S, 3] RGB pixels of JPEG bytes, decoded as the training side does
    (``kaleido_tf.inputs.pixel_records.decode_image``)."""
    import tensorflow as tf

    return tf.io.decode_jpeg(data, channels=3, dct_method=DCT_METHOD).numpy()


def grey_jpeg(image_size: int, quality: int) -> bytes:
    """The JPEG of a missing image: every pixel ``schema.GREY_PIXEL`` (128)."""
    return encode_jpeg(
        np.full((image_size, image_size, 3), GREY_PIXEL, np.uint8), quality
    )


class JpegImageMaker:
    """Crops (KPG foreground crop, or the full image made square), resizes to
    S x S and JPEG-encodes one Fashion-Gen image.

    Args:
        crop: A ``CropConfig``; ``output_size`` is S.
        quality: JPEG quality, 1-100.

    Example:
        >>> maker = JpegImageMaker(config.crop, 95)
        >>> jpeg, box = maker(image)      # bytes, CropBox in source pixels
    """

    def __init__(self, crop, quality: int) -> None:
        self.cropper = make_cropper(
            crop.method,
            crop.threshold,
            crop.morph_kernel,
            crop.min_component_fraction,
            crop.margin,
        )
        self.image_size = crop.output_size
        self.quality = quality

    def crop(self, image: np.ndarray) -> tuple[np.ndarray, CropBox]:
        """uint8 [S, S, 3] crop of ``image`` (uint8 [H, W, 3]) and its box."""
        box = self.cropper.crop_box(image)
        return extract_crop(image, box, self.image_size), box

    def __call__(self, image: np.ndarray) -> tuple[bytes, CropBox]:
        pixels, box = self.crop(image)
        return encode_jpeg(pixels, self.quality), box
