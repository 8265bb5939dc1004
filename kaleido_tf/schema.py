"""The TFRecord schema shared by the writer (data_prep) and the reader (inputs/parse).

One example per **image** (DESIGN.md §2): its patch features for every patch of the
layout, the normalised 5-D boxes, the precomputed pixel-space pretext variants, the
ids of its product and categories, and the product's WordPiece ids. This module is
plain Python (no TensorFlow) so that both sides can import it cheaply.
"""

from __future__ import annotations

import dataclasses

from kaleido_tf.errors import DataError

# Bump when a key, dtype, shape or meaning changes; readers refuse other versions.
SCHEMA_VERSION = 1

FEATURE_BYTES_DTYPE = "float16"  # patch features are stored as raw float16 bytes


@dataclasses.dataclass(frozen=True)
class Layout:
    """How an image is cut into patches.

    Attributes:
        name: Layout id used in configs and manifests.
        grids: Grid size of each level, in sequence order (level n is an n x n grid).
        pixel_variants: Whether records carry the pixel-space pretext variants
            (level-1 rotations, greyed level-4 patches) that Kaleido-BERT needs.
    """

    name: str
    grids: tuple[int, ...]
    pixel_variants: bool

    @property
    def num_patches(self) -> int:
        """P, the number of patches of one image."""
        return sum(n * n for n in self.grids)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        """Index of each level's first patch in the patch sequence."""
        offsets, start = [], 0
        for n in self.grids:
            offsets.append(start)
            start += n * n
        return tuple(offsets)

    def level_slice(self, grid: int) -> slice:
        """The patch-sequence slice of the level with an ``grid x grid`` split."""
        i = self.grids.index(grid)
        start = self.level_offsets[i]
        return slice(start, start + grid * grid)


@dataclasses.dataclass(frozen=True)
class RegionLayout:
    """Detector regions (RoIs) instead of patches: ImageBERT / InterBERT.

    Up to ``max_regions`` regions per image, top-scored first, zero-padded, with a
    ``num_regions`` count; each has a pooled feature, its box in source pixels, the
    normalised 5-D location ``(x1/W, y1/H, x2/W, y2/H, area/(W H))``
    (imagebert_interbert_commercemm.md §2.2) and the detector's class (and,
    optionally, its class distribution for KL targets).

    Attributes:
        name: Layout id used in configs and manifests.
        max_regions: R, the padded region count (ImageBERT: 100; ablation: 36).
    """

    name: str
    max_regions: int

    @property
    def num_patches(self) -> int:
        """R: the visual tokens of one image (the name patch layouts use)."""
        return self.max_regions

    @property
    def grids(self) -> tuple[int, ...]:
        """No grids: regions come from a detector."""
        return ()

    pixel_variants = False


@dataclasses.dataclass(frozen=True)
class PixelLayout:
    """Raw pixels instead of precomputed patch features: CommerceMM.

    One JPEG per image (the KPG crop or the full image, resized to a square), with
    the teacher targets of MIM precomputed offline: ``teacher_features`` r(v)
    (pooled features of a frozen backbone, the GrokNet pool5 substitute) and
    ``teacher_clusters`` c(v) (soft k-means assignments, the ClusterFit
    substitute); imagebert_interbert_commercemm.md §4.2, §4.11 row 6. The image
    encoder cuts the pixels itself, so no patches are stored.

    Attributes:
        name: Layout id used in configs and manifests.
        image_size: The paper's image side S (224). A build may use another side
            (demo, tests); its manifest's ``image_size`` is the one written.
    """

    name: str
    image_size: int

    @property
    def num_patches(self) -> int:
        """0: no precomputed visual tokens (the image encoder makes them)."""
        return 0

    @property
    def grids(self) -> tuple[int, ...]:
        """No grids: the records hold pixels."""
        return ()

    pixel_variants = False


