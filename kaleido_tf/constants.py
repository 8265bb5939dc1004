"""Project-wide constants and the dimension legend used in every docstring.

Dimension legend:
    B batch; T text tokens incl. [CLS]/[SEP]; P patches (55 Kaleido, 64 grid);
    L = T + P; H hidden size; D patch feature size (2048 for ResNet-50);
    V vocabulary; M masked-text slots; K masked-patch slots; N heads; C classes.
"""

# ITM label convention: 1 = text matches image (FashionBERT / Kaleido-BERT data),
# the opposite of Google BERT's NSP where 0 = "IsNext" (prior_art.md §0.6).
ITM_MATCH = 1
ITM_MISMATCH = 0

# Special WordPiece tokens; their ids are looked up in the vocabulary in use.
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)

# Fashion-Gen images are 256 x 256 RGB (prior_art.md §3).
FASHIONGEN_IMAGE_SIZE = 256
