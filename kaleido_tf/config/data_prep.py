"""Schema of the offline conversion configs, ``configs/data/*.yaml``.

This docstring set is the reference for the YAML keys. Defaults are the papers'
values or the project's documented defaults (kaleido_fashionbert.md §4.1, §9).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

BackboneName = Literal["resnet50", "resnet101", "resnet152", "mobilenet_v3_small"]


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """Foreground crop of the Kaleido Patch Generator (Kaleido-BERT §3.2).

    Attributes:
        method: ``background_difference``: the training-free segmentation of
            kaleido_fashionbert.md §4.1 (K-Q1); ``none``: the full image (FashionBERT,
            and the "Kaleido. without SOD" ablation of Kaleido-BERT Table 4).
        threshold: A pixel is foreground when its largest absolute channel
            difference from the background colour (median of the border, RGB in
            [0, 1]) exceeds this.
        morph_kernel: Side of the square kernel of the morphological close, then
            open, of the foreground mask.
        min_component_fraction: Connected foreground components smaller than this
            fraction of the image area are dropped.
        margin: The bounding box grows by this fraction of its size on every side
            before it is made square (K-Q2).
        output_size: Side of the square crop after resizing (the "split image").
    """

    method: Literal["background_difference", "none"] = "background_difference"
    threshold: float = 0.08
    morph_kernel: int = 5
    min_component_fraction: float = 0.01
    margin: float = 0.04
    output_size: int = 256

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"crop.threshold must be in (0, 1), got {self.threshold}")
        if self.morph_kernel < 1:
            raise ValueError(f"crop.morph_kernel must be >= 1, got {self.morph_kernel}")
        if not 0.0 <= self.min_component_fraction < 1.0:
            raise ValueError(
                "crop.min_component_fraction must be in [0, 1), got "
                f"{self.min_component_fraction}"
            )
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"crop.margin must be in [0, 1), got {self.margin}")
        if self.output_size < 8:
            raise ValueError(f"crop.output_size must be >= 8, got {self.output_size}")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """The frozen CNN that embeds each patch (global-average-pooled features).

    Attributes:
        name: A Keras-applications network. ``resnet50`` is Kaleido-BERT's (§3.2);
            ``resnet101`` stands in for FashionBERT's ResNeXt-101 (F-Q2);
            ``mobilenet_v3_small`` is the small demo and test backbone.
        patch_size: Each patch is resized to ``patch_size x patch_size`` (K-Q3: 224).
        batch_size: Patches per forward pass, gathered across images.
    """

    name: BackboneName = "resnet50"
    patch_size: int = 224
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.patch_size < 32:
            raise ValueError(
                f"backbone.patch_size must be >= 32, got {self.patch_size}"
            )
        if self.batch_size < 1:
            raise ValueError(f"backbone.batch_size must be >= 1, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """WordPiece tokenisation of the product text.

    Attributes:
        field: Which Fashion-Gen text is used: ``description`` (K-Q20, the released
            code's ``prod_desc``), ``concat_description`` or ``name``.
        max_seq_length: T, including [CLS] and [SEP] (Kaleido K-Q8: 64; FashionBERT
            paper §3.1: 448).
        lower_case: Lower-case before WordPiece (bert-base-uncased, §2.2).
        demo_vocab_size: Target size of the vocabulary learned from the training
            texts when no ``--vocab`` is given (demo-only path).
    """

    field: Literal["description", "concat_description", "name"] = "description"
    max_seq_length: int = 64
    lower_case: bool = True
    demo_vocab_size: int = 4000

    def __post_init__(self) -> None:
        if self.max_seq_length < 3:
            raise ValueError(
                f"text.max_seq_length must be >= 3, got {self.max_seq_length}"
            )


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """How records are grouped into shards.

    Attributes:
        records_per_shard: Source rows per shard. Shard i always covers the same
            rows, so reruns resume and workers split the work by shard.
        images_per_batch: Images whose patches are embedded together.
    """

    records_per_shard: int = 1024
    images_per_batch: int = 8

    def __post_init__(self) -> None:
        if self.records_per_shard < 1:
            raise ValueError("output.records_per_shard must be >= 1")
        if self.images_per_batch < 1:
            raise ValueError("output.images_per_batch must be >= 1")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """Everything ``kaleido-tf prepare`` needs besides paths and weights.

    Attributes:
        layout: ``kaleido`` (1x1..5x5 = 55 patches) or ``grid8`` (FashionBERT's 8x8).
        crop: See CropConfig.
        backbone: See BackboneConfig.
        text: See TextConfig.
        output: See OutputConfig.
    """

    layout: Literal["kaleido", "grid8"] = "kaleido"
    crop: CropConfig = dataclasses.field(default_factory=CropConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


@dataclasses.dataclass(frozen=True)
class RegionSourceConfig:
    """What the region source (detector or feature files) must provide.

    Attributes:
        feature_dim: D, the pooled RoI feature size; sources with another size
            are refused (ImageBERT [D]: 2048, bottom-up ResNet-101).
        num_classes: C, object classes without background (Visual Genome: 1600);
            class scores may carry one more column, background first.
        class_distribution: Records also carry each region's object-class
            distribution (``region_class_probs``, for a KL variant of MOC);
            needs class scores from the source.
    """

    feature_dim: int = 2048
    num_classes: int = 1600
    class_distribution: bool = False

    def __post_init__(self) -> None:
        if self.feature_dim < 1:
            raise ValueError(
                f"regions.feature_dim must be >= 1, got {self.feature_dim}"
            )
        if self.num_classes < 1:
            raise ValueError(
                f"regions.num_classes must be >= 1, got {self.num_classes}"
            )


@dataclasses.dataclass(frozen=True)
class RoIBackboneConfig:
    """The frozen CNN whose feature map is RoIAligned (detector path only).

    Attributes:
        name: A Keras-applications network (see BackboneConfig).
        image_size: The whole image is resized to this side before the backbone.
        output_layer: The layer whose map is pooled; its channels are D.
        roi_size: RoIAlign bins per side (one bilinear sample per bin centre,
            then averaged).
    """

    name: BackboneName = "resnet101"
    image_size: int = 448
    output_layer: str = "conv5_block3_out"
    roi_size: int = 14

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(
                f"backbone.image_size must be >= 32, got {self.image_size}"
            )
        if self.roi_size < 1:
            raise ValueError(f"backbone.roi_size must be >= 1, got {self.roi_size}")


def _region_text() -> TextConfig:
    return TextConfig(max_seq_length=44)


@dataclasses.dataclass(frozen=True)
class RegionPrepareConfig:
    """Everything ``kaleido-tf prepare-regions`` needs besides paths and weights.

    Attributes:
        layout: ``regions100`` (ImageBERT) or ``regions36`` (its ablation).
        regions: See RegionSourceConfig.
        backbone: See RoIBackboneConfig (used with a detector SavedModel only).
        text: See TextConfig (ImageBERT: T = 44, so that 44 + 100 = 144).
        output: See OutputConfig (``images_per_batch`` is unused: images are
            detected one by one).
    """

    layout: Literal["regions100", "regions36"] = "regions100"
    regions: RegionSourceConfig = dataclasses.field(default_factory=RegionSourceConfig)
    backbone: RoIBackboneConfig = dataclasses.field(default_factory=RoIBackboneConfig)
    text: TextConfig = dataclasses.field(default_factory=_region_text)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The offline MIM teacher targets of CommerceMM (spec §4.2, §4.11 row 6).

    GrokNet and ClusterFit are not public; the spec's substitutes are used:
    r(v) = the pooled (global-average, "pool5") features of a frozen public CNN
    applied to the decoded JPEG the model sees, and c(v) =
    ``softmax(-||r(v) - mu_k||^2 / T)`` over K_c k-means centroids fitted on the
    r(v) of the training split, with T chosen by bisection so that the mean
    max-probability over the images is ``target_max_probability``.

    Attributes:
        backbone: A Keras-applications network (its input side is the image
            side, ``crop.output_size``).
        batch_size: Images per forward pass of the teacher.
        num_clusters: K_c (spec §4.2 [D]: 10,000).
        target_max_probability: Mean max-probability that fixes T (spec: 0.5);
            must lie in (1 / K_c, 1).
        kmeans_seed: ``random_state`` of scikit-learn's MiniBatchKMeans.
        kmeans_batch_size: MiniBatchKMeans mini-batch size.
        kmeans_max_iter: MiniBatchKMeans passes over the data at most.
        temperature_images: At most this many images (a seeded sample) enter the
            bisection of T; all of them when the split is smaller.
    """

    backbone: BackboneName = "resnet50"
    batch_size: int = 64
    num_clusters: int = 10000
    target_max_probability: float = 0.5
    kmeans_seed: int = 0
    kmeans_batch_size: int = 4096
    kmeans_max_iter: int = 100
    temperature_images: int = 50000

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"teacher.batch_size must be >= 1, got {self.batch_size}")
        if self.num_clusters < 2:
            raise ValueError(
                f"teacher.num_clusters must be >= 2, got {self.num_clusters}"
            )
        if not 1.0 / self.num_clusters < self.target_max_probability < 1.0:
            raise ValueError(
                "teacher.target_max_probability must lie in (1/num_clusters, 1) = "
                f"({1.0 / self.num_clusters:.4g}, 1), got "
                f"{self.target_max_probability}"
            )
        for key in ("kmeans_batch_size", "kmeans_max_iter", "temperature_images"):
            if getattr(self, key) < 1:
                raise ValueError(
                    f"teacher.{key} must be >= 1, got {getattr(self, key)}"
                )


@dataclasses.dataclass(frozen=True)
class OmniConfig:
    """How Omni-Retrieval tuples are built from Fashion-Gen's multi-view products
    (spec §4.8 table, §4.11 rows 14 and 22).

    Attributes:
        main_pose: The 1-based view index (file order within the product, as
            ``prepare``'s ``pose_index``) whose image represents the product on
            the target side; Fashion-Gen marks no main view, and its first view
            is the catalogue's front shot. Products with fewer views use their
            first.
        query_field: The Fashion-Gen text used as the title-only source (a
            pseudo search query): ``name`` is the product title.
        view_tuples: Write (alternate view, no text) -> product tuples.
        title_tuples: Write (no image, title) -> product tuples.
    """

    main_pose: int = 1
    query_field: Literal["name", "description", "concat_description"] = "name"
    view_tuples: bool = True
    title_tuples: bool = True

    def __post_init__(self) -> None:
        if self.main_pose < 1:
            raise ValueError(f"omni.main_pose must be >= 1, got {self.main_pose}")
        if not (self.view_tuples or self.title_tuples):
            raise ValueError("omni.view_tuples and omni.title_tuples are both false")


def _pixel_crop() -> CropConfig:
    return CropConfig(output_size=224)


@dataclasses.dataclass(frozen=True)
class PixelPrepareConfig:
    """Everything ``kaleido-tf prepare-pixels`` and ``prepare-omni`` need besides
    paths and weights (CommerceMM, spec §4.2, §4.8).

    Attributes:
        layout: ``pixels224`` (image records; ``prepare-omni`` writes the
            ``omni_tuples224`` layout with the same image settings).
        crop: See CropConfig; ``method: none`` keeps the full image (made
            square), and ``output_size`` is the stored image side S (224).
        jpeg_quality: Quality (1-100) of the stored JPEGs.
        teacher: See TeacherConfig (``prepare-pixels`` only).
        omni: See OmniConfig (``prepare-omni`` only).
        text: See TextConfig.
        output: See OutputConfig (``images_per_batch`` is unused; the teacher
            batches with ``teacher.batch_size``).
    """

    layout: Literal["pixels224"] = "pixels224"
    crop: CropConfig = dataclasses.field(default_factory=_pixel_crop)
    jpeg_quality: int = 95
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    omni: OmniConfig = dataclasses.field(default_factory=OmniConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(
                f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}"
            )
        if self.crop.output_size < 32:
            raise ValueError(
                "crop.output_size (the image side, also the teacher's input) must "
                f"be >= 32, got {self.crop.output_size}"
            )
