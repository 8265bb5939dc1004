"""The ClusterFit substitute of CommerceMM's MIM-kl target: soft k-means assignments.

c(v) = softmax(-||f - mu_k||^2 / T) over K_c centroids mu_k fitted by
scikit-learn's MiniBatchKMeans on the teacher features f = r(v) of the training
split; T is chosen by bisection (in log T) so that the mean max-probability over
the images is the target, 0.5 (imagebert_interbert_commercemm.md §4.2 [D], §4.11
row 6). Centroids are kept as float32 and every probability is computed from the
float16-rounded features the records store, in float64, so that c(v) is a
function of the stored r(v) and the saved ``teacher_clusters.npz``.

Reference: CommerceMM §3.1 (MIM-kl, ClusterFit); spec §4.2.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from kaleido_tf.atomic_files import atomic_write_bytes
from kaleido_tf.errors import DataError

CLUSTERS_NAME = "teacher_clusters.npz"
_CHUNK_ENTRIES = 1 << 22  # rows x clusters per distance chunk


def squared_distances(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """float64 [n, K] ``||f_i - mu_k||^2`` of [n, D] features and [K, D] centroids."""
    f = np.asarray(features, np.float64)
    mu = np.asarray(centroids, np.float64)
    out = np.empty((len(f), len(mu)), np.float64)
    mu_sq = (mu * mu).sum(1)
    step = max(1, _CHUNK_ENTRIES // max(1, len(mu)))
    for a in range(0, len(f), step):
        x = f[a : a + step]
        d = (x * x).sum(1, keepdims=True) - 2.0 * x @ mu.T + mu_sq
        out[a : a + step] = np.maximum(d, 0.0)
    return out


def soft_assignments(
    features: np.ndarray, centroids: np.ndarray, temperature: float
) -> np.ndarray:
    """float32 [n, K] ``softmax(-||f - mu_k||^2 / T)`` over k (rows sum to 1)."""
    d = squared_distances(features, centroids)
    logits = -(d - d.min(1, keepdims=True)) / temperature
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def mean_max_probability(shifted: np.ndarray, temperature: float) -> float:
    """Mean over rows of ``max_k softmax(-d / T)``, from ``d - min_k d`` (>= 0)."""
    return float(np.mean(1.0 / np.exp(-shifted / temperature).sum(1)))


def choose_temperature(
    distances: np.ndarray, target: float, iterations: int = 100
) -> tuple[float, float]:
    """Bisects log T so that the mean max-probability equals ``target``.

    The mean max-probability falls monotonically from (at most) 1 at T -> 0 to
    1/K at T -> inf.

    Args:
        distances: float [n, K] squared distances of n images to K centroids.
        target: The wanted mean max-probability, in (1/K, 1).
        iterations: Bisection steps.

    Returns:
        ``(T, achieved mean max-probability)``.

    Raises:
        DataError: The target cannot be reached (e.g. identical features, or
            images exactly halfway between two centroids).
    """
    shifted = (distances - distances.min(1, keepdims=True)).astype(np.float32)
    scale = float(shifted.mean())
    if not scale > 0.0:
        raise DataError(
            "all teacher features are equally far from every centroid (identical "
            "images?): soft cluster assignments cannot reach max-probability "
            f"{target}; use more varied images or fewer clusters"
        )
    lo, hi = np.log(scale * 1e-6), np.log(scale * 1e3)
    if mean_max_probability(shifted, float(np.exp(lo))) <= target:
        raise DataError(
            f"even at T -> 0 the mean max-probability stays <= {target} (images "
            "tie between centroids): lower teacher.target_max_probability or "
            "teacher.num_clusters"
        )
    if mean_max_probability(shifted, float(np.exp(hi))) >= target:
        raise DataError(
            f"the mean max-probability stays >= {target} at T = {np.exp(hi):.3g}: "
            "raise teacher.target_max_probability"
        )
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mean_max_probability(shifted, float(np.exp(mid))) > target:
            lo = mid
        else:
            hi = mid
    t = float(np.exp(0.5 * (lo + hi)))
    return t, mean_max_probability(shifted, t)


@dataclasses.dataclass(frozen=True)
class TeacherClusters:
    """Centroids and temperature of the soft assignments, as saved in the npz.

    Attributes:
        centroids: float32 [K_c, D_t] k-means centroids.
        temperature: T.
        target_max_probability: The mean max-probability T was chosen for.
        mean_max_probability: The mean max-probability reached on the images
            T was chosen on.
        kmeans_seed: MiniBatchKMeans ``random_state``.
        fit_images: How many images the centroids were fitted on.
        temperature_images: How many of them chose T.
        backbone_fingerprint: ``PatchFeatureExtractor.fingerprint()`` of the
            teacher whose features were clustered; another teacher is refused.
    """

    centroids: np.ndarray
    temperature: float
    target_max_probability: float
    mean_max_probability: float
    kmeans_seed: int
    fit_images: int
    temperature_images: int
    backbone_fingerprint: str

    @property
    def num_clusters(self) -> int:
        """K_c."""
        return int(self.centroids.shape[0])

    @property
    def feature_dim(self) -> int:
        """D_t."""
        return int(self.centroids.shape[1])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """float32 [n, K_c] c(v) of float [n, D_t] teacher features."""
        return soft_assignments(features, self.centroids, self.temperature)

    def to_bytes(self) -> bytes:
        """The ``.npz`` file content."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            centroids=self.centroids.astype(np.float32),
            temperature=np.float64(self.temperature),
            target_max_probability=np.float64(self.target_max_probability),
            mean_max_probability=np.float64(self.mean_max_probability),
            kmeans_seed=np.int64(self.kmeans_seed),
            fit_images=np.int64(self.fit_images),
            temperature_images=np.int64(self.temperature_images),
            backbone_fingerprint=np.array(self.backbone_fingerprint),
        )
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Writes the npz atomically; returns its path."""
        atomic_write_bytes(path, self.to_bytes())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> TeacherClusters:
        """Reads an npz written by ``save``; DataError if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"teacher clusters file {path} not found: give the "
                f"{CLUSTERS_NAME} of the training split's prepare-pixels build"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                centroids = np.asarray(z["centroids"], np.float32)
                out = cls(
                    centroids=centroids,
                    temperature=float(z["temperature"]),
                    target_max_probability=float(z["target_max_probability"]),
                    mean_max_probability=float(z["mean_max_probability"]),
                    kmeans_seed=int(z["kmeans_seed"]),
                    fit_images=int(z["fit_images"]),
                    temperature_images=int(z["temperature_images"]),
                    backbone_fingerprint=str(z["backbone_fingerprint"]),
                )
        except (OSError, ValueError, KeyError) as e:
            raise DataError(
                f"{path} is not a {CLUSTERS_NAME} written by `kaleido-tf "
                f"prepare-pixels` ({str(e)[:120]})"
            ) from None
        if centroids.ndim != 2 or not out.temperature > 0:
            raise DataError(f"{path}: centroids must be [K, D] and T > 0")
        return out


