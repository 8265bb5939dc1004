"""Fashion captioning metrics: BLEU-4, METEOR, ROUGE-L, CIDEr (COCO caption toolkit).

The scores come from ``pycocoevalcap`` exactly as COCO computes them: captions are
tokenised by Stanford's PTBTokenizer (lower case, punctuation removed), then Bleu
(n = 4, "closest" reference length), Meteor 1.5, Rouge-L and CIDEr (not CIDEr-D)
score the corpus. PTBTokenizer and METEOR run Java. SPICE is not computed.

Reference: Kaleido-BERT Table 3 ("Sum CAP=Bleu-4+METEOR+ROUGE-L+CIDEr");
kaleido_fashionbert.md §4.7, §7.5, K-Q19.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import Hashable

from kaleido_tf.errors import KaleidoError

METRICS = ("bleu4", "meteor", "rouge_l", "cider")


class JavaNotFoundError(KaleidoError):
    """No ``java`` on PATH: the COCO caption toolkit cannot tokenise or run METEOR."""


def require_java() -> str:
    """The path of ``java``.

    Raises:
        JavaNotFoundError: When there is none.
    """
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            "captioning metrics need Java (PTBTokenizer and METEOR of pycocoevalcap) "
            "and `java` is not on PATH: install a JRE (e.g. `apt-get install "
            "openjdk-17-jre-headless`)"
        )
    return java


class CaptionScorer:
    """Scores caption sets; keeps one METEOR process (about 10 s to start) for all.

    Use as a context manager, or call ``close``. ``score`` below is the one-shot
    form.

    Raises:
        JavaNotFoundError: No ``java`` (on construction).

    Example:
        >>> with CaptionScorer() as scorer:
        ...     result = scorer.score({"1": ["wool beanie"]}, {"1": "a wool beanie"})
    """

    def __init__(self) -> None:
        require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = Meteor()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the METEOR process."""
        if self._meteor is not None:
            meteor, self._meteor = self._meteor, None
            del meteor  # its __del__ stops the Java process

    def score(
        self,
        references: Mapping[Hashable, Sequence[str]],
        hypotheses: Mapping[Hashable, str],
    ) -> dict[str, float]:
        """BLEU-4, METEOR, ROUGE-L and CIDEr of generated captions, ×100, and Sum CAP.

        Args:
            references: Example id -> its reference captions (Fashion-Gen: the
                product description, one per example).
            hypotheses: Example id -> the generated caption. Same ids as
                ``references``.

        Returns:
            ``bleu4``, ``meteor``, ``rouge_l``, ``cider`` (each ×100, as the
            paper prints them), ``sum_cap`` (their sum) and ``examples``.

        Raises:
            ValueError: No examples, ids that differ, an example without a
                reference, or a closed scorer.
        """
        if self._meteor is None:
            raise ValueError("the CaptionScorer is closed")
        _check_inputs(references, hypotheses)
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # The toolkit's ids index parallel lines of one file: use 0..N-1.
        keys = list(hypotheses)
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize(
            {
                i: [{"caption": _one_line(c)} for c in references[k]]
                for i, k in enumerate(keys)
            }
        )
        res = tokenizer.tokenize(
            {i: [{"caption": _one_line(hypotheses[k])}] for i, k in enumerate(keys)}
        )
        # Guard: a caption PTBTokenizer returns no line for scores as "".
        res = {i: res.get(i, [""]) for i in range(len(keys))}
        gts = {i: gts.get(i, [""]) for i in range(len(keys))}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor, _ = self._meteor.compute_score(gts, res)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        out = {
            "bleu4": 100.0 * float(bleu[3]),
            "meteor": 100.0 * float(meteor),
            "rouge_l": 100.0 * float(rouge),
            "cider": 100.0 * float(cider),
        }
        out["sum_cap"] = sum(out[m] for m in METRICS)
        out["examples"] = len(keys)
        return out


def score(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> dict[str, float]:
    """``CaptionScorer().score(references, hypotheses)``, then stops METEOR.

    Raises:
        JavaNotFoundError: No ``java``.
        ValueError: See ``CaptionScorer.score``.
    """
    _check_inputs(references, hypotheses)
    with CaptionScorer() as scorer:
        return scorer.score(references, hypotheses)


def _check_inputs(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> None:
    if not hypotheses:
        raise ValueError("no captions to score")
    if set(references) != set(hypotheses):
        extra = sorted(map(str, set(references) ^ set(hypotheses)))[:3]
        raise ValueError(
            f"references and hypotheses must have the same ids (differ at {extra})"
        )
    empty = [k for k, refs in references.items() if not refs]
    if empty:
        raise ValueError(f"example {empty[0]!r} has no reference caption")


def _one_line(text: str) -> str:
    # The toolkit writes one caption per line.
    return " ".join(str(text).split())
