"""Foreign checkpoints into this project's models, by explicit name maps.

``google_bert.py`` reads Google BERT directories (``bert_config.json``, ``vocab.txt``,
``bert_model.ckpt.*``); ``report.py`` holds the ``LoadReport`` every loader returns.
"""
