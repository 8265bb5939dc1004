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
