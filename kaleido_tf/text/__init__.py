"""Text tokenisation inside the graph (serving and evaluation).

``sentencepiece_tokenizer.py``: XLM-R's SentencePiece ids (CommerceMM §3.1) with
tensorflow-text; the offline twin is ``data_prep/text/sentencepiece.py``.
"""
