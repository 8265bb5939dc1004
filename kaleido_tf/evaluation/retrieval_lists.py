"""Fashion-Gen retrieval candidate lists (ITR and TIR), built once into a file.

Every model and every system is scored on the same lists (STYLE.md §2.9 pitfall 7),
so the lists are drawn once, with a fixed seed, from a prepared validation folder and
saved as JSON. A list file records which products it was drawn from (a fingerprint of
the folder's product table), so scoring refuses a folder with other products. The
fingerprint covers only product ids, categories and image counts: a kaleido build and
a FashionBERT grid8 build of the same split share one list file.

Reference: kaleido_fashionbert.md §7.1, §3.6 (FashionBERT's protocol), §4.7 (ITR,
TIR), K-Q21; prior_art.md §1.7.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.errors import DataError

# Image to text (image query, text candidates) and text to image. FashionBERT calls
# them "Image-to-Text" / "Text-to-Image" (kaleido_fashionbert.md §2.3).
DIRECTIONS = ("itr", "tir")
FORMAT = "kaleido_tf.retrieval_lists"
FORMAT_VERSION = 1
# Where negatives come from, in top-up order (counted per direction in the file).
NEGATIVE_SOURCES = ("subcategory", "category", "any")
_SALT = 0x52455452  # "RETR": separates these draws from other seeded users of seed


def image_id(product_id: int, pose: int) -> str:
    """The record ``image_id`` of a product's view (``'<product id>_<pose>'``,
    pose 1-based), as ``kaleido-tf prepare`` writes it (``schema.py``)."""
    return f"{int(product_id)}_{int(pose)}"


@dataclasses.dataclass(frozen=True)
class ProductGroups:
    """The products a list is drawn from, sorted by product id.

    Attributes:
        product_ids: int64 [N]. Product ids, ascending.
        category: Category name of each product.
        subcategory: Sub-category name of each product.
        num_images: int64 [N]. Image records of each product (>= 1).
    """

    product_ids: np.ndarray
    category: tuple[str, ...]
    subcategory: tuple[str, ...]
    num_images: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> ProductGroups:
        """From ``products.jsonl`` rows; products without images are left out."""
        kept = sorted(
            (r for r in rows if int(r["num_images"]) >= 1),
            key=lambda r: int(r["product_id"]),
        )
        return cls(
            product_ids=np.asarray([int(r["product_id"]) for r in kept], np.int64),
            category=tuple(str(r["category"]) for r in kept),
            subcategory=tuple(str(r["subcategory"]) for r in kept),
            num_images=np.asarray([int(r["num_images"]) for r in kept], np.int64),
        )

    @classmethod
    def load(cls, data_dir: str | Path) -> ProductGroups:
        """Reads ``products.jsonl`` of a prepared folder.

        Raises:
            DataError: Not a finished ``kaleido-tf prepare`` folder, or an
                unreadable product table.
        """
        from kaleido_tf.manifest import read_manifest

        data_dir = Path(data_dir)
        manifest = read_manifest(data_dir)
        path = data_dir / manifest.get("products_file", "products.jsonl")
        try:
            lines = path.read_text("utf-8").splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(
                f"{path}: cannot read the product table ({e}): rerun "
                "`kaleido-tf prepare`"
            ) from None
        try:
            return cls.from_rows(rows)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: a product row lacks {e}") from None

    @property
    def num_products(self) -> int:
        """N."""
        return len(self.product_ids)

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every product's id, categories and image count."""
        h = hashlib.sha256()
        for i in range(self.num_products):
            line = (
                f"{self.product_ids[i]}\t{self.category[i]}\t{self.subcategory[i]}\t"
                f"{self.num_images[i]}\n"
            )
            h.update(line.encode("utf-8"))
        return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class RetrievalQuery:
    """One query and its candidates.

    Attributes:
        query_id: ITR: the query image's ``image_id``; TIR: the query product id
            (its text), as a string.
        product_id: The query's product.
        candidate_ids: ITR: product ids (their texts) as strings; TIR: image ids.
        candidate_products: The product of each candidate.
        positive: Index in ``candidate_ids`` of the ground truth (the candidate of
            ``product_id``); the others are negatives.
    """

    query_id: str
    product_id: int
    candidate_ids: tuple[str, ...]
    candidate_products: tuple[int, ...]
    positive: int


