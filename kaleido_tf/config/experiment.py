"""Schema of the training configs, ``configs/<system>/*.yaml``.

This docstring set is the reference for the YAML keys; defaults are BERT-base and
Kaleido-BERT's paper values (kaleido_fashionbert.md §4.6, §6, §9).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from kaleido_tf.training.modality_randomization import ModalityRandomizationConfig


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The single-stream transformer (names as tf-models' BertEncoderV2).

    Attributes:
        vocab_size: V (30522: bert-base-uncased).
        hidden_size: H.
        num_layers: Transformer blocks.
        num_attention_heads: N; must divide H.
        inner_dim: Feed-forward width.
        max_sequence_length: Rows of the text position table (BERT: 512).
        type_vocab_size: Rows of the text token-type table (BERT: 2).
        initializer_range: Stddev of truncated-normal initialisers.
        output_dropout: Dropout on embeddings and block outputs.
        attention_dropout: Dropout on attention probabilities.
        per_level_projection: One patch projection + LayerNorm per kaleido level
            (released code) instead of one shared (paper), K-Q7.
        per_level_segments: Segment ids per level (released code) instead of the
            paper's single image segment, K-Q6.
        feature_dropout: Dropout on raw patch features (released code).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_attention_heads: int = 12
    inner_dim: int = 3072
    max_sequence_length: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    output_dropout: float = 0.1
    attention_dropout: float = 0.1
    per_level_projection: bool = False
    per_level_segments: bool = False
    feature_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Encoder plus what the heads need to know about the data.

    Attributes:
        encoder: See EncoderConfig.
        layout: Patch layout of the data (``kaleido`` 55 patches, ``grid8`` 64,
            ``regions100`` / ``regions36``: detector regions, ImageBERT).
        patch_feature_dim: D; must equal the prepared data's ``feature_dim``.
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    layout: Literal["kaleido", "grid8", "regions100", "regions36"] = "kaleido"
    patch_feature_dim: int = 2048


@dataclasses.dataclass(frozen=True)
class TasksConfig:
    """Pretraining objectives and masking (Kaleido-BERT §3.4-3.5, Table 4 ablations).

    Attributes:
        mlm: Aligned masked language modelling (Task #1).
        itm: Image-text matching (Task #2).
        rr: Rotation recognition, level 1 (AKPM I).
        jps: Jigsaw puzzle solving, level 2 (AKPM II).
        cp: Camouflage prediction, level 3 (AKPM III).
        g2cm: Grey-to-colour modelling, level 4 (AKPM IV).
        b2cm: Blank-to-colour modelling, level 5 (AKPM V).
        masking: ``agm`` (alignment-guided, §3.4) or ``random`` (the ablation).
        token_mask_rate: Fraction of words masked (whole-word), K-Q9.
        max_masked_tokens: M, WordPiece slots per example, K-Q9.
        losses_on_negatives: Compute MLM and AKPM losses on mismatched pairs too
            (released code, K-Q26); False restricts them to matched pairs.
    """

    mlm: bool = True
    itm: bool = True
    rr: bool = True
    jps: bool = True
    cp: bool = True
    g2cm: bool = True
    b2cm: bool = True
    masking: Literal["agm", "random"] = "agm"
    token_mask_rate: float = 0.15
    max_masked_tokens: int = 10
    losses_on_negatives: bool = True

    def active(self) -> tuple[str, ...]:
        """Ids of the enabled objectives, in the paper's order."""
        ids = ("mlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm")
        return tuple(i for i in ids if getattr(self, i))

    def __post_init__(self) -> None:
        if not self.active():
            raise ValueError("at least one task must be enabled")
        if not 0.0 < self.token_mask_rate < 1.0:
            raise ValueError(
                f"token_mask_rate must be in (0, 1): {self.token_mask_rate}"
            )


@dataclasses.dataclass(frozen=True)
class FashionBertConfig:
    """FashionBERT's objectives, masking and loss weighting (SIGIR 2020 §2.3-2.4).

    Attributes:
        mlm: Whole-word masked language modelling (Eq. 1).
        itm: Text and image alignment, TIA = ITM (Eq. 3).
        mpm: Masked patch modelling, KL over softmaxed features (Eq. 2, F-Q7).
        token_mask_rate: Fraction of words masked, whole words (15%, F-Q6).
        max_masked_tokens: M, WordPiece slots per example (F-Q6: 20; released
            schema: 10).
        num_masked_patches: K, patches zeroed and predicted per example (10% of
            64 = 6, F-Q5; released tutorial: 5).
        adaptive_loss: ``softmax_losses``: Eq. 6 with ``||grad l_i||^2`` :=
            softmax(losses)_i^2, the released code (F-Q8, default);
            ``gradient_norm``: the paper-literal form, ``||grad l_i||`` the
            gradient norm of l_i w.r.t. the encoder, softmaxed across tasks;
            ``none``: w_i = 1/L (the ablation of Fig. 3).
        adaptive_alpha: alpha of the released code, K = alpha * L in Eq. 6 (1.0).
        adaptive_weight_grad: Let gradients flow through the weights, as the
            released code does; False (default) stops them (Algorithm 1, F-Q8).
        losses_on_negatives: MLM and MPM also on mismatched pairs (released code,
            F-Q10); False restricts them to matched pairs.
        vsl_inference: Variable sequence length at inference (§3.4, Table 4):
            text padding is dropped before the patches; outputs are unchanged.
    """

    mlm: bool = True
    itm: bool = True
    mpm: bool = True
    token_mask_rate: float = 0.15
    max_masked_tokens: int = 20
    num_masked_patches: int = 6
    adaptive_loss: Literal["softmax_losses", "gradient_norm", "none"] = "softmax_losses"
    adaptive_alpha: float = 1.0
    adaptive_weight_grad: bool = False
    losses_on_negatives: bool = True
    vsl_inference: bool = False

    def active(self) -> tuple[str, ...]:
        """Ids of the enabled objectives, in the paper's order."""
        return tuple(i for i in ("mlm", "itm", "mpm") if getattr(self, i))

    def __post_init__(self) -> None:
        if not self.active():
            raise ValueError("at least one of mlm, itm, mpm must be enabled")
        if not 0.0 < self.token_mask_rate < 1.0:
            raise ValueError(
                f"token_mask_rate must be in (0, 1): {self.token_mask_rate}"
            )
        if self.max_masked_tokens < 1 or self.num_masked_patches < 1:
            raise ValueError("max_masked_tokens and num_masked_patches must be >= 1")
        if self.adaptive_alpha <= 0:
            raise ValueError(f"adaptive_alpha must be > 0: {self.adaptive_alpha}")


@dataclasses.dataclass(frozen=True)
class ImageBertConfig:
    """ImageBERT's objectives, masking and region embedding (arXiv 2001.07966 §3).

    Defaults follow imagebert_interbert_commercemm.md §2.2-§2.4 ([P] the paper,
    [D] the spec's choice where the paper is silent).

    Attributes:
        mlm: Masked language modelling (Task 1).
        moc: Masked object classification (Task 2).
        mrfr: Masked region feature regression (Task 3).
        itm: Image-text matching (Task 4).
        token_mask_rate: Probability that a text token is chosen (15% [P]).
        max_masked_tokens: M, masked-LM slots per example (static shapes; a text
            with more chosen tokens keeps M of them at random).
        region_mask_rate: Probability that a real region is chosen (15% [P]).
        region_zero_prob: A chosen region's feature is zeroed with this
            probability, else kept (90% [P]); its location is always kept [D].
        max_masked_regions: K, masked-region slots per example (static shapes).
        num_classes: C, the detector's object classes (Visual Genome: 1600 [P]);
            must equal the data's ``num_classes``.
        moc_target: ``label``: CE on the detector's hard label ([P]);
            ``distribution``: KL to ``region_class_probs`` (UNITER's variant).
        image_swap_fraction: Share of the ITM negatives that replace the image
            (the rest replace the caption); 0.5 [D].
        losses_on_negatives: MLM, MOC and MRFR also on mismatched pairs; False
            ([P] "only ... when the input image and text is related").
        mrfr_reduction: ``mean``: MRFR's squared error averaged over the D
            feature dimensions (UNITER's MRFR; [D]); ``sum``: the paper's
            squared L2 norm, which with raw 2048-d features outweighs the other
            losses by orders of magnitude (measured on the demo: MRFR ~7000 vs
            ITM 0.69 after 600 steps, ITM stuck at chance under the global
            gradient clip).
        dummy_sequence_position: One learned sequence-position vector added to
            every visual token ([P] "a fixed dummy position").
        projection_bias: Biases on the region-feature and location projections.
    """

    mlm: bool = True
    moc: bool = True
    mrfr: bool = True
    itm: bool = True
    token_mask_rate: float = 0.15
    max_masked_tokens: int = 16
    region_mask_rate: float = 0.15
    region_zero_prob: float = 0.9
    max_masked_regions: int = 32
    num_classes: int = 1600
    moc_target: Literal["label", "distribution"] = "label"
    image_swap_fraction: float = 0.5
    losses_on_negatives: bool = False
    mrfr_reduction: Literal["mean", "sum"] = "mean"
    dummy_sequence_position: bool = True
    projection_bias: bool = True

    def active(self) -> tuple[str, ...]:
        """Ids of the enabled objectives, in the paper's order."""
        ids = ("mlm", "moc", "mrfr", "itm")
        return tuple(i for i in ids if getattr(self, i))

    def __post_init__(self) -> None:
        if not self.active():
            raise ValueError("at least one of mlm, moc, mrfr, itm must be enabled")
        for name in ("token_mask_rate", "region_mask_rate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1): {getattr(self, name)}")
        for name in ("region_zero_prob", "image_swap_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]: {getattr(self, name)}")
        if self.max_masked_tokens < 1 or self.max_masked_regions < 1:
            raise ValueError("max_masked_tokens and max_masked_regions must be >= 1")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1: {self.num_classes}")


@dataclasses.dataclass(frozen=True)
class InterBertConfig:
    """InterBERT's objectives, masking, negatives and extraction module (§3).

    The interaction module is ``model.encoder`` (``num_layers`` single-stream BERT
    blocks, H, heads, FFN); the fields here add the two extraction streams and the
    pre-training tasks. Defaults follow imagebert_interbert_commercemm.md §3.3-§3.4
    and §3.11 ([P] the paper, [D] the spec's choice, [code] the released code).

    Attributes:
        msm: Masked Segment Modeling (text half of MGM).
        mrm: Masked Region Modeling (image half of MGM).
        itm: Image-text matching with hard negatives.
        num_image_extractor_layers: Image extractor blocks (6 [P]).
        num_text_extractor_layers: Text extractor blocks (6 [P]).
        image_num_attention_heads: Image extractor heads; 0 = the interaction's
            (paper [D]); the released code uses 8.
        image_output_dropout: Image extractor dropout; negative = the encoder's
            ``output_dropout`` ([D]); the released code uses 0.2.
        extractor_init: ``normal`` (N(0, ``extractor_stddev``), [P]) or
            ``copy_interaction`` (text extractor from BERT's top layers, [code]).
        extractor_stddev: Stddev of the extractors' initialiser (0.02 [P]).
        pooled_size: Width of the ITM head's per-modality poolers (1024 [code]).
        itm_dropout: Dropout on the pooled product (0.1 [code]).
        anchor_rate: MSM anchor probability per token (10% [P]).
        max_span_length: Longest MSM span (anchor + 0-2 tokens: 3 [P]).
        max_masked_tokens: M, MSM slots per example (static shapes).
        region_anchor_rate: MRM anchor probability per region (10% [P]).
        iou_threshold: MRM masks regions with IoU > this to an anchor (0.4 [P]).
        max_masked_regions: K, MRM slots per example; 0 = every region slot.
        num_classes: C, detector classes (Visual Genome 1600 [D]); must equal the
            data's ``num_classes``.
        mrm_target: ``label`` (CE to the detector's class, [P]/[D]) or
            ``distribution`` (KL to ``region_class_probs``, [code]).
        hard_negative_fraction: Share of ITM negatives drawn from the mined TF-IDF
            pool (20% [P]); > 0 needs ``hard_negatives.npz`` in the data folder
            (``kaleido-tf mine-negatives``), 0 = random negatives only (Table 5
            "w/o ITM-hn").
        losses_on_negatives: MSM and MRM also on mismatched pairs; False [D].
    """

    msm: bool = True
    mrm: bool = True
    itm: bool = True
    num_image_extractor_layers: int = 6
    num_text_extractor_layers: int = 6
    image_num_attention_heads: int = 0
    image_output_dropout: float = -1.0
    extractor_init: Literal["normal", "copy_interaction"] = "normal"
    extractor_stddev: float = 0.02
    pooled_size: int = 1024
    itm_dropout: float = 0.1
    anchor_rate: float = 0.1
    max_span_length: int = 3
    max_masked_tokens: int = 12
    region_anchor_rate: float = 0.1
    iou_threshold: float = 0.4
    max_masked_regions: int = 0
    num_classes: int = 1600
    mrm_target: Literal["label", "distribution"] = "label"
    hard_negative_fraction: float = 0.2
    losses_on_negatives: bool = False

    def active(self) -> tuple[str, ...]:
        """Ids of the enabled objectives, in the paper's order."""
        return tuple(i for i in ("msm", "mrm", "itm") if getattr(self, i))

    def __post_init__(self) -> None:
        if not self.active():
            raise ValueError("at least one of msm, mrm, itm must be enabled")
        for name in ("anchor_rate", "region_anchor_rate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1): {getattr(self, name)}")
        if not 0.0 <= self.iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1): {self.iou_threshold}")
        if not 0.0 <= self.hard_negative_fraction <= 1.0:
            raise ValueError(
                f"hard_negative_fraction must be in [0, 1]: "
                f"{self.hard_negative_fraction}"
            )
        for name in ("num_image_extractor_layers", "num_text_extractor_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0: {getattr(self, name)}")
        if self.image_num_attention_heads < 0:
            raise ValueError("image_num_attention_heads must be >= 0 (0 = encoder's)")
        if self.max_span_length < 1 or self.max_masked_tokens < 1:
            raise ValueError("max_span_length and max_masked_tokens must be >= 1")
        if self.max_masked_regions < 0:
            raise ValueError("max_masked_regions must be >= 0 (0 = every region)")
        if self.num_classes < 1 or self.pooled_size < 1:
            raise ValueError("num_classes and pooled_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class CommerceMMConfig:
    """CommerceMM's image encoder, K/M split, heads, objectives and step mix (§4).

    The text/fusion transformer is ``model.encoder`` (L = ``num_layers`` XLM-R
    layers, H, heads, FFN); the fields here add the image encoder, the split K,
    the heads and the two step types. Defaults follow imagebert_interbert_
    commercemm.md §4 ([P] the paper, [D] the spec's choice).

    Attributes:
        image_backbone: ``resnet`` (ResNet-50 grid, 49 + [CLS]) or ``vit``
            (ViT-B/16 patches, 196 + [CLS]) [P].
        image_size: S, input pixels S x S (224 [P]).
        resnet_model_id: ResNet depth (50 [P]).
        resnet_depth_multiplier: ResNet width multiplier (1.0 [P]).
        vit_hidden_size, vit_num_layers, vit_num_heads, vit_mlp_dim,
            vit_patch_size: ViT-B/16: 768, 12, 12, 3072, 16 [P].
        vit_dropout: Dropout inside the ViT (0 [D]).
        image_encoder_weights: Backbone weights (a TensorFlow checkpoint of the
            backbone, ``networks/image_encoder.load_image_encoder_weights``),
            relative to ``--data-dir``; empty = random initialisation.
        num_text_layers: K, the text encoder's layers; M = L - K fuse ((3, 3)
            for the 6-layer models, (6, 6) for the 12-layer one [P]).
        projection_dim: E of the ``f``, ``g``, ``h`` heads (256 [D] §4.11 #7).
        initial_temperature: τ at initialization (0.07 [D]).
        min_temperature, max_temperature: τ clamp ([0.001, 0.5] [D]).
        mlm, mim_kl, mim_fr, itc, itm: The 5 image-text tasks (Table 1 rows).
        omni_step_probability: p, the chance that a step is an Omni-Retrieval
            step (the 9 tasks); 0 = no Omni step, 1 = Omni only (0.5 [D]
            §4.11 #2).
        step_schedule: ``random`` (each step drawn with p [D]) or ``alternate``
            (round-robin; needs p = 0.5 or p in {0, 1}).
        mlm_weight: Weight of MLM in the image-text step (0.5 [P]); the other
            image-text tasks and the 9 Omni tasks weigh 1.0 [P].
        mlm_mask_policy: ``all_mask`` (every chosen token becomes [MASK], as
            written [P]) or ``bert_80_10_10`` (§4.11 #4 option).
        token_mask_rate: Fraction of text tokens masked for MLM (15% [P]).
        max_masked_tokens: M, MLM slots per example (static shapes).
        mim_grey_ratio: Fraction of patches greyed for MIM (50% [P]).
        teacher_feature_dim: D_t, the teacher's pooled feature width (MIM-fr
            target ``r(v)``; 2048 for a ResNet-50 pool5 [D]); must equal the
            data's ``teacher_features`` width.
        num_clusters: K_c, the teacher's clusters (MIM-kl target ``c(v)``;
            10,000 [D]); must equal the data's ``teacher_clusters`` width.
        itm_dropout: Dropout before the ITM classifier ([D]).
        modality_randomization: Re-sample K every step (the 2nd stage, §4.7);
            see ``training/modality_randomization.ModalityRandomizationConfig``.
    """

    image_backbone: Literal["resnet", "vit"] = "resnet"
    image_size: int = 224
    resnet_model_id: int = 50
    resnet_depth_multiplier: float = 1.0
    vit_hidden_size: int = 768
    vit_num_layers: int = 12
    vit_num_heads: int = 12
    vit_mlp_dim: int = 3072
    vit_patch_size: int = 16
    vit_dropout: float = 0.0
    image_encoder_weights: str = ""
    num_text_layers: int = 3
    projection_dim: int = 256
    initial_temperature: float = 0.07
    min_temperature: float = 0.001
    max_temperature: float = 0.5
    mlm: bool = True
    mim_kl: bool = True
    mim_fr: bool = True
    itc: bool = True
    itm: bool = True
    omni_step_probability: float = 0.5
    step_schedule: Literal["random", "alternate"] = "random"
    mlm_weight: float = 0.5
    mlm_mask_policy: Literal["all_mask", "bert_80_10_10"] = "all_mask"
    token_mask_rate: float = 0.15
    max_masked_tokens: int = 20
    mim_grey_ratio: float = 0.5
    teacher_feature_dim: int = 2048
    num_clusters: int = 10000
    itm_dropout: float = 0.0
    modality_randomization: ModalityRandomizationConfig = dataclasses.field(
        default_factory=ModalityRandomizationConfig
    )

    def active(self) -> tuple[str, ...]:
        """Ids of the enabled image-text tasks, in the paper's order."""
        ids = ("mlm", "mim_kl", "mim_fr", "itc", "itm")
        return tuple(i for i in ids if getattr(self, i))

    @property
    def omni(self) -> bool:
        """Omni-Retrieval steps run (p > 0)."""
        return self.omni_step_probability > 0.0

    @property
    def mim_patch_size(self) -> int:
        """Side of a greyed MIM patch in pixels: 32 (ResNet grid) or the ViT's."""
        return 32 if self.image_backbone == "resnet" else self.vit_patch_size

    def __post_init__(self) -> None:
        p = self.omni_step_probability
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"omni_step_probability must be in [0, 1]: {p}")
        if not self.active() and p < 1.0:
            raise ValueError(
                "no image-text task is enabled: set omni_step_probability: 1.0 "
                "(Omni only, Table 1 L8) or enable a task"
            )
        if self.active() and p == 1.0:
            raise ValueError(
                "omni_step_probability 1.0 never runs the enabled image-text tasks "
                f"{list(self.active())}: disable them or lower it"
            )
        if self.step_schedule == "alternate" and p not in (0.0, 0.5, 1.0):
            raise ValueError(
                f"step_schedule alternate takes turns: omni_step_probability must "
                f"be 0.5 (or 0 / 1), found {p}"
            )
        if self.image_size % self.mim_patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of the "
                f"{self.image_backbone} patch size {self.mim_patch_size}"
            )
        if not 0.0 < self.min_temperature <= self.initial_temperature:
            raise ValueError("need 0 < min_temperature <= initial_temperature")
        if not self.initial_temperature <= self.max_temperature:
            raise ValueError("need initial_temperature <= max_temperature")
        for name in ("token_mask_rate", "mim_grey_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1): {getattr(self, name)}")
        if self.mlm_weight < 0.0:
            raise ValueError(f"mlm_weight must be >= 0: {self.mlm_weight}")
        for name in (
            "projection_dim",
            "max_masked_tokens",
            "teacher_feature_dim",
            "num_clusters",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1: {getattr(self, name)}")
        if self.num_text_layers < 0:
            raise ValueError(f"num_text_layers must be >= 0: {self.num_text_layers}")
        if self.omni and self.num_text_layers == 0:
            raise ValueError(
                "Omni-Retrieval needs a text encoder (spec §4.2: not applicable at "
                "K = 0): set omni_step_probability: 0.0 or num_text_layers >= 1"
            )
        mr = self.modality_randomization
        if self.omni and mr.enabled and mr.min_text_layers == 0:
            raise ValueError(
                "modality randomization may draw K = 0, where Omni-Retrieval has no "
                "text encoder: set omni_step_probability: 0.0 (the 2nd stage runs "
                "the 5 image-text tasks, §4.7) or min_text_layers >= 1"
            )


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warm-up and linear decay (official.modeling.optimization).

    Attributes:
        learning_rate: Peak learning rate.
        weight_decay_rate: Decoupled weight decay; LayerNorm and bias excluded.
        beta_1, beta_2, epsilon: Adam moments.
        warmup_steps: Linear warm-up steps (paper: 5000). At most one of
            warmup_steps and warmup_fraction is non-zero.
        warmup_fraction: Warm-up as a fraction of all steps (released code: 0.1).
        end_learning_rate: Learning rate after the linear decay.
        clip_norm: Global-norm gradient clipping, applied after the all-reduce.
    """

    learning_rate: float = 2e-5
    weight_decay_rate: float = 1e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    warmup_steps: int = 5000
    warmup_fraction: float = 0.0
    end_learning_rate: float = 0.0
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.warmup_steps and self.warmup_fraction:
            raise ValueError("set only one of warmup_steps and warmup_fraction")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One stage of multi-stage pretraining (ImageBERT §4.2, Figure 5).

    A stage trains the same network on its own data, starting from the previous
    stage's final weights with a fresh optimizer and learning-rate schedule
    (``training/multi_stage.py``).

    Attributes:
        name: Names the stage's folder ``stage_<i>_<name>``; letters, digits,
            ``_``, ``-`` and ``.``; unique among the stages.
        data: The stage's prepared folder: a key given on the command line as
            ``--stage-data KEY=DIR``, else a path relative to ``--data``; empty
            means ``--data`` itself.
        epochs: Passes over the stage's data. Exactly one of epochs and
            max_steps is set.
        max_steps: Steps of the stage.
        learning_rate: Overrides ``train.optimizer.learning_rate`` in this stage.
        warmup_steps: Overrides the warm-up of ``train.optimizer`` (in steps).
        warmup_fraction: Overrides the warm-up (a fraction of the stage's steps);
            at most one of warmup_steps and warmup_fraction is set.
    """

    name: str = ""
    data: str = ""
    epochs: int | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    warmup_fraction: float | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(
                f"stage name {self.name!r} must be non-empty letters, digits, "
                "'_', '-' or '.' (it names the stage's folder)"
            )
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError(
                f"stage {self.name!r}: set exactly one of epochs and max_steps"
            )
        if (self.epochs or self.max_steps or 0) < 1:
            raise ValueError(f"stage {self.name!r}: epochs or max_steps must be >= 1")
        if self.warmup_steps is not None and self.warmup_fraction is not None:
            raise ValueError(
                f"stage {self.name!r}: set only one of warmup_steps and warmup_fraction"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run.

    Attributes:
        global_batch_size: Examples per step over all replicas (pairs incl. the
            1:1 negatives).
        epochs: Passes over the image records (each gives a positive and a
            negative pair per epoch).
        max_steps: If set, stop after this many steps instead.
        checkpoint_every_steps: Checkpoint interval.
        keep_checkpoints: Checkpoints kept.
        log_every_steps: TensorBoard and progress-bar interval.
        seed: Seed of the input pipeline and the initialisation.
        mixed_precision: Compute in float16 with float32 variables and dynamic
            loss scaling (Keras ``mixed_float16``); for GPUs with tensor cores.
        jit_compile: Compile each replica's training step (forward, losses,
            backward, update) with XLA (``tf.function(jit_compile=True)``, as
            Keras' ``compile(jit_compile=True)`` does); fuses kernels on GPUs.
            Source: project (DESIGN.md §5, STACK.md); off by default because
            compilation costs start-up time and not every op has an XLA kernel.
        min_free_disk_mb: Refuse to start when the file system of the model
            directory has less free space (MiB); a BERT-base checkpoint with
            its AdamW slots takes about 1.3 GB. Source: project.
        optimizer: See OptimizerConfig.
        stages: Multi-stage pretraining (ImageBERT §4.2): the stages run in
            order, each from the previous one's weights with a fresh optimizer
            and schedule; ``epochs`` and ``max_steps`` above are then unused.
            Empty: one ordinary run. See StageConfig.
    """

    global_batch_size: int = 256
    epochs: int = 25
    max_steps: int | None = None
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    log_every_steps: int = 100
    seed: int = 0
    mixed_precision: bool = False
    jit_compile: bool = False
    min_free_disk_mb: int = 2048
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    stages: tuple[StageConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [stage.name for stage in self.stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"stages: names must be unique, found {repeated} twice")


@dataclasses.dataclass(frozen=True)
class CaptioningConfig:
    """Fashion captioning by seq2seq fine-tuning (kaleido_fashionbert.md K-Q19).

    Attributes:
        mask_rate: Fraction of caption tokens (and the final [SEP]) masked for
            training, 80/10/10 as in MLM.
        max_masked_tokens: Masked slots per example.
        beam_size: Beam width of decoding.
        max_caption_tokens: Longest generated caption in WordPieces (without
            [CLS]/[SEP]).
        length_penalty: Alpha of the GNMT length normalisation of beam scores
            (0 = none).
    """

    mask_rate: float = 0.15
    max_masked_tokens: int = 10
    beam_size: int = 5
    max_caption_tokens: int = 62
    length_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1): {self.mask_rate}")
        if self.beam_size < 1 or self.max_caption_tokens < 1:
            raise ValueError("beam_size and max_caption_tokens must be >= 1")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """A downstream task trained from a pretrained model (Kaleido-BERT §4.2).

    Attributes:
        task: ``retrieval`` (ITM on matched / same-sub-category pairs, K-Q21),
            ``category`` or ``subcategory`` (a classifier on the pooled [CLS],
            K-Q23), ``captioning`` (K-Q19).
        num_classes: Classes of the classifier; 0 = the data's
            ``categories.json`` count (Fashion-Gen: 48 and 122).
        classifier_dropout: Dropout on the pooled output (released code: keep 0.9).
        classifier_initializer_range: Stddev of the classifier (released: 0.01).
        captioning: See CaptioningConfig.
        retrieval_loss: Retrieval only (ImageBERT §4.3, Table 4 part 4):
            ``binary`` (ITM cross-entropy on a matched and a same-sub-category
            mismatched pair per image: the default and the paper's best),
            ``ce`` (softmax over the P pairs of a group), ``triplet`` (hinge
            against the group's hardest negative) or ``sum`` (binary + ce +
            triplet on the groups, unweighted). See losses/retrieval_ranking.py.
        group_size: P, pairs per group for ce / triplet / sum: 1 positive and
            P - 1 in-batch negatives (other captions or other images, 50/50 per
            group); ``train.global_batch_size`` counts pairs and must be a
            multiple of P (spec §2.11 rows 15, 17).
        triplet_margin: The triplet hinge margin alpha (spec §2.11 row 16).
    """

    task: Literal["retrieval", "category", "subcategory", "captioning"] = "retrieval"
    num_classes: int = 0
    classifier_dropout: float = 0.1
    classifier_initializer_range: float = 0.01
    captioning: CaptioningConfig = dataclasses.field(default_factory=CaptioningConfig)
    retrieval_loss: Literal["binary", "ce", "triplet", "sum"] = "binary"
    group_size: int = 4
    triplet_margin: float = 0.2

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"finetune.group_size must be >= 2 (1 positive + negatives), got "
                f"{self.group_size}"
            )
        if self.retrieval_loss != "binary" and self.task != "retrieval":
            raise ValueError(
                f"finetune.retrieval_loss {self.retrieval_loss!r} applies to task "
                f"retrieval only, not {self.task!r}"
            )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One paper experiment.

    Attributes:
        system: Which system of ``kaleido_tf.systems.SYSTEMS`` runs it.
        model: See ModelConfig.
        tasks: See TasksConfig (Kaleido-BERT's objectives).
        fashion_bert: See FashionBertConfig; only with ``system: fashion_bert``
            (None there means its defaults).
        image_bert: See ImageBertConfig; only with ``system: image_bert`` (None
            there means its defaults).
        inter_bert: See InterBertConfig; only with ``system: inter_bert`` (None
            there means its defaults).
        commerce_mm: See CommerceMMConfig; only with ``system: commerce_mm``
            (None there means its defaults).
        train: See TrainConfig.
        finetune: A downstream task (``kaleido-tf finetune``), or None for
            pretraining; with it, ``tasks`` is not used.
    """

    system: Literal[
        "kaleido_bert", "fashion_bert", "image_bert", "inter_bert", "commerce_mm"
    ] = "kaleido_bert"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    tasks: TasksConfig = dataclasses.field(default_factory=TasksConfig)
    fashion_bert: FashionBertConfig | None = None
    image_bert: ImageBertConfig | None = None
    inter_bert: InterBertConfig | None = None
    commerce_mm: CommerceMMConfig | None = None
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    finetune: FinetuneConfig | None = None

    def __post_init__(self) -> None:
        if self.fashion_bert is not None and self.system != "fashion_bert":
            raise ValueError(
                f"a fashion_bert section needs system: fashion_bert, not {self.system}"
            )
        if self.system == "fashion_bert" and self.model.layout != "grid8":
            raise ValueError(
                "system fashion_bert reads the 8x8 grid: set model.layout: grid8 "
                f"(found {self.model.layout!r})"
            )
        if self.image_bert is not None and self.system != "image_bert":
            raise ValueError(
                f"an image_bert section needs system: image_bert, not {self.system}"
            )
        if self.system == "image_bert" and not self.model.layout.startswith("regions"):
            raise ValueError(
                "system image_bert reads detector regions: set model.layout: "
                f"regions100 (or regions36), found {self.model.layout!r}"
            )
        if self.inter_bert is not None and self.system != "inter_bert":
            raise ValueError(
                f"an inter_bert section needs system: inter_bert, not {self.system}"
            )
        if self.system == "inter_bert" and not self.model.layout.startswith("regions"):
            raise ValueError(
                "system inter_bert reads detector regions: set model.layout: "
                f"regions36 (or regions100), found {self.model.layout!r}"
            )
        if self.commerce_mm is not None and self.system != "commerce_mm":
            raise ValueError(
                f"a commerce_mm section needs system: commerce_mm, not {self.system}"
            )
        if self.system == "commerce_mm":
            self._check_commerce_mm()

    def _check_commerce_mm(self) -> None:
        cmm = self.commerce_mm or CommerceMMConfig()
        layers = self.model.encoder.num_layers
        if cmm.num_text_layers > layers:
            raise ValueError(
                f"commerce_mm.num_text_layers {cmm.num_text_layers} exceeds "
                f"model.encoder.num_layers {layers} (K + M = L)"
            )
        if cmm.modality_randomization.enabled:
            from kaleido_tf.errors import ConfigError

            try:
                cmm.modality_randomization.text_layer_range(layers)
            except ConfigError as e:
                raise ValueError(f"commerce_mm.modality_randomization: {e}") from None
