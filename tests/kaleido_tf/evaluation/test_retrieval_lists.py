"""Retrieval candidate lists follow kaleido_fashionbert.md §7.1 and survive a file."""

import dataclasses
import json

import pytest

from kaleido_tf import schema
from kaleido_tf.errors import DataError
from kaleido_tf.evaluation.retrieval_lists import (
    DIRECTIONS,
    RetrievalLists,
    build_retrieval_lists,
)

# (category, sub-category, products, images each). Sub-category sizes chosen so
# that 5 negatives come: all from the sub-category (A/a1, B/b2, C/c1), with a
# category top-up (A/a2: 2 + 3; B/b1: 1 + 4), and from any product (D/d1: 0 + 0 + 5).
GROUPS = (
    ("A", "a1", 8, 3),
    ("A", "a2", 3, 1),
    ("B", "b1", 2, 2),
    ("B", "b2", 10, 4),
    ("C", "c1", 7, 6),
    ("D", "d1", 1, 5),
)
NEGATIVES = 5


def write_products(folder, groups=GROUPS):
    """A prepared folder as far as the lists read it: manifest and product table."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, pid = [], 500
    for category, sub, count, images in groups:
        for _ in range(count):
            rows.append(
                {
                    "product_id": pid,
                    "category": category,
                    "subcategory": sub,
                    "num_images": images,
                    "input_ids": [2, 3],
                }
            )
            pid += 7
    (folder / "products.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": schema.SCHEMA_VERSION,
                "split": "validation",
                "products_file": "products.jsonl",
            }
        )
    )
    return {r["product_id"]: r for r in rows}


@pytest.fixture
def products_dir(tmp_path):
    folder = tmp_path / "validation"
    return folder, write_products(folder)


def expected_sources(product, products):
    """(sub-category, category, any) counts of negatives, worked out directly."""
    same_sub = [
        p
        for p in products.values()
        if p["category"] == product["category"]
        and p["subcategory"] == product["subcategory"]
        and p["product_id"] != product["product_id"]
    ]
    same_cat = [
        p
        for p in products.values()
        if p["category"] == product["category"]
        and p["subcategory"] != product["subcategory"]
    ]
    a = min(NEGATIVES, len(same_sub))
    b = min(NEGATIVES - a, len(same_cat))
    return a, b, NEGATIVES - a - b


def test_lists_follow_the_protocol(products_dir):
    folder, products = products_dir
    n = len(products)
    lists = build_retrieval_lists(folder, num_queries=n, num_negatives=NEGATIVES)
    assert lists.num_queries == n and lists.num_candidates == NEGATIVES + 1
    totals = {d: [0, 0, 0] for d in DIRECTIONS}
    for d in DIRECTIONS:
        queries = lists.queries[d]
        assert sorted(q.product_id for q in queries) == sorted(products)
        for q in queries:
            mine = products[q.product_id]
            labels = [int(p == q.product_id) for p in q.candidate_products]
            assert sum(labels) == 1 and labels[q.positive] == 1
            assert len(set(q.candidate_products)) == NEGATIVES + 1
            negatives = [products[p] for p in q.candidate_products if p != q.product_id]
            sources = (
                sum(
                    p["category"] == mine["category"]
                    and p["subcategory"] == mine["subcategory"]
                    for p in negatives
                ),
                sum(
                    p["category"] == mine["category"]
                    and p["subcategory"] != mine["subcategory"]
                    for p in negatives
                ),
                sum(p["category"] != mine["category"] for p in negatives),
            )
            assert sources == expected_sources(mine, products), q
            for k in range(3):
                totals[d][k] += sources[k]
            if d == "itr":
                # Image query of the product; candidates are product texts.
                pid, pose = q.query_id.split("_")
                assert int(pid) == q.product_id
                assert 1 <= int(pose) <= mine["num_images"]
                assert q.candidate_ids == tuple(map(str, q.candidate_products))
            else:
                assert q.query_id == str(q.product_id)
                for cid, p in zip(q.candidate_ids, q.candidate_products):
                    pid, pose = cid.split("_")
                    assert int(pid) == p
                    assert 1 <= int(pose) <= products[p]["num_images"]
        stored = lists.negative_sources[d]
        assert [stored[s] for s in ("subcategory", "category", "any")] == totals[d]
    # The D/d1 product needs the last-resort top-up, A/a2 and B/b1 the category one.
    assert all(t[1] > 0 and t[2] > 0 for t in totals.values())


def test_positive_position_and_query_choice_vary(products_dir):
    folder, products = products_dir
    lists = build_retrieval_lists(folder, num_queries=12, num_negatives=NEGATIVES)
    positions = {q.positive for d in DIRECTIONS for q in lists.queries[d]}
    assert len(positions) > 1  # shuffled, not always first
    itr = [q.product_id for q in lists.queries["itr"]]
    tir = [q.product_id for q in lists.queries["tir"]]
    assert itr != tir  # each direction draws its own queries


def test_same_seed_same_lists_other_seed_other_lists(products_dir):
    folder, _ = products_dir
    a = build_retrieval_lists(folder, 10, NEGATIVES, seed=3).to_json()
    b = build_retrieval_lists(folder, 10, NEGATIVES, seed=3).to_json()
    c = build_retrieval_lists(folder, 10, NEGATIVES, seed=4).to_json()
    a["source"] = b["source"] = c["source"] = None
    assert a == b
    assert a["queries"] != c["queries"]


def test_file_round_trip_and_data_check(products_dir, tmp_path):
    folder, _ = products_dir
    lists = build_retrieval_lists(folder, 10, NEGATIVES, seed=1)
    path = lists.save(tmp_path / "out" / "lists.json")
    assert RetrievalLists.load(path, folder) == lists
    assert json.loads(path.read_text())["seed"] == 1

    # Same products in another folder (e.g. a grid8 build of the split): accepted.
    twin = tmp_path / "twin"
    write_products(twin)
    assert RetrievalLists.load(path, twin) == lists

    # Other products: refused, with a one-line message naming the fix.
    other = tmp_path / "other"
    write_products(other, GROUPS[:-1] + (("D", "d1", 1, 4),))
    with pytest.raises(DataError, match="other products") as err:
        RetrievalLists.load(path, other)
    assert "\n" not in str(err.value) and "build-lists" in str(err.value)


def test_tampered_or_foreign_files_are_refused(products_dir, tmp_path):
    folder, _ = products_dir
    lists = build_retrieval_lists(folder, 6, NEGATIVES)
    obj = lists.to_json()
    obj["queries"]["tir"][2]["positive"] = (
        obj["queries"]["tir"][2]["positive"] + 1
    ) % 6
    with pytest.raises(DataError, match="positive is not the query's product"):
        RetrievalLists.from_json(obj)
    short = dataclasses.replace(
        lists.queries["itr"][0],
        candidate_ids=lists.queries["itr"][0].candidate_ids[:-1],
    )
    broken = dataclasses.replace(
        lists, queries={**lists.queries, "itr": (short, *lists.queries["itr"][1:])}
    )
    with pytest.raises(DataError, match="candidates"):
        broken.check()
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="build-lists"):
        RetrievalLists.load(tmp_path / "x.json")
    with pytest.raises(DataError, match="cannot read"):
        RetrievalLists.load(tmp_path / "missing.json")


def test_too_few_products(products_dir):
    folder, products = products_dir
    n = len(products)
    with pytest.raises(DataError, match=f"at least {n + 1}") as err:
        build_retrieval_lists(folder, num_queries=2, num_negatives=n)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=f"--queries {n}"):
        build_retrieval_lists(folder, num_queries=n + 1, num_negatives=NEGATIVES)
    with pytest.raises(ValueError):
        build_retrieval_lists(folder, num_queries=0)