@dataclasses.dataclass(frozen=True)
class RetrievalPair:
    """One (text, image) pair to score; ``label`` 1 = match (``ITM_MATCH``)."""

    query_index: int
    candidate_index: int
    text_product: int
    image_id: str
    label: int


@dataclasses.dataclass(frozen=True)
class RetrievalLists:
    """The ITR and TIR candidate lists of one data folder.

    Attributes:
        queries: Direction ("itr", "tir") -> its queries, in drawing order.
        seed: The seed they were drawn with.
        num_negatives: Negatives per query (100 in the paper).
        products_fingerprint: ``ProductGroups.fingerprint()`` of the folder.
        source: Where they were drawn from (folder, split, source file), for
            people; never checked.
        negative_sources: Direction -> how many negatives came from the query's
            sub-category, its category (top-up) and any other product.
    """

    queries: dict[str, tuple[RetrievalQuery, ...]]
    seed: int
    num_negatives: int
    products_fingerprint: str
    source: dict[str, Any]
    negative_sources: dict[str, dict[str, int]]

    @property
    def num_queries(self) -> int:
        """Queries per direction."""
        return len(self.queries[DIRECTIONS[0]])

    @property
    def num_candidates(self) -> int:
        """Candidates per query (1 + ``num_negatives``)."""
        return 1 + self.num_negatives

    def pairs(self, direction: str) -> Iterator[RetrievalPair]:
        """Every (query, candidate) pair of a direction, query by query.

        ITR pairs the query image with each candidate product's text; TIR pairs
        the query product's text with each candidate image.
        """
        for q, query in enumerate(self.queries[direction]):
            for c, cid in enumerate(query.candidate_ids):
                label = int(c == query.positive)
                if direction == "itr":
                    yield RetrievalPair(
                        q, c, query.candidate_products[c], query.query_id, label
                    )
                else:
                    yield RetrievalPair(q, c, query.product_id, cid, label)

    def to_json(self) -> dict[str, Any]:
        """The file's content (see ``save``)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "protocol": (
                "per direction: distinct query products; 1 positive + negatives "
                "from the query's sub-category, topped up from its category, then "
                "from any product (kaleido_fashionbert.md §7.1)"
            ),
            "seed": self.seed,
            "num_queries": self.num_queries,
            "num_negatives": self.num_negatives,
            "products_fingerprint": self.products_fingerprint,
            "source": self.source,
            "negative_sources": self.negative_sources,
            "queries": {
                d: [
                    {
                        "query_id": q.query_id,
                        "product_id": q.product_id,
                        "candidate_ids": list(q.candidate_ids),
                        "candidate_products": list(q.candidate_products),
                        "positive": q.positive,
                    }
                    for q in self.queries[d]
                ]
                for d in DIRECTIONS
            },
        }

    def save(self, path: str | Path) -> Path:
        """Writes the lists as JSON (atomically) and returns the path."""
        path = Path(path)
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "lists") -> RetrievalLists:
        """Parses ``to_json`` output and checks its structure.

        Raises:
            DataError: Another format or version, or inconsistent lists.
        """
        if obj.get("format") != FORMAT or obj.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{where} is not a retrieval list file of version {FORMAT_VERSION}: "
                "build one with `kaleido-tf evaluate build-lists`"
            )
        try:
            queries = {
                d: tuple(
                    RetrievalQuery(
                        query_id=str(q["query_id"]),
                        product_id=int(q["product_id"]),
                        candidate_ids=tuple(str(c) for c in q["candidate_ids"]),
                        candidate_products=tuple(
                            int(c) for c in q["candidate_products"]
                        ),
                        positive=int(q["positive"]),
                    )
                    for q in obj["queries"][d]
                )
                for d in DIRECTIONS
            }
            lists = cls(
                queries=queries,
                seed=int(obj["seed"]),
                num_negatives=int(obj["num_negatives"]),
                products_fingerprint=str(obj["products_fingerprint"]),
                source=dict(obj.get("source", {})),
                negative_sources=dict(obj.get("negative_sources", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: malformed retrieval lists ({e!r})") from None
        lists.check(where)
        return lists

    @classmethod
    def load(
        cls, path: str | Path, data_dir: str | Path | None = None
    ) -> RetrievalLists:
        """Reads a list file; with ``data_dir``, checks it was built from that folder.

        Raises:
            DataError: Missing or malformed file, or lists drawn from other products
                than ``data_dir`` holds.
        """
        path = Path(path)
        try:
            obj = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(
                f"{path}: cannot read retrieval lists ({e}): build them with "
                "`kaleido-tf evaluate build-lists`"
            ) from None
        lists = cls.from_json(obj, str(path))
        if data_dir is not None:
            found = ProductGroups.load(data_dir).fingerprint()
            if found != lists.products_fingerprint:
                raise DataError(
                    f"{path} was built from other products (fingerprint "
                    f"{lists.products_fingerprint}) than {data_dir} holds ({found}): "
                    "score with the folder the lists were built from, or rebuild "
                    "them with `kaleido-tf evaluate build-lists`"
                )
        return lists

    def check(self, where: str = "lists") -> None:
        """Checks the protocol's invariants (pitfall 7) before anything is scored.

        Raises:
            DataError: A direction with another number of queries, a query with
                another number of candidates, a positive that is not the query's
                product, a repeated query product or candidate product.
        """
        for d in DIRECTIONS:
            qs = self.queries[d]
            if len(qs) != self.num_queries:
                raise DataError(
                    f"{where}: {d} has {len(qs)} queries, expected {self.num_queries}"
                )
            if len({q.product_id for q in qs}) != len(qs):
                raise DataError(f"{where}: {d} repeats a query product")
            for q in qs:
                n = len(q.candidate_ids)
                if n != self.num_candidates or len(q.candidate_products) != n:
                    raise DataError(
                        f"{where}: {d} query {q.query_id} has {n} candidates, "
                        f"expected {self.num_candidates}"
                    )
                if not 0 <= q.positive < n:
                    raise DataError(f"{where}: {d} query {q.query_id}: bad positive")
                if q.candidate_products[q.positive] != q.product_id:
                    raise DataError(
                        f"{where}: {d} query {q.query_id}: the positive is not "
                        "the query's product"
                    )
                if len(set(q.candidate_products)) != n:
                    raise DataError(
                        f"{where}: {d} query {q.query_id} repeats a candidate product"
                    )


def build_retrieval_lists(
    data_dir: str | Path,
    num_queries: int = 1000,
    num_negatives: int = 100,
    seed: int = 0,
) -> RetrievalLists:
    """Draws the ITR and TIR candidate lists of a prepared (validation) folder.

    Per direction, independently (each from its own stream of ``seed``):

    1. ``num_queries`` distinct query products, uniformly without replacement.
    2. Negatives for a query product P: ``num_negatives`` distinct other products,
       uniformly from P's (category, sub-category); if it has too few, all of
       them, topped up uniformly from P's category's other sub-categories; if
       still too few, topped up uniformly from every other product. The counts
       of each source are stored in the file (``negative_sources``).
    3. ITR: the query is one random image of P; the candidates are the texts of
       P and of the negatives. TIR: the query is P's text; the candidates are one
       random image of P and one random image of each negative.
    4. The candidates are shuffled; ``positive`` says where P's candidate went.

    The draws depend only on ``seed`` and the product table (sorted by product
    id), never on file order. Image ids are ``'<product id>_<pose>'`` with pose in
    1..num_images, as ``prepare`` writes them; scoring checks that each exists.

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder (the validation split).
        num_queries: Queries per direction (1,000 in the papers).
        num_negatives: Negatives per query (100 in the papers).
        seed: Seed of every draw.

    Returns:
        The lists; ``save`` them so that every model is scored on them.

    Raises:
        DataError: Fewer products than ``num_queries`` or ``num_negatives + 1``.
        ValueError: ``num_queries`` or ``num_negatives`` below 1.

    Reference: kaleido_fashionbert.md §7.1; FashionBERT §4.2 ("1,000 unique
    description queries and 1,000 unique image queries ... randomly-sampled 100
    images (or description) from other products"); [C-F] README (negatives
    "under its sub-category").

    Deviation: negatives are grouped by the (category, sub-category) pair, as in
    ``inputs/negatives.py``, and the last-resort top-up from any product is ours
    (the spec only names the category top-up).
    """
    if num_queries < 1 or num_negatives < 1:
        raise ValueError(
            f"num_queries and num_negatives must be >= 1, got {num_queries} and "
            f"{num_negatives}"
        )
    from kaleido_tf.manifest import read_manifest

    groups = ProductGroups.load(data_dir)
    n = groups.num_products
    if n < num_negatives + 1:
        raise DataError(
            f"{data_dir} has {n} products with images; {num_negatives} negatives "
            f"per query need at least {num_negatives + 1}: use --negatives "
            f"{max(n - 1, 1)} or fewer (the paper's protocol needs 101)"
        )
    if n < num_queries:
        raise DataError(
            f"{data_dir} has {n} products with images, fewer than the "
            f"{num_queries} distinct queries asked for: use --queries {n} or fewer"
        )
    manifest = read_manifest(data_dir)
    queries, sources = {}, {}
    for k, direction in enumerate(DIRECTIONS):
        rng = np.random.default_rng([seed, _SALT, k])
        queries[direction], sources[direction] = _draw_direction(
            groups, direction, num_queries, num_negatives, rng
        )
    return RetrievalLists(
        queries=queries,
        seed=int(seed),
        num_negatives=int(num_negatives),
        products_fingerprint=groups.fingerprint(),
        source={
            "data_dir": str(Path(data_dir).resolve()),
            "split": manifest.get("split"),
            "source": manifest.get("source"),
            "products": n,
        },
        negative_sources=sources,
    )


def _draw_direction(
    groups: ProductGroups,
    direction: str,
    num_queries: int,
    num_negatives: int,
    rng: np.random.Generator,
) -> tuple[tuple[RetrievalQuery, ...], dict[str, int]]:
    n = groups.num_products
    category = np.asarray(groups.category)
    subcategory = np.asarray(groups.subcategory)
    counts = dict.fromkeys(NEGATIVE_SOURCES, 0)
    out = []
    for p in rng.choice(n, size=num_queries, replace=False):
        same_cat = category == category[p]
        pools = (
            np.flatnonzero(same_cat & (subcategory == subcategory[p])),
            np.flatnonzero(same_cat & (subcategory != subcategory[p])),
            np.flatnonzero(~same_cat),
        )
        negatives = []
        for name, pool in zip(NEGATIVE_SOURCES, pools):
            pool = pool[pool != p]
            need = num_negatives - len(negatives)
            if need == 0:
                break
            take = pool if len(pool) <= need else rng.choice(pool, need, replace=False)
            negatives.extend(int(i) for i in take)
            counts[name] += len(take)
        members = [int(p), *negatives]
        order = rng.permutation(len(members))
        members = [members[i] for i in order]
        positive = int(np.flatnonzero(order == 0)[0])
        pids = [int(groups.product_ids[i]) for i in members]
        pid = int(groups.product_ids[p])
        if direction == "itr":
            pose = int(rng.integers(groups.num_images[p])) + 1
            query_id, candidate_ids = image_id(pid, pose), [str(i) for i in pids]
        else:
            poses = [int(rng.integers(groups.num_images[i])) + 1 for i in members]
            query_id = str(pid)
            candidate_ids = [image_id(i, pose) for i, pose in zip(pids, poses)]
        out.append(
            RetrievalQuery(query_id, pid, tuple(candidate_ids), tuple(pids), positive)
        )
    return tuple(out), counts
