"""Token-patch pairs from the captioner's attention (AAG, Kaleido-BERT §3.3).

For each generated word w_t with attention α_t (kaleido_fashionbert.md §4.2, K-Q11,
K-Q12):

1. match: w_t pairs with every raw description word r equal to it (both lower-case
   BERT basic tokens); stop-words, punctuation and numbers never match; r must have
   tokens in the record (``word_index``), so words cut by truncation are skipped;
2. region: α_t (h x w) is upsampled bilinearly to the crop (S x S), divided by its
   maximum, and R_t = {pixels >= ``region_threshold``};
3. overlap: for every patch p of the chosen levels, ov(p) = |R_t ∩ p| / |p|; the
   pair (r, p) is emitted when ov(p) >= ``overlap_threshold``, with score
   ov(p) × (mean of the upsampled α_t inside p);
4. a (word, patch) pair found by several generated words keeps its best score; the
   ``max_pairs`` best pairs are kept (score descending, then word, then patch).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence

import cv2
import numpy as np

from data_prep.alignment.caption_vocab import is_word
from data_prep.kpg.kaleido_patches import cell_boxes
from kaleido_tf import schema

# NLTK's English stop-word list (179 words), the usual choice of captioning work.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours
    yourself yourselves he him his himself she she's her hers herself it it's its
    itself they them their theirs themselves what which who whom this that that'll
    these those am is are was were be been being have has had having do does did
    doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in
    out on off over under again further then once here there when where why how all
    any both each few more most other some such no nor not only own same so than too
    very s t can will just don don't should should've now d ll m o re ve y ain aren
    aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven
    haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't
    shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
    """.split()
)
_NUMBER = re.compile(r"\d+(st|nd|rd|th|s)?")


def is_alignable(word: str, skip_stop_words: bool = True) -> bool:
    """Whether a word may pair with patches (K-Q11).

    Punctuation never does; with ``skip_stop_words``, neither do stop-words
    (``STOP_WORDS``) and numbers (``12``, ``3rd``, ``90s``).
    """
    if not is_word(word):
        return False
    if not skip_stop_words:
        return True
    w = word.lower()
    return w not in STOP_WORDS and _NUMBER.fullmatch(w) is None


def upsample_attention(alpha: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of an attention grid to the crop.

    Args:
        alpha: float [h, w], one attention map (row-major grid).
        size: S, the crop side.

    Returns:
        float32 [S, S]. Pixel centres map to the grid with half-pixel alignment
        (x_src = (x + 0.5)·w/S − 0.5, clamped at the borders), as
        ``cv2.resize(..., INTER_LINEAR)`` and ``tf.image.resize`` do.
    """
    return cv2.resize(
        np.asarray(alpha, np.float32), (size, size), interpolation=cv2.INTER_LINEAR
    )


def box_means(values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each box, with an integral image.

    Args:
        values: float [S, S].
        boxes: int [n, 4]: x1, y1, x2, y2, end-exclusive.

    Returns:
        float64 [n].
    """
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1), np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    sums = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    return sums / ((x2 - x1) * (y2 - y1))


@dataclasses.dataclass(frozen=True)
class AlignmentPair:
    """One ⟨raw word, kaleido patch⟩ pair.

    Attributes:
        word_index: Index of the raw word (as in the record's ``word_index``).
        patch_index: Index of the patch in the layout's sequence (0..P-1).
        score: ov(p) × mean upsampled attention inside p.
        overlap: ov(p) = |R ∩ p| / |p|.
        word: The word.
    """

    word_index: int
    patch_index: int
    score: float
    overlap: float
    word: str