@dataclasses.dataclass(frozen=True)
class OmniTupleLayout:
    """CommerceMM Omni-Retrieval tuples: (source image, source text, target image,
    target text) with presence flags δ (imagebert_interbert_commercemm.md §4.5,
    §4.8, §4.11 rows 14 and 22). A missing image is stored as grey pixels, a
    missing text as ``[CLS] [SEP]``; the flags say which modalities exist.

    Attributes:
        name: Layout id used in configs and manifests.
        image_size: The paper's image side S (224); see PixelLayout.
    """

    name: str
    image_size: int

    @property
    def num_patches(self) -> int:
        """0: no precomputed visual tokens."""
        return 0

    @property
    def grids(self) -> tuple[int, ...]:
        """No grids: the records hold pixels."""
        return ()

    pixel_variants = False


AnyLayout = Layout | RegionLayout | PixelLayout | OmniTupleLayout

# Kaleido-BERT §3.2: 1x1 ... 5x5 = 55 patches. FashionBERT §3.1: one 8x8 grid.
# ImageBERT §3.2: the top-100 RoIs (36 in the Table 4 ablation).
# CommerceMM §4.2: raw pixels at 224x224 (+ MIM teacher targets), and its
# Omni-Retrieval tuples.
LAYOUTS: dict[str, AnyLayout] = {
    "kaleido": Layout("kaleido", (1, 2, 3, 4, 5), pixel_variants=True),
    "grid8": Layout("grid8", (8,), pixel_variants=False),
    "regions100": RegionLayout("regions100", 100),
    "regions36": RegionLayout("regions36", 36),
    "pixels224": PixelLayout("pixels224", 224),
    "omni_tuples224": OmniTupleLayout("omni_tuples224", 224),
}

# Omni-Retrieval tuple kinds (value of the ``kind`` key), spec §4.8 table and
# §4.11 row 22: an alternate view of a product -> the product page; the title
# alone (a pseudo search query) -> the product page.
OMNI_KINDS = ("view_to_product", "title_to_product")

# Mid-grey in pixel space for a missing image (spec §4.2 "grey pixels", §4.4 [D]
# "0.5 in [0, 1]"): uint8 128 in every channel.
GREY_PIXEL = 128

# Pixel-space pretext variants of the kaleido layout (kaleido_fashionbert.md §4.5):
# level-1 rotated counter-clockwise by 90, 180 and 270 degrees (RR labels 1..3;
# label 0 is the unrotated patch), and every level-4 patch greyed (G2CM).
NUM_ROTATIONS = 3
ROTATED_LEVEL = 1
GREYED_LEVEL = 4

BOX_DIM = 5  # [x1, x2, y1, y2, w*h], normalised by the crop's width and height

# Token-patch alignment pairs of the Attention-based Alignment Generator (Kaleido-BERT
# §3.3), at most this many per image, best score first; -1 pads. ``prepare`` writes
# none; ``kaleido-tf align extract`` fills them in.
MAX_ALIGNMENT_PAIRS = 64


def get_layout(name: str) -> AnyLayout:
    """Returns the layout called ``name``; raises DataError listing valid names."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise DataError(
            f"unknown patch layout {name!r}: valid layouts are {sorted(LAYOUTS)}"
        ) from None


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One record key.

    Attributes:
        dtype: "int64", "float32", "bytes" (a scalar string) or "float16_bytes"
            (a fixed-size array stored as raw little-endian float16 bytes).
        shape: The decoded shape.
        doc: What the key holds.
    """

    dtype: str
    shape: tuple[int, ...]
    doc: str

    @property
    def size(self) -> int:
        """Number of scalars in the decoded value."""
        n = 1
        for d in self.shape:
            n *= d
        return n


