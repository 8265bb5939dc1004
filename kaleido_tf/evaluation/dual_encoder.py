"""CommerceMM's dual-encoder retrieval: embed every item once, rank by dot product.

A cross-encoder (Kaleido-BERT, ImageBERT, InterBERT) runs its transformer once per
(query, candidate) pair; CommerceMM scores a pair by the dot product of two
L2-normalised 256-d embeddings (spec §4.3 head table): ``f`` of the text encoder's
[CLS] (the first K layers, before fusion), ``g`` of the image encoder's [CLS], and
``h`` of the fused ``w_cls`` (a product page: text + image through the whole
model). Every distinct text and image is embedded once, in batches, and every
score is a dot product of cached embeddings: the cost grows with the number of
items, not with the number of pairs.

Two protocols (spec §4.8, §5.2):

- **P-FG lists** (``score_lists``): the saved Fashion-Gen candidate lists that the
  cross-encoders are scored on (``retrieval_lists.py``), ITR (image query vs 101
  product texts, ``g·f``) and TIR (text query vs 101 images, ``f·g``), from a
  ``prepare-pixels`` folder whose products the lists were drawn from (images
  matched by ``image_id``); ``list_metrics`` gives the rank@K that ``evaluate
  retrieval`` and ``evaluate compare`` report for every system.
- **P-DUAL full pool** (``full_pool_retrieval``): R@1/5/10 against every target
  of the evaluation set, de-duplicated, for T2I, I2T, Q2P, I2P and I2Pⁱ built from
  a pixel folder and its ``prepare-omni`` folder, and their meta average.

Reference: CommerceMM (Yu et al., KDD 2022) §4.2 (downstream tasks), §4.3
(Fashion-Gen); spec imagebert_interbert_commercemm.md §4.8 (downstream tasks
table, FashionGen transfer), §4.10 #9, §4.11 #19, §5.2 (P-FG, P-DUAL).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.evaluation.ranking_metrics import RANKS, positive_ranks, rank_at_k
from kaleido_tf.evaluation.retrieval_lists import DIRECTIONS, RetrievalLists

# The full-pool tasks (spec §4.8 downstream table): (query kind, candidate kind).
# text = f(product text), image = g(main image), multimodal = h(product text +
# main image), title = f(title query), view = g(alternate view image).
FULL_POOL_TASKS = {
    "t2i": ("text", "image"),
    "i2t": ("image", "text"),
    "q2p": ("title", "multimodal"),
    "i2p": ("view", "multimodal"),
    "i2p_image": ("view", "image"),
}


class DualEncoder:
    """Batched ``f``, ``g`` and ``h`` embeddings of a CommerceMM model.

    Text and image embeddings run only the part of the model they need (the text
    embedding and the K text layers; the image encoder); ``products`` runs the
    whole model (``CommerceMMModel.embeddings``). Every call is in inference
    mode (no dropout, batch-norm statistics frozen).

    Args:
        model: A built ``CommerceMMModel`` (anything with ``embeddings``,
            ``encoder`` and the ``text_projection`` / ``image_projection`` heads).
        num_text_layers: K (None: the model's configured split).
        use_tf_function: Trace the three forward passes with ``tf.function``.

    Raises:
        ConfigError: ``model`` is not a dual encoder.

    Reference: spec imagebert_interbert_commercemm.md §4.3 (f, g, h), §4.8.
    """

    def __init__(self, model, num_text_layers: int | None = None, use_tf_function=True):
        import tensorflow as tf

        if not hasattr(model, "embeddings") or not hasattr(model, "encoder"):
            raise ConfigError(
                f"{type(model).__name__} has no dual-encoder embeddings: give a "
                "CommerceMM pretraining run (a cross-encoder is scored with its ITM "
                "head instead)"
            )
        self.model = model
        enc = model.encoder
        self.num_text_layers = (
            enc.num_text_layers if num_text_layers is None else int(num_text_layers)
        )
        k = self.num_text_layers

        def project(head, x):
            y = tf.cast(model.heads[head](x), tf.float32)
            return tf.math.l2_normalize(y, axis=-1)

        def texts(input_ids, input_mask):
            states = enc.embed_text(input_ids, training=False)
            states = enc.encode_text(states, input_mask, k, training=False)
            return project("text_projection", states[:, 0])

        def images(pixels):
            return project("image_projection", enc.encode_image(pixels, False)[:, 0])

        def products(input_ids, input_mask, pixels):
            return model.embeddings(input_ids, input_mask, pixels, k, training=False)

        wrap = tf.function(reduce_retracing=True) if use_tf_function else (lambda f: f)
        self._texts, self._images, self._products = map(wrap, (texts, images, products))

    def texts(self, input_ids: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
        """``f``: float32 [B, E] of int32 [B, T] ids and masks (1 = real token)."""
        return self._texts(_int32(input_ids), _int32(input_mask)).numpy()

    def images(self, pixels: np.ndarray) -> np.ndarray:
        """``g``: float32 [B, E] of float32 [B, S, S, 3] RGB pixels in [0, 255]."""
        return self._images(np.asarray(pixels, np.float32)).numpy()

    def products(
        self, input_ids: np.ndarray, input_mask: np.ndarray, pixels: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``text`` (f), ``image`` (g) and ``multimodal`` (h) of (text, image)
        rows: float32 [B, E] each."""
        out = self._products(
            _int32(input_ids), _int32(input_mask), np.asarray(pixels, np.float32)
        )
        return {k: v.numpy() for k, v in out.items()}


def _int32(x) -> np.ndarray:
    return np.asarray(x, np.int32)


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="item",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def pixel_folder(data_dir: str | Path) -> tuple[dict[str, Any], Any]:
    """The manifest and product table of a ``prepare-pixels`` folder.

    Raises:
        DataError: Not a finished pixel folder.
    """
    from kaleido_tf import schema
    from kaleido_tf.inputs.product_table import ProductTable
    from kaleido_tf.manifest import read_manifest

    manifest = read_manifest(data_dir)
    if not isinstance(schema.get_layout(manifest["layout"]), schema.PixelLayout):
        raise DataError(
            f"{data_dir} holds {manifest['layout']!r} records: the dual encoder reads "
            "pixels, give a `kaleido-tf prepare-pixels` folder of the same products"
        )
    return manifest, ProductTable.load(data_dir, manifest)


def pixel_batches(
    data_dir: str | Path, image_ids: Sequence[str], batch_size: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """The images ``image_ids`` of a pixel folder, in file order, batched.

    Other records are dropped after parsing their id, so only the listed JPEGs
    are decoded; at most one batch of pixels is held.

    Args:
        data_dir: A ``prepare-pixels`` folder.
        image_ids: The ``image_id`` values to read (each once).
        batch_size: Images per batch (the last may be smaller).

    Yields:
        ``(ids, pixels)``: the batch's image ids and float32 [b, S, S, 3] RGB in
        [0, 255] (the values the image encoder trained on,
        ``commerce_mm_pipeline.pixels_0_255``).

    Raises:
        DataError: A listed id has no record, or a shard is missing.
    """
    import tensorflow as tf

    from kaleido_tf.inputs.commerce_mm_pipeline import pixels_0_255
    from kaleido_tf.manifest import read_manifest

    manifest = read_manifest(data_dir)
    files = [str(Path(data_dir) / s["file"]) for s in manifest["shards"]]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(
            f"{data_dir}: shard {missing[0]} listed in manifest.json is missing: "
            "rerun `kaleido-tf prepare-pixels`"
        )
    size = int(manifest["image_size"])
    wanted_ids = sorted(set(image_ids))
    ids = tf.constant(wanted_ids or [""], tf.string)
    wanted = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(ids, tf.ones_like(ids, tf.int32)), 0
    )
    id_only = {"image_id": tf.io.FixedLenFeature([], tf.string)}
    id_and_jpeg = {**id_only, "image_jpeg": tf.io.FixedLenFeature([], tf.string)}

    def listed(serialized):
        parsed = tf.io.parse_single_example(serialized, id_only)
        return wanted.lookup(parsed["image_id"]) > 0

    def decode(serialized):
        parsed = tf.io.parse_single_example(serialized, id_and_jpeg)
        return parsed["image_id"], pixels_0_255(parsed["image_jpeg"], size)

    ds = tf.data.TFRecordDataset(files).filter(listed)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    seen: set[str] = set()
    for raw_ids, pixels in ds.batch(batch_size).prefetch(2).as_numpy_iterator():
        names = [i.decode("utf-8") for i in raw_ids]
        keep = [j for j, name in enumerate(names) if name not in seen]
        seen.update(names)
        if keep:
            yield [names[j] for j in keep], pixels[keep]
    absent = sorted(set(wanted_ids) - seen)
    if absent:
        raise DataError(
            f"{data_dir} lacks {len(absent)} image records that are needed (e.g. "
            f"{absent[:3]}): give the pixel folder of the same products"
        )


def embed_images(
    encoder: DualEncoder,
    data_dir: str | Path,
    image_ids: Sequence[str],
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[dict[str, int], np.ndarray]:
    """``g`` of every distinct image of ``image_ids``, each embedded once.

    Returns:
        ``(row_of, embeddings)``: image id -> row, and float32 [N, E].
    """
    distinct = sorted(set(image_ids))
    row_of: dict[str, int] = {}
    chunks = []
    with _bar(len(distinct), "embed images", progress) as bar:
        for names, pixels in pixel_batches(data_dir, distinct, batch_size):
            for name in names:
                row_of[name] = len(row_of)
            chunks.append(encoder.images(pixels))
            bar.update(len(names))
    return row_of, _stack(chunks, encoder)


def embed_texts(
    encoder: DualEncoder,
    input_ids: np.ndarray,
    pad_id: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "embed texts",
) -> np.ndarray:
    """``f`` of every row of int [N, T] ids (mask = ids != ``pad_id``): [N, E]."""
    input_ids = np.asarray(input_ids)
    chunks = []
    with _bar(len(input_ids), desc, progress) as bar:
        for start in range(0, len(input_ids), batch_size):
            ids = input_ids[start : start + batch_size]
            chunks.append(encoder.texts(ids, ids != pad_id))
            bar.update(len(ids))
    return _stack(chunks, encoder)


def _stack(chunks: list[np.ndarray], encoder: DualEncoder) -> np.ndarray:
    if chunks:
        return np.concatenate(chunks).astype(np.float32)
    dim = encoder.model.heads["text_projection"].units
    return np.zeros([0, dim], np.float32)


def score_lists(
    encoder: DualEncoder,
    data_dir: str | Path,
    lists: RetrievalLists,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Dot-product scores of every (query, candidate) pair of the lists.

    ITR: ``g(query image) · f(candidate product text)``; TIR: ``f(query product
    text) · g(candidate image)``. The texts are the products' ``products.jsonl``
    ids; images are the records of ``data_dir`` with the listed ``image_id``.
    Each distinct product text and each distinct image of both directions is
    embedded exactly once.

    Args:
        encoder: The model's DualEncoder.
        data_dir: The ``prepare-pixels`` folder of the products the lists were
            drawn from (``RetrievalLists.load(path, data_dir)`` checks it).
        lists: The candidate lists.
        batch_size: Items per forward pass.
        progress: tqdm bars on stderr.

    Returns:
        ``(scores, counts)``: direction -> float32 [Q, C] (candidates in list
        order); ``texts``, ``images`` (distinct items embedded) and ``pairs``
        (scores computed).

    Raises:
        DataError: A listed product or image the folder lacks, or texts longer
            than the model's position table.
    """
    lists.check()
    _, table = pixel_folder(data_dir)
    max_length = encoder.model.encoder.max_sequence_length
    if table.max_seq_length > max_length:
        raise DataError(
            f"{data_dir}: texts are {table.max_seq_length} tokens, the model takes "
            f"at most {max_length}: prepare the data with text.max_seq_length <= "
            f"{max_length}"
        )
    row_of = {int(p): i for i, p in enumerate(table.product_ids)}
    products = sorted(
        {p for q in lists.queries["itr"] for p in q.candidate_products}
        | {q.product_id for q in lists.queries["tir"]}
    )
    absent = [p for p in products if p not in row_of]
    if absent:
        raise DataError(
            f"{data_dir}: products {absent[:3]} of the lists are not in "
            "products.jsonl: score with the folder the lists were built from"
        )
    text_row = {p: i for i, p in enumerate(products)}
    texts = embed_texts(
        encoder,
        table.input_ids[[row_of[p] for p in products]],
        table.pad_id,
        batch_size,
        progress,
    )
    image_ids = [q.query_id for q in lists.queries["itr"]] + [
        c for q in lists.queries["tir"] for c in q.candidate_ids
    ]
    image_row, images = embed_images(encoder, data_dir, image_ids, batch_size, progress)
    itr_query = images[[image_row[q.query_id] for q in lists.queries["itr"]]]
    itr_cands = texts[
        [[text_row[p] for p in q.candidate_products] for q in lists.queries["itr"]]
    ]  # [Q, C, E]
    tir_query = texts[[text_row[q.product_id] for q in lists.queries["tir"]]]
    tir_cands = images[
        [[image_row[c] for c in q.candidate_ids] for q in lists.queries["tir"]]
    ]
    scores = {
        "itr": np.einsum("qe,qce->qc", itr_query, itr_cands),
        "tir": np.einsum("qe,qce->qc", tir_query, tir_cands),
    }
    counts = {
        "texts": len(products),
        "images": len(image_row),
        "pairs": sum(int(s.size) for s in scores.values()),
    }
    return scores, counts


def list_metrics(scores: np.ndarray, positives: Sequence[int]) -> dict[str, Any]:
    """Rank@1/5/10 (fractions), mean rank and counts of one direction.

    The keys of ``ranking_metrics.retrieval_metrics`` but ``accuracy``: a dot
    product has no match threshold (FashionBERT's matching accuracy needs
    P(match)). Ties count against the model (``positive_ranks``).

    Args:
        scores: float [Q, C]; higher = better match.
        positives: int [Q]; the ground truth's index in each row.
    """
    scores = np.asarray(scores)
    ranks = positive_ranks(scores, np.asarray(positives))
    out: dict[str, Any] = rank_at_k(ranks)
    out["mean_rank"] = float(np.mean(ranks))
    out["queries"], out["candidates"] = (int(n) for n in scores.shape)
    return out


def lists_results(
    encoder: DualEncoder,
    data_dir: str | Path,
    lists: RetrievalLists,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """``score_lists`` -> ``itr``/``tir`` (``list_metrics``), ``sum_r`` and
    ``items_embedded`` (the structure ``evaluate retrieval`` writes)."""
    from kaleido_tf.evaluation.ranking_metrics import sum_r

    scores, counts = score_lists(encoder, data_dir, lists, batch_size, progress)
    out: dict[str, Any] = {
        d: list_metrics(scores[d], [q.positive for q in lists.queries[d]])
        for d in DIRECTIONS
    }
    out["sum_r"] = sum_r(out["itr"], out["tir"])
    out["items_embedded"] = counts
    return out


@dataclasses.dataclass(frozen=True)
class FullPoolSet:
    """The full-pool evaluation set of a pixel folder and its Omni folder.

    Attributes:
        product_ids: int64 [N]; the de-duplicated targets (the products of the
            Omni tuples), ascending.
        product_input_ids: int32 [N, T]; each product's text (title +
            description as prepared, ``products.jsonl``).
        main_image_ids: The ``image_id`` of each product's main view (the
            tuples' target image).
        title_input_ids: int32 [Q_t, T]; the ``title_to_product`` source texts.
        title_products: int64 [Q_t]; the row in ``product_ids`` of each title.
        view_image_ids: The ``view_to_product`` source images (alternate views).
        view_products: int64 [Q_v]; the row of each view's product.
        pad_id: The padding id of both folders' texts.
    """

    product_ids: np.ndarray
    product_input_ids: np.ndarray
    main_image_ids: tuple[str, ...]
    title_input_ids: np.ndarray
    title_products: np.ndarray
    view_image_ids: tuple[str, ...]
    view_products: np.ndarray
    pad_id: int

    @classmethod
    def load(cls, pixel_dir: str | Path, omni_dir: str | Path) -> FullPoolSet:
        """Reads the tuples of ``omni_dir`` and the products of ``pixel_dir``.

        Images are the pixel folder's records, matched by ``'<product>_<pose>'``
        (the tuples' ``*_pose_index``); both folders must share the vocabulary,
        the crop and the image size (built from the same Fashion-Gen file).

        Raises:
            DataError: Folders of another kind, or that do not match.
        """
        import tensorflow as tf

        from kaleido_tf import schema
        from kaleido_tf.inputs.parse import parse_record
        from kaleido_tf.manifest import manifest_fields, read_manifest

        pixels, table = pixel_folder(pixel_dir)
        omni = read_manifest(omni_dir)
        if not isinstance(schema.get_layout(omni["layout"]), schema.OmniTupleLayout):
            raise DataError(
                f"{omni_dir} holds {omni['layout']!r} records: give a "
                "`kaleido-tf prepare-omni` folder as --omni"
            )
        for key in ("image_size", "crop"):
            if pixels.get(key) != omni.get(key):
                raise DataError(
                    f"{pixel_dir} and {omni_dir} differ in {key} ({pixels.get(key)} "
                    f"vs {omni.get(key)}): prepare both from the same file and config"
                )
        vocab = [
            (Path(d) / m.get("vocab_file", "vocab.txt")).read_bytes()
            for d, m in ((pixel_dir, pixels), (omni_dir, omni))
        ]
        if vocab[0] != vocab[1]:
            raise DataError(
                f"{omni_dir} has another vocabulary than {pixel_dir}: build it with "
                f"`kaleido-tf prepare-omni --vocab {Path(pixel_dir) / 'vocab.txt'}`"
            )
        keys = (
            "kind",
            "product_id",
            "src_pose_index",
            "src_input_ids",
            "tgt_pose_index",
        )
        fields = {k: v for k, v in manifest_fields(omni).items() if k in keys}
        files = [str(Path(omni_dir) / s["file"]) for s in omni["shards"]]
        ds = tf.data.TFRecordDataset(files).map(lambda s: parse_record(s, fields))
        main_pose: dict[int, int] = {}
        titles, title_pid, views, view_pid = [], [], [], []
        for t in ds.as_numpy_iterator():
            pid = int(t["product_id"])
            main_pose.setdefault(pid, int(t["tgt_pose_index"]))
            kind = schema.OMNI_KINDS[int(t["kind"])]
            if kind == "title_to_product":
                titles.append(np.asarray(t["src_input_ids"], np.int32))
                title_pid.append(pid)
            elif kind == "view_to_product":
                views.append(f"{pid}_{int(t['src_pose_index'])}")
                view_pid.append(pid)
        if not main_pose:
            raise DataError(f"{omni_dir}: no Omni tuples")
        row_of = {int(p): i for i, p in enumerate(table.product_ids)}
        product_ids = np.asarray(sorted(main_pose), np.int64)
        absent = [int(p) for p in product_ids if int(p) not in row_of]
        if absent:
            raise DataError(
                f"{pixel_dir} lacks products {absent[:3]} of {omni_dir}: give the "
                "pixel folder of the same split"
            )
        index = {int(p): i for i, p in enumerate(product_ids)}
        t = table.max_seq_length
        title_ids = np.zeros([len(titles), t], np.int32)
        for i, ids in enumerate(titles):
            n = min(len(ids), t)
            title_ids[i, :n] = ids[:n]
        return cls(
            product_ids=product_ids,
            product_input_ids=table.input_ids[[row_of[int(p)] for p in product_ids]],
            main_image_ids=tuple(f"{p}_{main_pose[int(p)]}" for p in product_ids),
            title_input_ids=title_ids,
            title_products=np.asarray([index[p] for p in title_pid], np.int64),
            view_image_ids=tuple(views),
            view_products=np.asarray([index[p] for p in view_pid], np.int64),
            pad_id=int(table.pad_id),
        )


def full_pool_metrics(
    embeddings: dict[str, np.ndarray], positives: dict[str, np.ndarray]
) -> dict[str, Any]:
    """R@1/5/10 of every full-pool task whose queries exist, and the meta average.

    Args:
        embeddings: Kind -> float [n, E]: ``text``, ``image``, ``multimodal``
            (one row per product, the pool), ``title`` and ``view`` (queries).
        positives: ``title`` and ``view`` -> int [n], each query's product row;
            ``text`` / ``image`` queries are the products themselves.

    Returns:
        Task (``FULL_POOL_TASKS``) -> ``list_metrics`` of its score matrix
        (queries x the whole de-duplicated pool), for tasks with >= 1 query;
        ``meta_average``: the mean R@1 over those tasks (a fraction; the paper's
        Meta Avg. also averages CC and MPC, which are not retrieval tasks);
        ``skipped``: tasks without queries.
    """
    out: dict[str, Any] = {}
    skipped = []
    for task, (query, pool) in FULL_POOL_TASKS.items():
        q = np.asarray(embeddings[query], np.float64)
        if len(q) == 0:
            skipped.append(task)
            continue
        truth = positives.get(query, np.arange(len(q)))
        out[task] = list_metrics(q @ np.asarray(embeddings[pool], np.float64).T, truth)
    if len(out) == 0:
        raise DataError("no full-pool task has a query")
    out["meta_average"] = float(np.mean([out[t]["rank@1"] for t in out]))
    out["skipped"] = skipped
    return out


def full_pool_retrieval(
    encoder: DualEncoder,
    pixel_dir: str | Path,
    data: FullPoolSet,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Embeds the products, titles and views of ``data`` once; ``full_pool_metrics``.

    Products run through the whole model once (``f``, ``g`` and ``h`` from one
    pass over (text, main image)); titles through the text encoder; view images
    through the image encoder.

    Returns:
        ``full_pool_metrics`` plus ``items_embedded``: ``products``, ``titles``,
        ``views``.
    """
    n = len(data.product_ids)
    if data.product_input_ids.shape[1] > encoder.model.encoder.max_sequence_length:
        raise DataError(
            f"{pixel_dir}: texts are longer than the model's position table"
        )
    main = {}
    row_of_image = {name: i for i, name in enumerate(data.main_image_ids)}
    with _bar(n, "embed products", progress) as bar:
        for names, pixels in pixel_batches(pixel_dir, data.main_image_ids, batch_size):
            rows = [row_of_image[name] for name in names]
            ids = data.product_input_ids[rows]
            out = encoder.products(ids, ids != data.pad_id, pixels)
            for j, row in enumerate(rows):
                main[row] = {k: v[j] for k, v in out.items()}
            bar.update(len(rows))
    embeddings = {
        k: np.stack([main[i][k] for i in range(n)])
        for k in ("text", "image", "multimodal")
    }
    embeddings["title"] = embed_texts(
        encoder, data.title_input_ids, data.pad_id, batch_size, progress, "embed titles"
    )
    if data.view_image_ids:
        row_of, views = embed_images(
            encoder, pixel_dir, data.view_image_ids, batch_size, progress
        )
        embeddings["view"] = views[[row_of[v] for v in data.view_image_ids]]
    else:
        embeddings["view"] = np.zeros([0, embeddings["image"].shape[1]], np.float32)
    out = full_pool_metrics(
        embeddings, {"title": data.title_products, "view": data.view_products}
    )
    out["items_embedded"] = {
        "products": n,
        "titles": len(data.title_input_ids),
        "views": len(set(data.view_image_ids)),
    }
    return out


def print_full_pool(metrics: dict[str, Any]) -> None:
    """A plain-text table of ``full_pool_retrieval`` (percent)."""
    print(f"{'task (%)':<12}" + "".join(f"{f'R@{k}':>8}" for k in RANKS) + "  queries")
    for task in FULL_POOL_TASKS:
        if task not in metrics:
            continue
        m = metrics[task]
        row = "".join(f"{100 * m[f'rank@{k}']:8.2f}" for k in RANKS)
        print(f"{task:<12}{row}  {m['queries']} x {m['candidates']}")
    print(f"meta average R@1 {100 * metrics['meta_average']:.2f}")