def fit_teacher_clusters(
    features: np.ndarray,
    num_clusters: int,
    target_max_probability: float,
    seed: int,
    batch_size: int,
    max_iter: int,
    temperature_images: int,
    backbone_fingerprint: str,
) -> TeacherClusters:
    """Fits MiniBatchKMeans on ``features`` and chooses T.

    Args:
        features: float [N, D_t] teacher features (the float16-rounded values
            the records store).
        num_clusters: K_c.
        target_max_probability: The mean max-probability T is chosen for.
        seed: MiniBatchKMeans ``random_state``; also seeds the sample of at most
            ``temperature_images`` images on which T is chosen.
        batch_size: MiniBatchKMeans mini-batch size.
        max_iter: MiniBatchKMeans passes at most.
        temperature_images: Size of the sample T is chosen on.
        backbone_fingerprint: Recorded with the centroids.

    Raises:
        DataError: Fewer images than clusters, or T cannot reach the target.
    """
    from sklearn.cluster import MiniBatchKMeans

    features = np.asarray(features, np.float32)
    n = len(features)
    if n < num_clusters:
        raise DataError(
            f"teacher.num_clusters={num_clusters} k-means clusters need at least "
            f"as many images, this split has {n}: lower teacher.num_clusters, or "
            "pass the training split's --teacher-clusters"
        )
    kmeans = MiniBatchKMeans(
        n_clusters=num_clusters,
        random_state=seed,
        batch_size=min(batch_size, n),
        max_iter=max_iter,
        n_init=1,
    )
    kmeans.fit(features)
    centroids = kmeans.cluster_centers_.astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = (
        np.sort(rng.choice(n, temperature_images, replace=False))
        if n > temperature_images
        else np.arange(n)
    )
    t, achieved = choose_temperature(
        squared_distances(features[sample], centroids), target_max_probability
    )
    return TeacherClusters(
        centroids=centroids,
        temperature=t,
        target_max_probability=target_max_probability,
        mean_max_probability=achieved,
        kmeans_seed=seed,
        fit_images=n,
        temperature_images=len(sample),
        backbone_fingerprint=backbone_fingerprint,
    )
