"""``kaleido-tf evaluate``: retrieval lists and scores, EasyTransfer, CR/SUB, FC.

``build-lists`` draws the ITR/TIR candidate lists of a prepared validation folder
once; ``retrieval`` scores them with a run's ITM head and prints Kaleido-BERT's
Table 2 with ours beside the paper's numbers; ``easytransfer`` re-scores a per-pair
file the way EasyTransfer's FashionBERT scripts did; ``category`` and ``captioning``
evaluate fine-tuned runs and print Table 3; ``gallery`` ranks every caption of a
Karpathy split (Flickr30k / MSCOCO) against every image, R@1/5/10 both ways;
``dual`` is CommerceMM's full-pool retrieval (T2I, I2T, Q2P, I2P, I2Pⁱ), and
``retrieval`` scores a CommerceMM run with its dual encoder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError, DataError

SCORES_FILE = "retrieval_scores.tsv"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="evaluation protocols: retrieval lists and scores, CR/SUB, captioning",
    )
    action = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = action.add_parser(
        "build-lists",
        help="draw the ITR and TIR candidate lists of a validation folder, once",
        description=(
            "Per direction: distinct query products, each with 1 positive and N "
            "negatives from its sub-category (topped up from its category, then "
            "from any product), fixed seed. Every model is scored on this file."
        ),
    )
    b.add_argument("--data", required=True, type=Path, help="prepared validation")
    b.add_argument("--out", required=True, type=Path, help="the lists (.json)")
    b.add_argument("--queries", type=int, default=1000, help="per direction (1000)")
    b.add_argument("--negatives", type=int, default=100, help="per query (100)")
    b.add_argument("--seed", type=int, default=0, help="seed of the draws (0)")
    b.add_argument(
        "--overwrite", action="store_true", help="replace an existing list file"
    )
    r = action.add_parser(
        "retrieval",
        help="score the lists with a run's ITM head (CommerceMM: dot products of "
        "its dual encoder); print Table 2",
        description=(
            "Scores every (query, candidate) pair with P(match) of the ITM head on "
            "clean inputs, writes retrieval_scores.tsv, results.json and "
            "results.md into --out, and prints Kaleido-BERT's Table 2 with ours. "
            "A CommerceMM run (a dual encoder) embeds every distinct text and image "
            "once and scores by dot product; --data is then its prepare-pixels "
            "folder of the same products (no per-pair file, no ITM accuracy)."
        ),
    )
    r.add_argument("--model-dir", required=True, type=Path, help="a run folder")
    r.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    r.add_argument("--data", required=True, type=Path, help="prepared validation")
    r.add_argument("--lists", required=True, type=Path, help="from build-lists")
    r.add_argument("--out", required=True, type=Path, help="results folder")
    r.add_argument("--batch-size", type=int, default=64, help="pairs per step (64)")
    r.add_argument(
        "--label", default="ours", help="header of our column in the table (ours)"
    )
    e = action.add_parser(
        "easytransfer",
        help="EasyTransfer's scorer: ACC, Rank@1/5/10/100, AUC per direction",
        description=(
            "Groups pairs by query id, ranks by the raw logit[1] (stable on ties), "
            "as EasyTransfer's fashionbert_utils did. Reads retrieval_scores.tsv "
            "or EasyTransfer's \\x01-separated predict output."
        ),
    )
    e.add_argument("--predictions", required=True, type=Path, help="scores file")
    e.add_argument(
        "--direction",
        choices=("img2txt", "txt2img"),
        help="for EasyTransfer's format: which direction the file holds",
    )
    c = action.add_parser(
        "category",
        help="ACC and macro-F of a category/subcategory run; print Table 3",
        description=(
            "Predicts every (image, own text) pair of --data with a run of "
            "`kaleido-tf finetune --task category|subcategory` (K-Q24)."
        ),
    )
    f = action.add_parser(
        "captioning",
        help="BLEU-4, METEOR, ROUGE-L, CIDEr of a captioning run; print Table 3",
        description=(
            "Captions every image of --data by beam search with a run of "
            "`kaleido-tf finetune --task captioning` and scores the captions "
            "against the product descriptions with the COCO caption toolkit."
        ),
    )
    for parser in (c, f):
        parser.add_argument("--model-dir", required=True, type=Path)
        parser.add_argument("--checkpoint", help="checkpoint prefix (default: latest)")
        parser.add_argument("--data", required=True, type=Path, help="test split")
        parser.add_argument("--out", required=True, type=Path, help="results folder")
        parser.add_argument("--label", default="ours", help="our column's header")
    c.add_argument("--batch-size", type=int, default=64, help="pairs per step (64)")
    f.add_argument("--batch-size", type=int, default=32, help="images per step (32)")
    f.add_argument("--max-images", type=int, help="caption only the first N images")
    g = action.add_parser(
        "gallery",
        help="full-gallery retrieval (Flickr30k / MSCOCO): R@1/5/10 both ways",
        description=(
            "Scores every caption of a Karpathy split against every image with a "
            "run's ITM head (text and visual embeddings cached, pairs batched) and "
            "reports text->image and image->text R@1/5/10; with --folds, the mean "
            "over consecutive 1,000-image folds (MSCOCO 1K). Images are the records "
            "of --data whose image_id is the split's file name without extension."
        ),
    )
    g.add_argument(
        "--run",
        "--model-dir",
        dest="model_dir",
        required=True,
        type=Path,
        help="a run folder",
    )
    g.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    g.add_argument(
        "--data", required=True, type=Path, help="prepared folder (patch or region)"
    )
    g.add_argument(
        "--karpathy",
        required=True,
        type=Path,
        help="dataset_flickr30k.json / dataset_coco.json",
    )
    g.add_argument(
        "--split",
        default="test",
        choices=("test", "val", "restval", "train"),
        help="which split (test)",
    )
    g.add_argument(
        "--folds",
        type=int,
        help="mean over this many 1,000-image folds (MSCOCO 1K: 5); default: one "
        "gallery of the whole split",
    )
    g.add_argument("--batch-size", type=int, default=256, help="pairs per step (256)")
    g.add_argument("--out", type=Path, help="write the metrics to this JSON file")
    m = action.add_parser(
        "compare",
        help="several runs' retrieval results in one Table 2 (same lists only)",
        description=(
            "Reads the results.json of several `evaluate retrieval` runs (e.g. "
            "Kaleido-BERT, FashionBERT and ImageBERT), refuses results scored on "
            "different candidate lists, and writes one Table 2 with a column per "
            "run beside the paper's numbers into --out (results.json, results.md)."
        ),
    )
    m.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="results folders (or results.json files) of `evaluate retrieval`",
    )
    m.add_argument("--out", required=True, type=Path, help="results folder")
    m.add_argument(
        "--labels",
        help="comma-separated column headers, one per result (default: each run's "
        "label, else its system)",
    )
    u = action.add_parser(
        "dual",
        help="CommerceMM full-pool retrieval: T2I, I2T, Q2P, I2P, I2P-image R@K",
        description=(
            "Embeds every product (text + main image, through the whole model), "
            "title query and alternate-view image of --data / --omni once and "
            "ranks each query against all de-duplicated targets by dot product "
            "(CommerceMM's downstream retrieval tasks); prints R@1/5/10 per task "
            "and the meta average of R@1."
        ),
    )
    u.add_argument(
        "--run",
        "--model-dir",
        dest="model_dir",
        required=True,
        type=Path,
        help="a CommerceMM run folder",
    )
    u.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    u.add_argument(
        "--data", required=True, type=Path, help="prepare-pixels folder (products)"
    )
    u.add_argument(
        "--omni", required=True, type=Path, help="its prepare-omni folder (queries)"
    )
    u.add_argument("--batch-size", type=int, default=64, help="items per step (64)")
    u.add_argument("--out", type=Path, help="write the metrics to this JSON file")
    for parser in (b, r, e, c, f, g, m, u):
        parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    if args.action == "build-lists":
        return _build_lists(args)
    if args.action == "retrieval":
        return _retrieval(args)
    if args.action == "category":
        return _category(args)
    if args.action == "captioning":
        return _captioning(args)
    if args.action == "gallery":
        return _gallery(args)
    if args.action == "compare":
        return _compare(args)
    if args.action == "dual":
        return _dual(args)
    return _easytransfer(args)


def _build_lists(args: argparse.Namespace) -> int:
    from kaleido_tf.evaluation.retrieval_lists import build_retrieval_lists

    if args.queries < 1 or args.negatives < 1:
        raise ConfigError(
            f"--queries and --negatives must be >= 1, got {args.queries} and "
            f"{args.negatives}"
        )
    if args.out.exists() and not args.overwrite:
        raise ConfigError(
            f"{args.out} exists: models scored on it would no longer share lists; "
            "pass --overwrite to replace it"
        )
    lists = build_retrieval_lists(args.data, args.queries, args.negatives, args.seed)
    path = lists.save(args.out)
    for d, counts in lists.negative_sources.items():
        log(
            f"{d}: {lists.num_queries} queries x {lists.num_candidates} candidates; "
            "negatives from sub-category / category / any: "
            f"{counts['subcategory']} / {counts['category']} / {counts['any']}"
        )
    print(
        f"wrote {path} (seed {lists.seed}, products fingerprint "
        f"{lists.products_fingerprint})"
    )
    return 0


def _retrieval(args: argparse.Namespace) -> int:
    import kaleido_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.evaluation.easytransfer_scorer import (
        easytransfer_metrics,
        read_pair_scores,
    )
    from kaleido_tf.evaluation.ranking_metrics import retrieval_metrics, sum_r
    from kaleido_tf.evaluation.retrieval import (
        score_retrieval_lists,
        write_pair_scores,
    )
    from kaleido_tf.evaluation.retrieval_lists import DIRECTIONS, RetrievalLists

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    lists = RetrievalLists.load(args.lists, args.data)
    trained = load_trained_model(args.model_dir, args.checkpoint)
    log(
        f"scoring {lists.num_queries} queries x {lists.num_candidates} candidates "
        f"per direction with {trained.checkpoint} (step {trained.step})"
    )
    if trained.config.system == "commerce_mm" or hasattr(trained.model, "embeddings"):
        return _dual_retrieval(args, lists, trained)
    logits = score_retrieval_lists(
        trained.model,
        trained.config,
        args.data,
        lists,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    tsv = write_pair_scores(args.out / SCORES_FILE, lists, logits)
    ours = {
        d: retrieval_metrics(logits[d], [q.positive for q in lists.queries[d]])
        for d in DIRECTIONS
    }
    ours["sum_r"] = sum_r(ours["itr"], ours["tir"])
    ours["easytransfer"] = {
        d: easytransfer_metrics(pairs) for d, pairs in read_pair_scores(tsv).items()
    }
    itr_acc, tir_acc = (100 * ours[d]["accuracy"] for d in DIRECTIONS)
    notes = [
        f"Matching accuracy (FashionBERT Table 1; paper 91.01% / 91.09%): ITR "
        f"{itr_acc:.2f}%, TIR {tir_acc:.2f}%."
    ]
    for d, m in ours["easytransfer"].items():
        notes.append(
            f"EasyTransfer scorer ({d}, raw logit[1], stable ties): "
            + ", ".join(
                f"{k} {m[k]:.4f}"
                for k in ("accuracy", "rank@1", "rank@5", "rank@10", "rank@100")
            )
            + (f", auc {m['auc']:.4f}." if m["auc"] is not None else ".")
        )
    protocol = (
        "Fashion-Gen retrieval, ITM P(match), pessimistic ties "
        "(kaleido_fashionbert.md §7); rank@K and accuracy are fractions"
    )
    return _write_retrieval_results(args, lists, trained, protocol, ours, notes, tsv)


def _write_retrieval_results(
    args: argparse.Namespace, lists, trained, protocol: str, ours, notes, tsv=None
) -> int:
    """Writes ``retrieval``'s results.json / results.md (Table 2 with ``ours`` in
    the last column, ``notes`` below) and prints the table; ``tsv`` is the
    per-pair score file, if any."""
    from kaleido_tf.evaluation import paper_tables

    results = {
        "protocol": protocol,
        "model_dir": str(args.model_dir),
        "checkpoint": trained.checkpoint,
        "step": trained.step,
        "system": trained.config.system,
        "data": str(args.data),
        "lists": str(args.lists),
        "lists_sha256": _sha256(args.lists),
        "label": args.label,
        "lists_seed": lists.seed,
        "products_fingerprint": lists.products_fingerprint,
        "scores_file": None if tsv is None else str(tsv),
        **ours,
    }
    table = paper_tables.table2(ours, args.label)
    paper_tables.write_results(
        args.out,
        results,
        {"Table 2: retrieval on Fashion-Gen": table},
        f"Retrieval: {args.model_dir} ({trained.checkpoint})",
        notes,
    )
    print("Kaleido-BERT Table 2: retrieval on Fashion-Gen (ours in the last column)")
    print(paper_tables.plain_text(table), end="")
    for note in notes:
        print(note)
    written = [args.out / "results.json", args.out / "results.md"]
    print("wrote " + ", ".join(str(p) for p in written + ([tsv] if tsv else [])))
    return 0


def _dual_retrieval(args: argparse.Namespace, lists, trained) -> int:
    """``retrieval`` for a dual encoder (CommerceMM): every distinct text and image
    embedded once, pairs scored by dot product (spec §5.2 P-FG); the same
    results.json keys as a cross-encoder's (no ITM accuracy, no per-pair file)."""
    from kaleido_tf.evaluation.dual_encoder import DualEncoder, lists_results

    ours = lists_results(
        DualEncoder(trained.model),
        args.data,
        lists,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
    )
    embedded = ours["items_embedded"]
    notes = [
        f"Dual encoder: {embedded['texts']} texts and {embedded['images']} images "
        f"embedded once each for {embedded['pairs']} scored pairs."
    ]
    protocol = (
        "Fashion-Gen retrieval, dual encoder: dot product of L2-normalised f "
        "(text encoder [CLS]) and g (image encoder [CLS]), pessimistic ties "
        "(imagebert_interbert_commercemm.md §5.2); rank@K are fractions"
    )
    return _write_retrieval_results(args, lists, trained, protocol, ours, notes)