class AlignmentGenerator:
    """Turns generated words and their attention into token-patch pairs.

    Args:
        crop_size: S, side of the crop the patches are cut from (the prepare
            config's ``crop.output_size``, 256).
        levels: Kaleido levels whose patches may pair (K-Q12: 3, 4, 5).
        region_threshold: Region = upsampled α / max α >= this (K-Q12: 0.5).
        overlap_threshold: Pair when |R ∩ p| / |p| >= this (K-Q12: 0.5).
        max_pairs: Pairs kept per image (<= ``schema.MAX_ALIGNMENT_PAIRS``).
        skip_stop_words: Stop-words and numbers never pair (K-Q11).
        layout: The patch layout of the records (``schema.LAYOUTS["kaleido"]``).

    Example:
        >>> generator = AlignmentGenerator(256)
        >>> pairs = generator.align(["black", "jeans"], alpha,   # [2, 14, 14]
        ...                         ["jeans", "in", "black"], {0, 1, 2})
        >>> fields = generator.record_fields(pairs)

    Reference: Kaleido-BERT §3.3; kaleido_fashionbert.md §4.2 steps 3-6.
    Deviation: the paper gives no thresholds nor matching rules; these are the
    spec's defaults (K-Q11, K-Q12). Lemmatisation is not applied.
    """

    def __init__(
        self,
        crop_size: int,
        levels: Sequence[int] = (3, 4, 5),
        region_threshold: float = 0.5,
        overlap_threshold: float = 0.5,
        max_pairs: int = schema.MAX_ALIGNMENT_PAIRS,
        skip_stop_words: bool = True,
        layout: schema.Layout = schema.LAYOUTS["kaleido"],
    ) -> None:
        missing = [n for n in levels if n not in layout.grids]
        if missing:
            raise ValueError(
                f"levels {missing} are not grids of layout {layout.name!r} "
                f"({list(layout.grids)})"
            )
        if not 1 <= max_pairs <= schema.MAX_ALIGNMENT_PAIRS:
            raise ValueError(f"max_pairs must be in [1, 64], got {max_pairs}")
        self.crop_size = crop_size
        self.levels = tuple(levels)
        self.region_threshold = region_threshold
        self.overlap_threshold = overlap_threshold
        self.max_pairs = max_pairs
        self.skip_stop_words = skip_stop_words
        self.layout = layout
        index, boxes, level = [], [], []
        for n in self.levels:
            sl = layout.level_slice(n)
            index.extend(range(sl.start, sl.stop))
            boxes.append(cell_boxes(n, crop_size))
            level.extend([n] * (n * n))
        self.patch_index = np.asarray(index, np.int64)  # [n] candidate patches
        self.patch_boxes = np.concatenate(boxes).astype(np.int64)  # [n, 4] pixels
        self.patch_level = np.asarray(level, np.int64)  # [n]

    def region(
        self, alpha: np.ndarray, foreground: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Upsampled attention and its region.

        Args:
            alpha: float [h, w], one word's attention.
            foreground: Optional bool [S, S] product mask of the crop; the region
                is then limited to it (the maximum is still taken everywhere).

        Returns:
            ``(upsampled, region)``: float32 [S, S] and bool [S, S] (pixels whose
            upsampled attention is >= ``region_threshold`` × its maximum).
        """
        up = upsample_attention(alpha, self.crop_size)
        peak = float(up.max())
        if peak <= 0.0:
            return up, np.zeros_like(up, bool)
        region = up >= self.region_threshold * peak
        if foreground is not None:
            region &= foreground
        return up, region

    def word_patches(
        self, alpha: np.ndarray, foreground: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The patches one attention map pairs with.

        Args:
            alpha: float [h, w].
            foreground: Optional bool [S, S] product mask (see ``region``).

        Returns:
            ``(patch_index, overlap, score)`` of the patches whose overlap is
            >= ``overlap_threshold``: int64 [m], float64 [m], float64 [m].
        """
        up, region = self.region(alpha, foreground)
        overlap = box_means(region.astype(np.float64), self.patch_boxes)
        mean_alpha = box_means(up, self.patch_boxes)
        keep = overlap >= self.overlap_threshold
        return self.patch_index[keep], overlap[keep], overlap[keep] * mean_alpha[keep]

    def align(
        self,
        generated_words: Sequence[str],
        attention: np.ndarray,
        raw_words: Sequence[str],
        valid_word_indices: Collection[int] | None = None,
        foreground: np.ndarray | None = None,
    ) -> list[AlignmentPair]:
        """Pairs of one image.

        Args:
            generated_words: The caption, one word per attention map.
            attention: float [n, h, w]: α_t of each generated word.
            raw_words: BERT basic tokens of the product text (``basic_words``).
            valid_word_indices: Raw word indices that have tokens in the record
                (``set(word_index[word_index >= 0])``); None allows all.
            foreground: Optional bool [S, S] product mask; regions are limited to
                it (``pairs.foreground_only``).

        Returns:
            At most ``max_pairs`` pairs, best score first.
        """
        if len(generated_words) != len(attention):
            raise ValueError(
                f"{len(generated_words)} generated words but {len(attention)} "
                "attention maps"
            )
        positions: dict[str, list[int]] = {}
        for r, w in enumerate(raw_words):
            if valid_word_indices is not None and r not in valid_word_indices:
                continue
            if is_alignable(w, self.skip_stop_words):
                positions.setdefault(w.lower(), []).append(r)
        best: dict[tuple[int, int], AlignmentPair] = {}
        for g, alpha in zip(generated_words, attention):
            targets = positions.get(g.lower())
            if not targets:
                continue
            patches, overlap, score = self.word_patches(alpha, foreground)
            for p, ov, s in zip(patches.tolist(), overlap.tolist(), score.tolist()):
                for r in targets:
                    old = best.get((r, p))
                    if old is None or s > old.score:
                        best[(r, p)] = AlignmentPair(r, p, s, ov, raw_words[r])
        pairs = sorted(
            best.values(), key=lambda a: (-a.score, a.word_index, a.patch_index)
        )
        return pairs[: self.max_pairs]

    @staticmethod
    def record_fields(pairs: Sequence[AlignmentPair]) -> dict[str, np.ndarray]:
        """The record's ``align_*`` fields, padded to ``MAX_ALIGNMENT_PAIRS``.

        Returns:
            ``align_word_index``: int64 [64] (-1 pads), ``align_patch_index``:
            int64 [64] (-1 pads), ``align_score``: float32 [64] (0 pads).
        """
        n = schema.MAX_ALIGNMENT_PAIRS
        if len(pairs) > n:
            raise ValueError(f"{len(pairs)} pairs exceed the record's {n} slots")
        word = np.full(n, -1, np.int64)
        patch = np.full(n, -1, np.int64)
        score = np.zeros(n, np.float32)
        for i, a in enumerate(pairs):
            word[i], patch[i], score[i] = a.word_index, a.patch_index, a.score
        return {
            "align_word_index": word,
            "align_patch_index": patch,
            "align_score": score,
        }
