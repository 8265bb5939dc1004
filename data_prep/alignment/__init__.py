"""Attention-based Alignment Generator (AAG) of Kaleido-BERT §3.3, offline.

Modules:
    caption_vocab: word-level caption vocabulary and BERT basic tokenisation.
    sat_captioner: the Show-Attend-and-Tell captioner (Keras) and its loss.
    beam_search: beam-search decoding that keeps each word's attention map.
    alignment_generator: attention -> region -> token-patch pairs.
    trainer: ``kaleido-tf align train``.
    extract: ``kaleido-tf align extract`` (pairs into the records).
    show: ``kaleido-tf align show`` (a picture of one image's alignment).
"""