def _dual(args: argparse.Namespace) -> int:
    import json

    import kaleido_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from kaleido_tf.atomic_files import atomic_write_text
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.evaluation.dual_encoder import (
        DualEncoder,
        FullPoolSet,
        full_pool_retrieval,
        print_full_pool,
    )

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = FullPoolSet.load(args.data, args.omni)
    trained = load_trained_model(args.model_dir, args.checkpoint)
    log(
        f"{len(data.product_ids)} products (pool), {len(data.title_products)} title "
        f"and {len(data.view_products)} view queries, {trained.checkpoint}"
    )
    metrics = full_pool_retrieval(
        DualEncoder(trained.model),
        args.data,
        data,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
    )
    print_full_pool(metrics)
    if args.out is not None:
        results = {
            "protocol": (
                "CommerceMM full-pool retrieval (spec §4.8, P-DUAL): every query "
                "against all de-duplicated targets by dot product; T2I/I2T f<->g of "
                "product text and main image, Q2P f(title)->h(product), I2P "
                "g(view)->h(product), I2P-image g(view)->g(main image); pessimistic "
                "ties; R@K and meta_average (mean R@1) are fractions"
            ),
            "model_dir": str(args.model_dir),
            "checkpoint": trained.checkpoint,
            "step": trained.step,
            "system": trained.config.system,
            "data": str(args.data),
            "omni": str(args.omni),
            **metrics,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _easytransfer(args: argparse.Namespace) -> int:
    from kaleido_tf.evaluation.easytransfer_scorer import (
        EASYTRANSFER_DIRECTIONS,
        easytransfer_metrics,
        looks_like_easytransfer,
        read_easytransfer_predictions,
        read_pair_scores,
    )

    if not args.predictions.is_file():
        raise DataError(f"{args.predictions}: no such file")
    if looks_like_easytransfer(args.predictions):
        if args.direction is None:
            raise ConfigError(
                f"{args.predictions} is in EasyTransfer's format: say which "
                "direction it holds with --direction img2txt or txt2img"
            )
        by_direction = {
            args.direction: read_easytransfer_predictions(
                args.predictions, args.direction
            )
        }
    else:
        names = {v: k for k, v in EASYTRANSFER_DIRECTIONS.items()}
        by_direction = {
            names.get(d, d): pairs
            for d, pairs in read_pair_scores(args.predictions).items()
        }
    for direction, pairs in by_direction.items():
        m = easytransfer_metrics(pairs)
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.4f}"
        print(
            f"{direction}: ACC {m['accuracy']:.4f}  Rank@1 {m['rank@1']:.4f}  "
            f"Rank@5 {m['rank@5']:.4f}  Rank@10 {m['rank@10']:.4f}  "
            f"Rank@100 {m['rank@100']:.4f}  AUC {auc}  "
            f"({m['queries']} queries, {m['pairs']} pairs)"
        )
    return 0


