"""Schema of the alignment (AAG) configs, ``configs/align/*.yaml``.

The Attention-based Alignment Generator of Kaleido-BERT §3.3: a Show-Attend-and-Tell
captioner trained on the training split, then its per-word attention turned into
token-patch pairs. This docstring set is the reference for the YAML keys; defaults are
kaleido_fashionbert.md §4.2 (K-Q10, K-Q11, K-Q12) and Show, Attend and Tell (Xu et
al. 2015) where the spec is silent.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from kaleido_tf import schema

EncoderName = Literal["resnet50", "mobilenet_v3_small"]

# The stride-16 layer of each encoder: a 14 x 14 grid at 224 px (SAT's 196
# locations). ResNet-50 "up to conv4" (§4.2) is conv4_block6_out (1024 channels).
DEFAULT_ENCODER_LAYERS = {
    "resnet50": "conv4_block6_out",
    "mobilenet_v3_small": "expanded_conv_7/Add",
}


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    """The word-level caption vocabulary.

    Attributes:
        min_word_count: A training-caption word enters the vocabulary when it occurs
            at least this often (§4.2: 5); rarer words become ``<unk>``.
        max_train_words: Training captions are cut to this many words (§4.2: 50).
    """

    min_word_count: int = 5
    max_train_words: int = 50

    def __post_init__(self) -> None:
        if self.min_word_count < 1:
            raise ValueError(
                f"vocab.min_word_count must be >= 1: {self.min_word_count}"
            )
        if self.max_train_words < 1:
            raise ValueError(
                f"vocab.max_train_words must be >= 1: {self.max_train_words}"
            )


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The frozen CNN grid encoder.

    Attributes:
        name: ``resnet50`` (K-Q10: ImageNet ResNet-50 truncated after conv4) or
            ``mobilenet_v3_small`` (the small demo and test backbone).
        layer: The Keras layer whose output is the grid; empty means the stride-16
            default of ``name`` (``conv4_block6_out`` for ResNet-50,
            ``expanded_conv_7/Add`` for MobileNetV3-Small).
        image_size: Side the crop is resized to (§4.2: 224, a 14 x 14 grid).
        grid_size: Side of the grid the layer's map is average-pooled to (an
            integer divisor of it); 0 keeps the layer's own size (ResNet-50 conv4
            at 224 px is already 14 x 14, K-Q10).
    """

    name: EncoderName = "resnet50"
    layer: str = ""
    image_size: int = 224
    grid_size: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"encoder.image_size must be >= 32: {self.image_size}")
        if self.grid_size < 0:
            raise ValueError(f"encoder.grid_size must be >= 0: {self.grid_size}")

    @property
    def resolved_layer(self) -> str:
        """``layer``, or the stride-16 default of ``name``."""
        return self.layer or DEFAULT_ENCODER_LAYERS[self.name]


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """The LSTM decoder with soft attention (SAT §3.1.2, §4.2).

    Attributes:
        embedding_dim: Word embedding size m (§4.2: 512).
        lstm_units: LSTM hidden size n (§4.2: 512).
        attention_dim: Hidden size of the attention MLP f_att (512, as the LSTM).
        dropout: Dropout rate on h_t and on the deep output layer (SAT §4.3
            uses dropout; 0.5 in its reference implementation).
    """

    embedding_dim: int = 512
    lstm_units: int = 512
    attention_dim: int = 512
    dropout: float = 0.5

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "lstm_units", "attention_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"decoder.{name} must be >= 1: {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"decoder.dropout must be in [0, 1): {self.dropout}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Captioner training (teacher forcing on the training split).

    Attributes:
        attention_regularization: λ of the doubly-stochastic attention regulariser
            λ·Σ_i(1 − Σ_t α_ti)² (SAT Eq. 14; §4.2: λ = 1).
        learning_rate: Adam learning rate (not in the paper; 4e-4 as in the common
            SAT reproductions).
        batch_size: Captions per step (SAT §4.3: 64).
        train_steps: Optimiser steps in total; a resumed run continues to this.
        checkpoint_every: Steps between checkpoints.
        max_checkpoints: Checkpoints kept in the model folder.
        clip_norm: Global gradient-norm clip (5, as the common SAT reproductions).
        cache_grid_features: Encode every training image once and keep the grids
            in memory (float16), instead of encoding each batch; only for sets
            whose grids fit in memory (demo, tests).
    """

    attention_regularization: float = 1.0
    learning_rate: float = 4e-4
    batch_size: int = 64
    train_steps: int = 30000
    checkpoint_every: int = 1000
    max_checkpoints: int = 3
    clip_norm: float = 5.0
    cache_grid_features: bool = False

    def __post_init__(self) -> None:
        if self.attention_regularization < 0:
            raise ValueError(
                "train.attention_regularization must be >= 0: "
                f"{self.attention_regularization}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"train.learning_rate must be > 0: {self.learning_rate}")
        for name in (
            "batch_size",
            "train_steps",
            "checkpoint_every",
            "max_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1: {getattr(self, name)}")
        if self.clip_norm <= 0:
            raise ValueError(f"train.clip_norm must be > 0: {self.clip_norm}")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """Caption generation at extraction time.

    Attributes:
        beam_size: Beam width (K-Q10: 3).
        max_words: Longest generated caption, in words (§4.2 step 2: 30).
        batch_size: Images captioned together.
    """

    beam_size: int = 3
    max_words: int = 30
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("beam_size", "max_words", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"decode.{name} must be >= 1: {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class PairsConfig:
    """Attention -> region -> token-patch pairs (K-Q11, K-Q12).

    Attributes:
        region_threshold: The attention map, bilinearly upsampled to the crop and
            divided by its maximum, is the word's region where it is >= this
            (K-Q12: 0.5).
        overlap_threshold: A patch p pairs with the word when |R ∩ p| / |p| >= this
            (K-Q12: 0.5).
        levels: Kaleido levels whose patches may pair (K-Q12, AGM §3.4: 3, 4, 5).
        max_pairs: Pairs kept per image, best score first (at most
            ``schema.MAX_ALIGNMENT_PAIRS`` = 64).
        skip_stop_words: Stop-words, punctuation and numbers never pair (K-Q11).
        foreground_only: Limit each region to the product's foreground mask (the
            KPG segmentation of the prepare config), so a word whose attention
            rests on the background gets no pairs. Not in the spec (false there).
    """

    region_threshold: float = 0.5
    overlap_threshold: float = 0.5
    levels: tuple[int, ...] = (3, 4, 5)
    max_pairs: int = schema.MAX_ALIGNMENT_PAIRS
    skip_stop_words: bool = True
    foreground_only: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.region_threshold <= 1.0:
            raise ValueError(
                f"pairs.region_threshold must be in (0, 1]: {self.region_threshold}"
            )
        if not 0.0 < self.overlap_threshold <= 1.0:
            raise ValueError(
                f"pairs.overlap_threshold must be in (0, 1]: {self.overlap_threshold}"
            )
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise ValueError(
                f"pairs.levels must be distinct and non-empty: {self.levels}"
            )
        if not 1 <= self.max_pairs <= schema.MAX_ALIGNMENT_PAIRS:
            raise ValueError(
                f"pairs.max_pairs must be in [1, {schema.MAX_ALIGNMENT_PAIRS}]: "
                f"{self.max_pairs}"
            )


@dataclasses.dataclass(frozen=True)
class AlignmentConfig:
    """Everything ``kaleido-tf align`` needs besides paths and weights.

    Attributes:
        vocab: See VocabConfig.
        encoder: See EncoderConfig.
        decoder: See DecoderConfig.
        train: See TrainConfig.
        decode: See DecodeConfig.
        pairs: See PairsConfig.
    """

    vocab: VocabConfig = dataclasses.field(default_factory=VocabConfig)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    pairs: PairsConfig = dataclasses.field(default_factory=PairsConfig)
