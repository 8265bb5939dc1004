"""Which step type each training step runs (CommerceMM's "two forward/backward").

The type of step s is a pure function of (seed, s), computed on the host: every
worker and replica agrees without communicating, and a resumed run replays the
same sequence. Each type's input iterator resumes at the number of steps of that
type taken before the resume step, counted by replaying the draws.

``random``: u_s = splitmix64(seed, s) / 2^64 (uniform in [0, 1)); step s is the
first type (in the recipe's order) whose cumulative probability exceeds u_s.
``alternate``: round-robin over the types with probability > 0 (the paper's
"round-robin" reading), which needs those probabilities equal.

Reference: CommerceMM (Yu et al., KDD 2022) §3.3 "At each step, we randomly pick
between the set of 5 image-text pre-training tasks or the set of 9 Omni-Retrieval
tasks"; spec imagebert_interbert_commercemm.md §4.6, §4.11 #2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kaleido_tf.errors import ConfigError

SCHEDULES = ("random", "alternate")
_STREAM = 0x5354_4550  # "STEP": separates this stream from other (seed, step) draws
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 values (Steele et al. 2014)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def step_uniforms(seed: int, start: int, stop: int) -> np.ndarray:
    """float64 [stop - start]: u_s in [0, 1) for steps s = start .. stop - 1."""
    steps = np.arange(start, stop, dtype=np.uint64)
    key = _splitmix64(np.asarray([np.uint64(seed & 0xFFFFFFFFFFFFFFFF)]))
    key = _splitmix64(key ^ np.uint64(_STREAM))
    bits = _splitmix64(steps ^ key[0]) >> np.uint64(11)  # 53 random bits
    return bits.astype(np.float64) * 2.0**-53


def check_probabilities(probabilities: Mapping[str, float], schedule: str) -> None:
    """Raises ConfigError unless the probabilities are a distribution the
    ``schedule`` can follow."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown step schedule {schedule!r}: valid are {SCHEDULES}")
    values = list(probabilities.values())
    if not values or any(p < 0 for p in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(
            f"step type probabilities {dict(probabilities)} must be >= 0 and sum "
            "to 1: fix the config's step mix"
        )
    active = {p for p in values if p > 0}
    if schedule == "alternate" and len(active) > 1:
        raise ConfigError(
            f"step schedule alternate takes turns, so the step types in use need "
            f"equal probabilities, found {dict(probabilities)}"
        )


def draw_step_types(
    seed: int,
    start: int,
    stop: int,
    probabilities: Mapping[str, float],
    schedule: str = "random",
) -> list[str]:
    """The type of every step in ``[start, stop)``.

    Args:
        seed: The run's seed (``train.seed``).
        start: First step (0-based: the step the optimizer is about to take).
        stop: One past the last step.
        probabilities: Type name -> probability, in the recipe's order.
        schedule: ``random`` or ``alternate``.

    Returns:
        ``stop - start`` type names; step s's depends only on (seed, s).

    Raises:
        ConfigError: See ``check_probabilities``.
    """
    check_probabilities(probabilities, schedule)
    names = list(probabilities)
    if stop <= start:
        return []
    if schedule == "alternate":
        used = [n for n in names if probabilities[n] > 0]
        return [used[s % len(used)] for s in range(start, stop)]
    cumulative = np.cumsum([probabilities[n] for n in names])
    cumulative[-1] = np.inf  # rounding never falls off the end
    # A type with probability 0 has an empty interval [c_{i-1}, c_i).
    index = np.searchsorted(cumulative, step_uniforms(seed, start, stop), side="right")
    return [names[i] for i in index]


def steps_taken(
    seed: int,
    step: int,
    probabilities: Mapping[str, float],
    schedule: str = "random",
) -> dict[str, int]:
    """How many of the steps ``0 .. step - 1`` each type took (resume offsets)."""
    counts = dict.fromkeys(probabilities, 0)
    for name in draw_step_types(seed, 0, step, probabilities, schedule):
        counts[name] += 1
    return counts


def runs(types: Sequence[str]) -> list[tuple[str, int]]:
    """Consecutive runs of the same type: ``[(type, length), ...]``."""
    out: list[tuple[str, int]] = []
    for name in types:
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + 1)
        else:
            out.append((name, 1))
    return out