def _finetuned(args: argparse.Namespace, tasks: tuple[str, ...]):
    import kaleido_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from kaleido_tf.checkpoints.trained_model import load_trained_model

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    trained = load_trained_model(args.model_dir, args.checkpoint)
    task = None if trained.config.finetune is None else trained.config.finetune.task
    if task not in tasks:
        raise ConfigError(
            f"{args.model_dir} is a {task or 'pretraining'} run; `evaluate "
            f"{args.action}` needs a run of `kaleido-tf finetune --task "
            f"{'|'.join(tasks)}`"
        )
    return trained, task


def _report(args, trained, ours: dict, results: dict, notes=()) -> None:
    from kaleido_tf.evaluation import paper_tables

    table = paper_tables.table3(ours, args.label)
    paper_tables.write_results(
        args.out,
        {
            "model_dir": str(args.model_dir),
            "checkpoint": trained.checkpoint,
            "step": trained.step,
            "system": trained.config.system,
            "data": str(args.data),
            **results,
            **ours,
        },
        {"Table 3: category recognition and captioning on Fashion-Gen": table},
        f"{args.action}: {args.model_dir} ({trained.checkpoint})",
        notes,
    )
    print("Kaleido-BERT Table 3 (ours in the last column)")
    print(paper_tables.plain_text(table), end="")
    for note in notes:
        print(note)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}")


