"""Word-level caption vocabulary of the SAT captioner (Kaleido-BERT §3.3, K-Q10).

Words are BERT's basic tokens of the product text (lower-cased, accents stripped,
punctuation split off: the same words that ``word_index`` in the records counts), so a
generated word and a raw description word compare as plain strings. Captions drop the
punctuation tokens; the vocabulary keeps words seen at least ``min_word_count`` times
in the training captions (§4.2: 5); others become ``<unk>``.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.errors import DataError

PAD = "<pad>"
START = "<start>"
END = "<end>"
UNK = "<unk>"
SPECIALS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3


def basic_words(texts: Sequence[str], lower_case: bool = True) -> list[list[str]]:
    """BERT basic tokenisation of each text: the words ``word_index`` refers to.

    Uses the basic tokenizer inside tensorflow-text's ``BertTokenizer`` (the one
    ``kaleido-tf prepare`` runs), so word ``i`` here is word ``i`` of the records.

    Args:
        texts: Raw product texts.
        lower_case: Lower-case and strip accents (the prepare config's
            ``text.lower_case``).

    Returns:
        One list of words per text, punctuation marks included as words.
    """
    if not texts:
        return []
    # Not exported at the package top level; it is what BertTokenizer runs first.
    from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

    tokens = BasicTokenizer(lower_case=lower_case).tokenize(list(texts)).to_list()
    return [[t.decode("utf-8") for t in words] for words in tokens]


def is_word(token: str) -> bool:
    """Whether a basic token is a word (has a letter or digit), not punctuation."""
    return any(ch.isalnum() for ch in token)


def caption_words(words: Sequence[str]) -> list[str]:
    """The caption of a text's basic tokens: lower-case words, punctuation dropped."""
    return [w.lower() for w in words if is_word(w)]


class CaptionVocab:
    """Caption word <-> id mapping with ``<pad>``=0, ``<start>``, ``<end>``, ``<unk>``.

    Args:
        words: Every token in id order, starting with ``SPECIALS``.
        counts: Training-caption count of each word (0 for the specials).

    Example:
        >>> vocab = CaptionVocab.build([["red", "wool", "sweater"]] * 5, 5)
        >>> ids = vocab.encode(["red", "sweater"], max_words=4)
        >>> vocab.decode(ids)
        ['red', 'sweater']

    Reference: Show, Attend and Tell (Xu et al. 2015) §4.3; Kaleido-BERT §3.3.
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"caption vocabulary must start with {SPECIALS}")
        if len(set(words)) != len(words):
            raise DataError("caption vocabulary has duplicate words")
        if len(counts) != len(words):
            raise DataError("caption vocabulary: words and counts differ in length")
        self.words = list(words)
        self.counts = [int(c) for c in counts]
        self._ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(
        cls, captions: Iterable[Sequence[str]], min_word_count: int = 5
    ) -> CaptionVocab:
        """Words of ``captions`` seen at least ``min_word_count`` times.

        Order: by decreasing count, then alphabetically (deterministic).
        """
        counter = collections.Counter(w for caption in captions for w in caption)
        kept = sorted(
            ((w, c) for w, c in counter.items() if c >= min_word_count and w),
            key=lambda wc: (-wc[1], wc[0]),
        )
        kept = [(w, c) for w, c in kept if w not in SPECIALS]
        return cls(
            list(SPECIALS) + [w for w, _ in kept],
            [0] * len(SPECIALS) + [c for _, c in kept],
        )

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._ids and word not in SPECIALS

    def id(self, word: str) -> int:
        """The id of ``word``; ``UNK_ID`` when it is not in the vocabulary."""
        return self._ids.get(word, UNK_ID)

    def encode(self, words: Sequence[str], max_words: int) -> np.ndarray:
        """``<start> w_1 .. w_n <end>`` then ``<pad>``, n = min(len, max_words).

        Returns:
            int32 [max_words + 2].
        """
        ids = np.full(max_words + 2, PAD_ID, np.int32)
        n = min(len(words), max_words)
        ids[0] = START_ID
        ids[1 : n + 1] = [self.id(w) for w in words[:n]]
        ids[n + 1] = END_ID
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of ``ids`` up to the first ``<end>``; other specials are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID):
                continue
            out.append(self.words[i])
        return out

    def save(self, path: str | Path) -> None:
        """Writes ``{"words": [...], "counts": [...]}`` atomically."""
        atomic_write_json(path, {"words": self.words, "counts": self.counts})

    @classmethod
    def load(cls, path: str | Path) -> CaptionVocab:
        """Reads a file written by ``save``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["words"], data["counts"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(
                f"{path} is not a caption vocabulary written by `kaleido-tf align "
                f"train` ({e})"
            ) from None
