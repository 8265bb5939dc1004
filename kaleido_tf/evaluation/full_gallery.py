"""Full-gallery retrieval (Flickr30k / MSCOCO): every caption against every image.

A cross-encoder scores each (caption, image) pair with one pass through its
transformer, so a Flickr30k test set is 5,000 x 1,000 = 5M passes (COCO 5K: 125M).
The text and visual embeddings do not depend on the pair: each caption's
``embed_text`` and each image's ``embed_visual`` are computed once and cached,
and only ``transform`` + the ITM head run per pair, ``batch_size`` pairs at a
time, gathered from the caches (no pair's embeddings are stored beyond its batch;
the score matrix, N_captions x N_images float32, is).

The score of a pair is the ITM match margin ``logit[1] - logit[0]`` (class 1 =
match, ``constants.ITM_MATCH``): P(match) = softmax(itm_logits)[1] =
sigmoid(margin) ranks identically, and the margin does not saturate to tied 1.0s
(``ranking_metrics.match_margin``).

Metrics (protocol P-FULL): text->image R@K = fraction of captions whose image is
in the top K images; image->text R@K = fraction of images with at least one of
their captions in the top K captions; K = 1, 5, 10; ties count against the model
(a wrong candidate with an equal score ranks first). ``score_gallery`` and
``gallery_metrics`` take any ``score_pairs(caption_index, image_index)``
callable, so dual encoders reuse them.

Reference: imagebert_interbert_commercemm.md §2.8 (evaluation protocol, cost),
§2.11 row 19 (COCO 1K = mean of 5 folds), §5.2 (P-FULL).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.evaluation.ranking_metrics import RANKS, rank_at_k

DIRECTION_NAMES = ("text_to_image", "image_to_text")

# score_pairs(caption_index int64 [n], image_index int64 [n]) -> float [n]
ScorePairs = Callable[[np.ndarray, np.ndarray], np.ndarray]


def gallery_ranks(
    scores: np.ndarray, caption_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of the ground truth in both directions.

    Args:
        scores: float [N_c, N_i]; higher = better match.
        caption_image: int [N_c]; the image (column) of each caption.

    Returns:
        text_to_image: int64 [N_c], the rank of each caption's image among all
            images (1 + images scoring at least as high, other than its own).
        image_to_text: int64 [N_i], the best rank of any of the image's captions
            among all captions (1 + other images' captions scoring at least as
            high as its best caption).

    Raises:
        ValueError: Bad shapes, an index out of range, an image without captions,
            or a NaN score.
    """
    scores = np.asarray(scores, np.float64)
    caption_image = np.asarray(caption_image, np.int64)
    if scores.ndim != 2 or caption_image.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be [N_c, N_i] and caption_image [N_c], got {scores.shape} "
            f"and {caption_image.shape}"
        )
    n_c, n_i = scores.shape
    if n_c == 0 or caption_image.min() < 0 or caption_image.max() >= n_i:
        raise ValueError(f"caption_image must be in [0, {n_i}), got {caption_image}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    own = np.zeros([n_c, n_i], bool)
    own[np.arange(n_c), caption_image] = True
    counts = own.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"images {np.flatnonzero(counts == 0)[:5]} have no caption")
    truth = scores[np.arange(n_c), caption_image][:, None]
    t2i = np.sum(scores >= truth, axis=1).astype(np.int64)
    best = np.where(own, scores, -np.inf).max(axis=0)  # [N_i]
    i2t = 1 + np.sum((scores >= best[None, :]) & ~own, axis=0).astype(np.int64)
    return t2i, i2t


def gallery_metrics(
    scores: np.ndarray, caption_image: np.ndarray, ks: Sequence[int] = RANKS
) -> dict[str, Any]:
    """R@K both ways of one gallery.

    Args:
        scores: float [N_c, N_i]; higher = better match.
        caption_image: int [N_c]; the image of each caption.
        ks: The K values.

    Returns:
        ``text_to_image`` and ``image_to_text``: ``{"rank@K": fraction}`` (and
        ``mean_rank``); ``rsum``: the sum of all R@K x 100; ``captions`` and
        ``images``.
    """
    t2i, i2t = gallery_ranks(scores, caption_image)
    out: dict[str, Any] = {}
    for name, ranks in zip(DIRECTION_NAMES, (t2i, i2t)):
        out[name] = {**rank_at_k(ranks, ks), "mean_rank": float(np.mean(ranks))}
    out["rsum"] = 100.0 * sum(out[d][f"rank@{k}"] for d in DIRECTION_NAMES for k in ks)
    out["captions"], out["images"] = [int(n) for n in np.shape(scores)]
    return out