def _category(args: argparse.Namespace) -> int:
    from kaleido_tf.evaluation import classification_metrics
    from kaleido_tf.evaluation.category_recognition import predict_categories

    trained, task = _finetuned(args, ("category", "subcategory"))
    labels, predicted = predict_categories(
        trained.model,
        trained.config,
        args.data,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
    )
    if len(labels) == 0:
        raise DataError(f"{args.data}: no record has a known {task} label")
    metrics = classification_metrics.score(
        labels, predicted, trained.config.finetune.num_classes
    )
    _report(args, trained, {task: metrics}, {"examples": int(len(labels))})
    return 0


def _captioning(args: argparse.Namespace) -> int:
    import json

    from kaleido_tf.atomic_files import atomic_write_text
    from kaleido_tf.evaluation import captioning_metrics
    from kaleido_tf.evaluation.fashion_captioning import generate_split_captions

    if args.max_images is not None and args.max_images < 1:
        raise ConfigError(f"--max-images must be >= 1, got {args.max_images}")
    captioning_metrics.require_java()  # fail before minutes of decoding
    trained, _ = _finetuned(args, ("captioning",))
    hypotheses, references = generate_split_captions(
        trained.model,
        trained.config,
        args.data,
        batch_size=args.batch_size,
        max_images=args.max_images,
        progress=progress_enabled(args),
    )
    metrics = captioning_metrics.score(references, hypotheses)
    args.out.mkdir(parents=True, exist_ok=True)
    captions = args.out / "captions.jsonl"
    atomic_write_text(
        captions,
        "".join(
            json.dumps({"image_id": k, "caption": v, "reference": references[k][0]})
            + "\n"
            for k, v in hypotheses.items()
        ),
    )
    examples = list(hypotheses.items())[:3]
    notes = [f'{k}: "{v}" (reference: "{references[k][0]}")' for k, v in examples]
    _report(
        args,
        trained,
        {"captioning": metrics},
        {"images": len(hypotheses), "captions_file": str(captions)},
        notes,
    )
    return 0


