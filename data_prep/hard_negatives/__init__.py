"""Offline hard-negative mining for ITM (InterBERT's ITM-hn).

Modules:
    tfidf_miner: ``mine_hard_negatives`` (texts -> per-caption top-k pools of
        TF-IDF neighbours below a similarity threshold), ``mine_data_dir`` (writes
        ``hard_negatives.npz`` beside a prepared folder) and
        ``load_hard_negatives`` (reads it back, refusing a stale file).
"""