def text_fields(max_seq_length: int) -> dict[str, FieldSpec]:
    """The keys every image record starts with, whatever its visual layout: ids,
    categories and the product's WordPiece ids (T = ``max_seq_length``)."""
    t = max_seq_length
    return {
        "image_id": FieldSpec("bytes", (), "'<product id>_<pose index>'"),
        "product_id": FieldSpec("int64", (), "Fashion-Gen input_productID"),
        "pose_index": FieldSpec("int64", (), "1-based view index within product"),
        "source_row": FieldSpec("int64", (), "row of the image in the source file"),
        "category_id": FieldSpec("int64", (), "index in categories.json; -1 unknown"),
        "subcategory_id": FieldSpec("int64", (), "index in categories.json; -1"),
        "input_ids": FieldSpec("int64", (t,), "WordPiece ids, [CLS] .. [SEP], 0-pad"),
        "word_index": FieldSpec(
            "int64", (t,), "index of the source word of each token; -1 special/pad"
        ),
    }


def region_fields(
    layout: RegionLayout,
    feature_dim: int,
    num_classes: int,
    class_distribution: bool,
) -> dict[str, FieldSpec]:
    """The visual keys of a region record (after ``text_fields``).

    Args:
        layout: The region layout (R regions).
        feature_dim: D, the pooled RoI feature size (2048).
        num_classes: C, the detector's object classes (Visual Genome: 1600).
        class_distribution: Records carry each region's class distribution
            (``region_class_probs``) for the KL variant of MOC / MRM.
    """
    r, d = layout.max_regions, feature_dim
    fields = {
        "image_size": FieldSpec("int64", (2,), "W, H of the source image, pixels"),
        "num_regions": FieldSpec("int64", (), "real regions (<= R), best first"),
        "region_boxes": FieldSpec(
            "float32", (r, 4), "x1, y1, x2, y2 in source pixels; 0 = padding"
        ),
        "region_locations": FieldSpec(
            "float32", (r, BOX_DIM), "(x1/W, y1/H, x2/W, y2/H, area/(W H)); 0-pad"
        ),
        "region_features": FieldSpec("float16_bytes", (r, d), "pooled RoI features"),
        "region_scores": FieldSpec("float32", (r,), "detector confidence; 0 = pad"),
        "region_classes": FieldSpec(
            "int64", (r,), f"detector class 0..{num_classes - 1}; -1 = padding"
        ),
    }
    if class_distribution:
        fields["region_class_probs"] = FieldSpec(
            "float16_bytes", (r, num_classes), "detector class distribution"
        )
    return fields


def pixel_fields(feature_dim: int, num_clusters: int) -> dict[str, FieldSpec]:
    """The visual keys of a pixel record (after ``text_fields``).

    Args:
        feature_dim: D_t, the teacher backbone's pooled feature size (ResNet-50
            pool5: 2048).
        num_clusters: K_c, the k-means clusters of the soft assignments (spec
            §4.2 [D]: 10,000).
    """
    return {
        "image_jpeg": FieldSpec(
            "bytes", (), "JPEG of the S x S RGB image (KPG crop or full image)"
        ),
        "crop_box": FieldSpec(
            "int64", (4,), "x1, y1, x2, y2 of the square crop in source pixels"
        ),
        "teacher_features": FieldSpec(
            "float16_bytes",
            (feature_dim,),
            "r(v): pooled features of the frozen teacher on the decoded JPEG",
        ),
        "teacher_clusters": FieldSpec(
            "float16_bytes",
            (num_clusters,),
            "c(v): softmax(-||r(v) - mu_k||^2 / T) over the k-means centroids",
        ),
    }


def omni_tuple_fields(max_seq_length: int) -> dict[str, FieldSpec]:
    """Every key of an Omni-Retrieval tuple record (T = ``max_seq_length``)."""
    t = max_seq_length
    fields = {
        "product_id": FieldSpec("int64", (), "Fashion-Gen input_productID of both"),
        "kind": FieldSpec("int64", (), f"index in schema.OMNI_KINDS {OMNI_KINDS}"),
    }
    for side in ("src", "tgt"):
        fields.update(
            {
                f"{side}_image_jpeg": FieldSpec(
                    "bytes", (), "JPEG of the S x S image; grey if no image"
                ),
                f"{side}_pose_index": FieldSpec(
                    "int64", (), "1-based view index of the image; 0 = no image"
                ),
                f"{side}_input_ids": FieldSpec(
                    "int64", (t,), "WordPiece ids, [CLS] .. [SEP], 0-pad"
                ),
                f"{side}_has_image": FieldSpec(
                    "int64", (), "delta^I: 1 = a real image, 0 = grey pixels"
                ),
                f"{side}_has_text": FieldSpec(
                    "int64", (), "delta^T: 1 = a text, 0 = empty ([CLS] [SEP])"
                ),
            }
        )
    return fields