def _gallery(args: argparse.Namespace) -> int:
    import json

    import kaleido_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from data_prep.text.wordpiece import WordPieceEncoder, read_vocab
    from kaleido_tf.atomic_files import atomic_write_text
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.evaluation.full_gallery import (
        DIRECTION_NAMES,
        CrossEncoderScorer,
        PairScorer,
        evaluate_gallery,
        gallery_inputs,
    )
    from kaleido_tf.evaluation.karpathy_split import coco_folds, read_karpathy_split
    from kaleido_tf.evaluation.ranking_metrics import RANKS
    from kaleido_tf.manifest import read_manifest

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.folds is not None and args.folds < 1:
        raise ConfigError(f"--folds must be >= 1, got {args.folds}")
    images = read_karpathy_split(args.karpathy, args.split)
    folds = None if args.folds is None else coco_folds(len(images), args.folds)
    trained = load_trained_model(args.model_dir, args.checkpoint)
    manifest = read_manifest(args.data)
    vocab = read_vocab(args.data / manifest.get("vocab_file", "vocab.txt"))
    # Captions as long as the folder's texts (the length the model trained on),
    # within the model's position table.
    text_encoder = WordPieceEncoder(
        vocab,
        min(
            int(manifest["max_seq_length"]),
            trained.config.model.encoder.max_sequence_length,
        ),
    )
    inputs = gallery_inputs(args.data, trained.config, images, text_encoder)
    n_c, n_i = len(inputs["caption_image"]), len(images)
    log(
        f"{args.split}: {n_c} captions x {n_i} images"
        + (f" in {len(folds)} folds of {len(folds[0])}" if folds else "")
        + f" ({inputs['truncated']} captions truncated to "
        f"{text_encoder.max_seq_length} tokens), {trained.checkpoint}"
    )
    arrays = [
        inputs[k] for k in ("input_ids", "input_mask", "patch_features", "patch_boxes")
    ] + [inputs["patch_mask"]]
    if hasattr(trained.model.encoder, "embed_text"):  # single stream: cache
        scorer = CrossEncoderScorer(
            trained.model, *arrays, embed_batch_size=args.batch_size
        )
    else:  # e.g. InterBERT's two streams: one forward pass per pair
        scorer = PairScorer(trained.model, *arrays)
    metrics = evaluate_gallery(
        scorer,
        inputs["caption_image"],
        folds,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
    )
    results = {
        "protocol": (
            "full gallery, ITM match margin (ranks as P(match)), pessimistic ties; "
            "R@K are fractions"
            + (
                f"; mean over {len(folds)} folds of {len(folds[0])} images"
                if folds
                else ""
            )
        ),
        "model_dir": str(args.model_dir),
        "checkpoint": trained.checkpoint,
        "step": trained.step,
        "system": trained.config.system,
        "data": str(args.data),
        "karpathy": str(args.karpathy),
        "split": args.split,
        "captions": n_c,
        "images": n_i,
        "truncated_captions": inputs["truncated"],
        **{k: v for k, v in metrics.items() if k not in ("captions", "images")},
    }
    print(f"{'direction (%)':<15}" + "".join(f"{f'R@{k}':>8}" for k in RANKS))
    for d in DIRECTION_NAMES:
        row = "".join(f"{100 * metrics[d][f'rank@{k}']:8.2f}" for k in RANKS)
        print(f"{d:<15}{row}")
    print(f"RSUM {metrics['rsum']:.2f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _compare(args: argparse.Namespace) -> int:
    import json

    from kaleido_tf.evaluation import paper_tables

    loaded = []
    for path in args.results:
        file = path / "results.json" if path.is_dir() else path
        try:
            results = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"{file}: not a readable results.json ({e})") from None
        if "itr" not in results or "tir" not in results:
            raise DataError(
                f"{file} holds no retrieval results: give `evaluate retrieval` outputs"
            )
        loaded.append((file, results))
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(loaded):
        raise ConfigError(f"--labels has {len(labels)} names for {len(loaded)} results")
    first_file, first = loaded[0]
    for file, results in loaded[1:]:
        mine, theirs = _lists_identity(results, first), _lists_identity(first, results)
        if mine != theirs:
            raise DataError(
                f"{file} was scored on other candidate lists than {first_file} "
                f"({mine} vs {theirs}): score every model with `evaluate "
                "retrieval --lists` on the same file"
            )
    columns = {}
    for i, (file, results) in enumerate(loaded):
        label = labels[i] if labels else results.get("label", "ours")
        if label in ("ours", "") or label in columns:
            label = f"{results.get('system', 'ours')} ({file.parent.name})"
        columns[label] = results
    table = paper_tables.table_rows(
        paper_tables.TABLE2_ROWS, paper_tables.TABLE2_METHODS, columns
    )
    summary = {
        "protocol": first.get("protocol"),
        "lists": first.get("lists"),
        "lists_sha256": first.get("lists_sha256"),
        "runs": {
            label: {
                "results": str(file),
                "system": r.get("system"),
                "checkpoint": r.get("checkpoint"),
                "itr": r["itr"],
                "tir": r["tir"],
                "sum_r": r.get("sum_r"),
            }
            for label, (file, r) in zip(columns, loaded)
        },
    }
    paper_tables.write_results(
        args.out,
        summary,
        {"Table 2: retrieval on Fashion-Gen, identical candidate lists": table},
        "Retrieval: " + ", ".join(columns),
    )
    print("Kaleido-BERT Table 2 with our runs, all on the same candidate lists")
    print(paper_tables.plain_text(table), end="")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}")
    return 0


def _lists_identity(results: dict, other: dict) -> tuple:
    """What makes two results comparable: the lists' content hash when both
    recorded it, else the lists' seed and the products they were drawn from."""
    if results.get("lists_sha256") and other.get("lists_sha256"):
        return ("sha256", results["lists_sha256"])
    return (
        "seed+products",
        results.get("lists_seed"),
        results.get("products_fingerprint"),
    )
