"""Beam search against exhaustive search and greedy decoding on toy decoders, and
the captioner's beam attention against its teacher-forced attention."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from data_prep.alignment.beam_search import beam_search, generate_captions

PAD, START, END = 0, 1, 2
WORDS = (3, 4, 5)  # the toy vocabulary's words
V = 6
G = 4


def toy_distribution(
    image: int, prefix: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed log-probabilities over V and attention over G for a prefix."""
    rng = np.random.default_rng([image, len(prefix), *prefix, 7])
    logits = rng.normal(0.0, 1.5, V)
    log_probs = logits - np.log(np.exp(logits).sum())
    alpha = rng.random(G)
    return log_probs, alpha / alpha.sum()


def toy_step_fn(distribution):
    """A step function over the state (prefix tokens [N, 8], length [N], image [N])."""

    def step_fn(tokens, state):
        seq, length, image = (np.array(s) for s in state)
        tokens = np.asarray(tokens)
        log_probs = np.zeros((len(tokens), V), np.float32)
        alpha = np.zeros((len(tokens), G), np.float32)
        for n, tok in enumerate(tokens):
            if tok != START:
                seq[n, length[n]] = tok
                length[n] += 1
            prefix = tuple(int(t) for t in seq[n, : length[n]])
            log_probs[n], alpha[n] = distribution(int(image[n]), prefix)
        return log_probs, alpha, (seq, length, image)

    return step_fn


def initial_state(batch: int):
    return (
        np.zeros((batch, 8), np.int32),
        np.zeros(batch, np.int32),
        np.arange(batch, dtype=np.int32),
    )


def exhaustive_best(distribution, image: int, max_words: int):
    """The caption of highest Σ log p (words and <end>), by enumeration."""
    best = (-np.inf, None)
    for n in range(max_words + 1):
        for words in itertools.product(WORDS, repeat=n):
            score = 0.0
            for t in range(n):
                score += distribution(image, words[:t])[0][words[t]]
            score += distribution(image, words)[0][END]
            if score > best[0]:
                best = (score, list(words))
    return best


def greedy(distribution, image: int, max_words: int) -> tuple[float, list[int]]:
    words: list[int] = []
    score = 0.0
    while True:
        log_probs = distribution(image, tuple(words))[0].copy()
        log_probs[[PAD, START]] = -np.inf
        if len(words) == max_words:
            return score + log_probs[END], words
        token = int(np.argmax(log_probs))
        score += log_probs[token]
        if token == END:
            return score, words
        words.append(token)


def run(distribution, batch: int, beam: int, max_words: int):
    return beam_search(
        toy_step_fn(distribution),
        initial_state(batch),
        batch,
        beam,
        max_words,
        START,
        END,
        forbidden_ids=(PAD, START),
    )


def test_wide_beam_equals_exhaustive_search():
    max_words = 3
    # 27 prefixes of 3 words: a beam of 27 keeps every hypothesis.
    result = run(toy_distribution, 4, 27, max_words)
    for image in range(4):
        score, words = exhaustive_best(toy_distribution, image, max_words)
        assert result.tokens[image] == words
        np.testing.assert_allclose(result.scores[image], score, rtol=1e-5)


def test_beam_one_follows_the_greedy_path():
    # A beam of one extends the greedy path and keeps the best of its endings
    # (a prefix of it + <end>), so it is never worse than greedy decoding.
    result = run(toy_distribution, 6, 1, 4)
    for image in range(6):
        score, words = greedy(toy_distribution, image, 4)
        got = result.tokens[image]
        assert got == words[: len(got)]
        assert result.scores[image] >= score - 1e-6


def test_scores_and_attention_belong_to_the_returned_caption():
    result = run(toy_distribution, 3, 3, 4)
    for image in range(3):
        words = result.tokens[image]
        expected = (
            sum(
                toy_distribution(image, tuple(words[:t]))[0][words[t]]
                for t in range(len(words))
            )
            + toy_distribution(image, tuple(words))[0][END]
        )
        np.testing.assert_allclose(result.scores[image], expected, rtol=1e-5)
        assert result.attention[image].shape == (len(words), G)
        for t in range(len(words)):
            np.testing.assert_allclose(
                result.attention[image][t],
                toy_distribution(image, tuple(words[:t]))[1],
                rtol=1e-6,
            )


def table_distribution(image: int, prefix: tuple[int, ...]):
    """Greedy takes word 3 (p .55) but "4 <end>" (.45 x .95) is the best caption."""
    p = np.full(V, 1e-9)
    if prefix == ():
        p[3], p[4], p[END] = 0.55, 0.45, 1e-6
    elif prefix[0] == 4:
        p[END], p[3], p[5] = 0.95, 0.03, 0.02
    else:
        p[END], p[3], p[4] = 0.30, 0.35, 0.35
    p /= p.sum()
    return np.log(p), np.full(G, 1.0 / G)


def test_beam_two_finds_what_greedy_misses():
    greedy_score, greedy_words = greedy(table_distribution, 0, 3)
    best_score, best_words = exhaustive_best(table_distribution, 0, 3)
    assert greedy_words[0] == 3 and best_words == [4]
    assert best_score > greedy_score
    one = run(table_distribution, 1, 1, 3)
    two = run(table_distribution, 1, 2, 3)
    assert one.tokens[0] == greedy_words[: len(one.tokens[0])] != [4]
    assert two.tokens[0] == [4]
    np.testing.assert_allclose(two.scores[0], best_score, rtol=1e-6)


def test_max_words_forces_end():
    # Ending gets likelier with length but the best caption would be longer than
    # max_words: it is cut there and ends with <end>.
    def distribution(image, prefix):
        p = np.full(V, 1e-6)
        p[3] = 1.0
        p[END] = 10.0 ** -(10 - len(prefix))
        p /= p.sum()
        return np.log(p), np.full(G, 0.25)

    result = run(distribution, 2, 2, 5)
    assert result.tokens == [[3] * 5, [3] * 5]


@pytest.fixture(scope="module")
def tiny_captioner():
    from data_prep.alignment.sat_captioner import SATCaptioner

    model = SATCaptioner(
        11,
        "mobilenet_v3_small",
        "expanded_conv_7/Add",
        64,
        embedding_dim=7,
        lstm_units=9,
        attention_dim=5,
        dropout=0.0,
    )
    model.build_decoder()
    # Larger output weights so that the toy captions differ between images.
    w = model.output_logits.kernel
    w.assign(w * 8.0)
    return model


def test_captioner_beam_attention_matches_teacher_forcing(tiny_captioner):
    model = tiny_captioner
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (3, 64, 64, 3)).astype(np.uint8)
    grid = model.encoder(images)
    result = generate_captions(model, grid, beam_size=3, max_words=6)
    for i in range(3):
        words = result.tokens[i]
        ids = np.array([[START, *words]], np.int32)
        out = model({"grid_features": grid[i : i + 1], "input_ids": ids})
        log_probs = tf.nn.log_softmax(out["logits"][0]).numpy()  # [n + 1, V]
        targets = [*words, END]
        expected = sum(log_probs[t, w] for t, w in enumerate(targets))
        np.testing.assert_allclose(result.scores[i], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            result.attention[i], out["alpha"][0, : len(words)].numpy(), atol=1e-5
        )
        assert all(w not in (PAD, START, 3) for w in words)  # <unk> = 3 forbidden