def mean_metrics(per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean of ``gallery_metrics`` over folds (COCO-1K), key by key."""
    out: dict[str, Any] = {}
    for d in DIRECTION_NAMES:
        out[d] = {
            k: float(np.mean([m[d][k] for m in per_fold])) for k in per_fold[0][d]
        }
    out["rsum"] = float(np.mean([m["rsum"] for m in per_fold]))
    out["folds"] = len(per_fold)
    return out


def score_gallery(
    score_pairs: ScorePairs,
    captions: np.ndarray,
    images: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "gallery",
) -> np.ndarray:
    """Scores every (caption, image) pair of a gallery, ``batch_size`` at a time.

    Args:
        score_pairs: ``(caption_index, image_index) -> scores``, int64 [n] each,
            float [n] back; indices are the global ones given here.
        captions: int [N_c]; the captions of the gallery (rows, in order).
        images: int [N_i]; its images (columns, in order).
        batch_size: Pairs per call.
        progress: A tqdm bar on stderr.
        desc: The bar's label.

    Returns:
        float32 [N_c, N_i].

    Raises:
        ValueError: ``batch_size`` < 1 or ``score_pairs`` returning a wrong shape.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    captions = np.asarray(captions, np.int64)
    images = np.asarray(images, np.int64)
    n_c, n_i = len(captions), len(images)
    scores = np.empty(n_c * n_i, np.float32)
    with tqdm(
        total=n_c * n_i,
        unit="pair",
        desc=desc,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, n_c * n_i, batch_size):
            flat = np.arange(start, min(start + batch_size, n_c * n_i))
            out = np.asarray(score_pairs(captions[flat // n_i], images[flat % n_i]))
            if out.shape != flat.shape:
                raise ValueError(
                    f"score_pairs gave shape {out.shape} for {len(flat)} pairs"
                )
            scores[flat] = out
            bar.update(len(flat))
    return scores.reshape(n_c, n_i)


def evaluate_gallery(
    score_pairs: ScorePairs,
    caption_image: np.ndarray,
    folds: Sequence[Sequence[int]] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """R@K of the whole gallery, or the mean over image folds (COCO-1K).

    With ``folds``, only the pairs within a fold are scored (5 x 1K x 5K = 25M
    passes for COCO, not 125M): each fold is the gallery of its images and their
    captions.

    Args:
        score_pairs: See ``score_gallery``.
        caption_image: int [N_c]; the image of each caption.
        folds: Image index sequences (``karpathy_split.coco_folds``), or None for
            the full gallery.
        batch_size: Pairs per call.
        progress: tqdm bars.

    Returns:
        ``gallery_metrics`` of the full gallery; with folds, ``mean_metrics`` plus
        ``per_fold`` (each fold's ``gallery_metrics``).
    """
    caption_image = np.asarray(caption_image, np.int64)
    n_i = int(caption_image.max()) + 1 if len(caption_image) else 0
    if folds is None:
        scores = score_gallery(
            score_pairs,
            np.arange(len(caption_image)),
            np.arange(n_i),
            batch_size,
            progress,
        )
        return gallery_metrics(scores, caption_image)
    per_fold = []
    for k, fold in enumerate(folds):
        images = np.asarray(list(fold), np.int64)
        column = np.full(n_i, -1, np.int64)
        column[images] = np.arange(len(images))
        captions = np.flatnonzero(column[caption_image] >= 0)
        scores = score_gallery(
            score_pairs,
            captions,
            images,
            batch_size,
            progress,
            desc=f"fold {k + 1}/{len(folds)}",
        )
        per_fold.append(gallery_metrics(scores, column[caption_image[captions]]))
    return {**mean_metrics(per_fold), "per_fold": per_fold}


class CrossEncoderScorer:
    """``score_pairs`` of a cross-encoder, with cached text and visual embeddings.

    The model needs ``encoder.embed_text``, ``encoder.embed_visual``,
    ``encoder.transform`` (``networks/cross_modal_encoder.py``) and an ``itm``
    classification head on the pooled output (``heads["itm"]``), as VLModel has.
    Everything runs with ``training=False`` (no dropout), deterministically.

    Args:
        model: The model.
        input_ids: int [N_c, T]; the captions' WordPiece ids.
        input_mask: int [N_c, T]; 1 = real token.
        patch_features: float32 [N_i, P, D].
        patch_boxes: float32 [N_i, P, 5].
        patch_mask: int [N_i, P]; 1 = real visual token.
        embed_batch_size: Captions or images per embedding call.

    Memory: the caches hold N_c x T x H + N_i x P x H float32 (Flickr30k test at
    T = 42, P = 100, H = 768: 0.65 GB + 0.31 GB).

    Raises:
        ConfigError: A model without an ITM head or the encoder methods.
    """

    def __init__(
        self,
        model,
        input_ids: np.ndarray,
        input_mask: np.ndarray,
        patch_features: np.ndarray,
        patch_boxes: np.ndarray,
        patch_mask: np.ndarray,
        embed_batch_size: int = 256,
    ) -> None:
        import tensorflow as tf

        heads = getattr(model, "heads", {})
        encoder = getattr(model, "encoder", None)
        if "itm" not in heads:
            raise ConfigError(
                f"model {model.name} has no ITM head (heads: {sorted(heads)}): "
                "full-gallery retrieval needs `tasks.itm: true` or a retrieval run"
            )
        if not all(
            hasattr(encoder, m) for m in ("embed_text", "embed_visual", "transform")
        ):
            raise ConfigError(
                f"model {model.name}'s encoder cannot embed text and images apart "
                "(embed_text / embed_visual / transform)"
            )
        self.model = model
        self._encoder = encoder
        self._head = heads["itm"]
        input_ids = np.asarray(input_ids, np.int32)
        self.input_mask = tf.constant(np.asarray(input_mask, np.int32))
        self.patch_mask = tf.constant(np.asarray(patch_mask, np.int32))

        @tf.function(reduce_retracing=True)
        def embed_text(ids):
            return encoder.embed_text(ids, tf.zeros_like(ids), training=False)

        @tf.function(reduce_retracing=True)
        def embed_visual(f, b):
            return encoder.embed_visual(f, b, training=False)

        # Slices go to TensorFlow one at a time: the raw features (N_i x P x D)
        # are never copied whole.
        step = max(1, embed_batch_size)
        self.text_embeddings = tf.concat(
            [
                embed_text(tf.constant(input_ids[i : i + step]))
                for i in range(0, len(input_ids), step)
            ],
            0,
        )  # [N_c, T, H]
        self.visual_embeddings = tf.concat(
            [
                embed_visual(
                    tf.constant(np.asarray(patch_features[i : i + step], np.float32)),
                    tf.constant(np.asarray(patch_boxes[i : i + step], np.float32)),
                )
                for i in range(0, len(patch_features), step)
            ],
            0,
        )  # [N_i, P, H]
        self._pairs = tf.function(self._score, reduce_retracing=True)

    def _score(self, caption_index, image_index):
        import tensorflow as tf

        out = self._encoder.transform(
            tf.gather(self.text_embeddings, caption_index),
            tf.gather(self.visual_embeddings, image_index),
            tf.gather(self.input_mask, caption_index),
            tf.gather(self.patch_mask, image_index),
            training=False,
        )
        logits = tf.cast(self._head(out["pooled_output"], training=False), tf.float32)
        return logits[:, 1] - logits[:, 0]  # the match margin

    def __call__(
        self, caption_index: np.ndarray, image_index: np.ndarray
    ) -> np.ndarray:
        """float32 [n]: the match margin of each (caption, image) pair."""
        import tensorflow as tf

        return self._pairs(
            tf.constant(np.asarray(caption_index, np.int32)),
            tf.constant(np.asarray(image_index, np.int32)),
        ).numpy()


class PairScorer:
    """``score_pairs`` of any model with ``itm_logits``, one full forward pass per
    pair: the fallback for models without ``CrossEncoderScorer``'s
    ``embed_text`` / ``transform`` split (InterBERT: its image [CLS] and
    extraction streams need the whole pair).

    Each call gathers the pairs' captions and images from the arrays given here
    and runs the model, ``training=False``; the score is the match margin
    ``logit[1] - logit[0]`` (as ``CrossEncoderScorer``).

    Args:
        model: A built model whose outputs include ``itm_logits`` [B, 2].
        input_ids: int [N_c, T].
        input_mask: int [N_c, T].
        patch_features: float32 [N_i, R, D].
        patch_boxes: float32 [N_i, R, 5].
        patch_mask: int [N_i, R].
    """

    def __init__(
        self, model, input_ids, input_mask, patch_features, patch_boxes, patch_mask
    ) -> None:
        import tensorflow as tf

        self.model = model
        self.input_ids = tf.constant(np.asarray(input_ids, np.int32))
        self.input_mask = tf.constant(np.asarray(input_mask, np.int32))
        self.patch_features = tf.constant(np.asarray(patch_features, np.float32))
        self.patch_boxes = tf.constant(np.asarray(patch_boxes, np.float32))
        self.patch_mask = tf.constant(np.asarray(patch_mask, np.int32))
        self._pairs = tf.function(self._score, reduce_retracing=True)

    def _score(self, caption_index, image_index):
        import tensorflow as tf

        ids = tf.gather(self.input_ids, caption_index)
        batch = {
            "input_ids": ids,
            "input_mask": tf.gather(self.input_mask, caption_index),
            "segment_ids": tf.zeros_like(ids),
            "patch_features": tf.gather(self.patch_features, image_index),
            "patch_boxes": tf.gather(self.patch_boxes, image_index),
            "patch_mask": tf.gather(self.patch_mask, image_index),
        }
        logits = tf.cast(self.model(batch, training=False)["itm_logits"], tf.float32)
        return logits[:, 1] - logits[:, 0]

    def __call__(self, caption_index, image_index) -> np.ndarray:
        """float32 [n]: the match margin of each (caption, image) pair."""
        import tensorflow as tf

        return self._pairs(
            tf.constant(np.asarray(caption_index, np.int32)),
            tf.constant(np.asarray(image_index, np.int32)),
        ).numpy()


def gallery_inputs(
    data_dir: str | Path,
    config,
    images: Sequence[Any],
    text_encoder,
) -> dict[str, np.ndarray]:
    """Captions and visual tokens of a Karpathy split, from a prepared folder.

    Each image is the record whose ``image_id`` equals its ``key`` (or one of its
    ``alternate_keys``); its captions are tokenised by ``text_encoder`` (a
    ``data_prep.text.wordpiece.WordPieceEncoder`` of the folder's ``vocab.txt``
    at the folder's T (at most the model's), built by the caller: the library
    does not import data_prep).

    Args:
        data_dir: A prepared folder (patch or region layout) holding the images.
        config: The model's ExperimentConfig (layout, D, T).
        images: ``karpathy_split.read_karpathy_split`` output.
        text_encoder: ``encode(texts) -> (input_ids [n, T], _, truncated)`` and
            ``pad_id``, as WordPieceEncoder.

    Returns:
        ``input_ids``, ``input_mask`` int32 [N_c, T'] (T' = the longest caption,
        at most the encoder's T); ``caption_image`` int64
        [N_c]; ``patch_features`` float32 [N_i, P, D], ``patch_boxes`` float32
        [N_i, P, 5], ``patch_mask`` int32 [N_i, P]; ``truncated``: captions cut.

    Raises:
        DataError: A folder whose layout or D does not fit the model, or that lacks
            some of the images (the message lists a few).
    """
    from kaleido_tf.evaluation.retrieval import listed_visual_records
    from kaleido_tf.manifest import read_manifest

    manifest = read_manifest(
        data_dir,
        layout=config.model.layout,
        feature_dim=config.model.patch_feature_dim,
    )
    wanted: dict[str, int] = {}
    for i, image in enumerate(images):
        for key in (image.key, *image.alternate_keys):
            wanted.setdefault(key, i)
    found: dict[int, dict[str, np.ndarray]] = {}
    for record in listed_visual_records(data_dir, manifest, list(wanted)):
        i = wanted[record["image_id"].decode("utf-8")]
        found.setdefault(i, record)
    if len(found) < len(images):
        missing = [im.key for i, im in enumerate(images) if i not in found]
        raise DataError(
            f"{data_dir} lacks {len(missing)} of the {len(images)} split images (no "
            f"record image_id equals e.g. {missing[:5]}): prepare the split's "
            "images with image_id = the file name without extension"
        )
    texts = [c for im in images for c in im.captions]
    input_ids, _, truncated = text_encoder.encode(texts)
    input_ids = np.asarray(input_ids)
    # Cut the padding columns no caption uses (T is often the 512-row position
    # table): padding is never attended to, so the scores are unchanged.
    length = max(1, int((input_ids != text_encoder.pad_id).sum(1).max()))
    input_ids = input_ids[:, :length]
    order = range(len(images))
    return {
        "input_ids": input_ids.astype(np.int32),
        "input_mask": (input_ids != text_encoder.pad_id).astype(np.int32),
        "caption_image": np.repeat(
            np.arange(len(images)), [len(im.captions) for im in images]
        ).astype(np.int64),
        "patch_features": np.stack([found[i]["patch_features"] for i in order]),
        "patch_boxes": np.stack([found[i]["patch_boxes"] for i in order]),
        "patch_mask": np.stack([found[i]["patch_mask"] for i in order]).astype(
            np.int32
        ),
        "truncated": truncated,
    }