def record_fields(
    layout: AnyLayout,
    max_seq_length: int,
    feature_dim: int,
    num_classes: int = 0,
    class_distribution: bool = False,
    num_clusters: int = 0,
) -> dict[str, FieldSpec]:
    """Returns every key of one record, in writing order.

    Args:
        layout: The patch, region, pixel or Omni-tuple layout of the records.
        max_seq_length: T, the padded text length including [CLS] and [SEP].
        feature_dim: D, the backbone (or RoI) feature size; pixel layouts: D_t,
            the teacher's feature size; unused by Omni-tuple layouts.
        num_classes: Region layouts: C, the detector's classes.
        class_distribution: Region layouts: whether records carry
            ``region_class_probs``.
        num_clusters: Pixel layouts: K_c, the teacher's k-means clusters.
    """
    if isinstance(layout, OmniTupleLayout):
        return omni_tuple_fields(max_seq_length)
    if isinstance(layout, PixelLayout):
        if feature_dim < 1 or num_clusters < 1:
            raise DataError(
                f"layout {layout.name!r} needs feature_dim >= 1 and num_clusters "
                f">= 1, got {feature_dim} and {num_clusters}"
            )
        return {
            **text_fields(max_seq_length),
            **pixel_fields(feature_dim, num_clusters),
        }
    if isinstance(layout, RegionLayout):
        if num_classes < 1:
            raise DataError(f"layout {layout.name!r} needs num_classes >= 1")
        return {
            **text_fields(max_seq_length),
            **region_fields(layout, feature_dim, num_classes, class_distribution),
        }
    p, d = layout.num_patches, feature_dim
    fields = {
        **text_fields(max_seq_length),
        "crop_box": FieldSpec(
            "int64", (4,), "x1, y1, x2, y2 of the square crop in source pixels"
        ),
        "patch_boxes": FieldSpec(
            "float32", (p, BOX_DIM), "[x1, x2, y1, y2, w*h] / crop size, per patch"
        ),
        "patch_features": FieldSpec("float16_bytes", (p, d), "backbone features"),
        "align_word_index": FieldSpec(
            "int64",
            (MAX_ALIGNMENT_PAIRS,),
            "word (as in word_index) of each alignment pair; -1 = no pair",
        ),
        "align_patch_index": FieldSpec(
            "int64", (MAX_ALIGNMENT_PAIRS,), "patch of each pair (0..P-1); -1 = none"
        ),
        "align_score": FieldSpec(
            "float32", (MAX_ALIGNMENT_PAIRS,), "score of each pair; 0 = no pair"
        ),
    }
    if layout.pixel_variants:
        n4 = GREYED_LEVEL * GREYED_LEVEL
        fields["rotated_features"] = FieldSpec(
            "float16_bytes",
            (NUM_ROTATIONS, d),
            "level-1 patch rotated counter-clockwise by 90, 180, 270 degrees",
        )
        fields["grey_features"] = FieldSpec(
            "float16_bytes", (n4, d), "each level-4 patch greyed (BT.601 luma)"
        )
    return fields


def empty_alignment() -> dict[str, list]:
    """The alignment fields of a record without pairs."""
    n = MAX_ALIGNMENT_PAIRS
    return {
        "align_word_index": [-1] * n,
        "align_patch_index": [-1] * n,
        "align_score": [0.0] * n,
    }
