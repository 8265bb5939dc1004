"""The 9 gated Omni-Retrieval InfoNCE terms (CommerceMM §3.3).

A batch holds B linked (source, target) pairs; the siamese model embeds each side
into three L2-normalised vectors: ``f(w)`` (text encoder [CLS], modality "text"),
``g(v)`` (image encoder [CLS], "image") and ``h(w, v)`` (fusion encoder ``w_cls``,
"multimodal"). Task ``u2v`` compares source modality u with target modality v through
``s_ij = u(source_i)ᵀ v(target_j)``, a B×B matrix (B_local × B_global per replica),
for the 9 pairs u, v in {text, image, multimodal}.

Gating (spec §4.5 [D], §4.11 #13): ``δ^T`` (text present), ``δ^I`` (real image)
and ``δ^M = δ^T ∧ δ^I``, per side. In task ``u2v``:

- row i counts iff ``δ^u(source_i) ∧ δ^v(target_i)`` (its weight; the paper's
  ``δ_i^u`` on the source, plus the target gate);
- in the source→target softmax a target j with ``δ^v(target_j) = 0`` is removed
  from the denominator, and in the target→source softmax a source j with
  ``δ^u(source_j) = 0`` is removed: a missing modality is never a negative either.

So an embedding whose modality is missing has no effect at all on the loss (nor
gradient). Each task's value is the mean over its gated-in rows (of the global batch)
of both directions; the 9 tasks have weight 1.0 each (§4, pre-training set-up). A
task with no gated-in row anywhere contributes 0 (``weighted_mean`` divides with
``divide_no_nan``).
Negatives are all-gathered across replicas exactly as in ``losses/contrastive.py``,
whose module docstring explains why the reduction is the single-device one.

Reference: CommerceMM §3.3, the L_omni equation; spec §4.5, §4.6 (one Omni step),
§4.11 #7, #12, #13.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kaleido_tf.losses.contrastive import symmetric_info_nce

MODALITIES = ("text", "image", "multimodal")
# Task id -> (source modality, target modality), in the paper's table order.
OMNI_TASKS = {
    f"{u[0]}2{v[0]}": (u, v) for u in MODALITIES for v in MODALITIES
}  # t2t, t2i, t2m, i2t, i2i, i2m, m2t, m2i, m2m


def presence(text_present: tf.Tensor, image_present: tf.Tensor) -> dict:
    """Presence flags δ of one side, for the three modalities.

    Args:
        text_present: bool/int/float [B]; 1 = the text is non-empty (``δ^T``).
        image_present: bool/int/float [B]; 1 = a real image, 0 = the grey
            placeholder (``δ^I``).

    Returns:
        Modality -> float32 [B]; "multimodal" is ``δ^T * δ^I`` (spec §4.11 #13).
    """
    text = tf.cast(tf.cast(text_present, tf.bool), tf.float32)
    image = tf.cast(tf.cast(image_present, tf.bool), tf.float32)
    return {"text": text, "image": image, "multimodal": text * image}


def similarity_matrices(source: dict, target: dict) -> dict[str, tf.Tensor]:
    """The 9 in-batch cosine-similarity matrices (no gathering, no gating).

    Args:
        source: Modality -> float [B, E]; the source side's ``f``, ``g``, ``h``.
        target: Modality -> float [B, E]; the target side's.

    Returns:
        Task id (``OMNI_TASKS``) -> float32 [B, B]; entry (i, j) =
        ``cos(source[u]_i, target[v]_j)``; the diagonal holds the linked pairs.
    """
    out = {}
    for task, (u, v) in OMNI_TASKS.items():
        q = tf.math.l2_normalize(tf.cast(source[u], tf.float32), axis=-1)
        k = tf.math.l2_normalize(tf.cast(target[v], tf.float32), axis=-1)
        out[task] = tf.matmul(q, k, transpose_b=True)  # [B, B]
    return out


def omni_retrieval_losses(
    source: dict,
    target: dict,
    source_present: dict,
    target_present: dict,
    inverse_temperature: tf.Tensor,
    tasks=tuple(OMNI_TASKS),
) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per-row gated symmetric InfoNCE of each Omni task, global negatives.

    Args:
        source: Modality -> float [B_local, E]; the source embeddings.
        target: Modality -> float [B_local, E]; the target embeddings; row i is
            linked to source row i.
        source_present: Modality -> float [B_local]; δ of the source side
            (``presence``); 1 = present.
        target_present: Modality -> float [B_local]; δ of the target side.
        inverse_temperature: float []; 1/τ, shared with ITC.
        tasks: The task ids to compute (default all 9).

    Returns:
        Task id -> (values float32 [B_local], weights float32 [B_local]), a
        ``LossTerm`` pair each: value = source→target plus target→source
        cross-entropy of row i, weight = ``δ^u_i δ^v_i``; gated rows have value 0.

    Raises:
        ValueError: An unknown task id.
    """
    unknown = sorted(set(tasks) - set(OMNI_TASKS))
    if unknown:
        raise ValueError(f"unknown Omni tasks {unknown}; valid: {list(OMNI_TASKS)}")
    out = {}
    for task in tasks:
        u, v = OMNI_TASKS[task]
        out[task] = symmetric_info_nce(
            source[u],
            target[v],
            inverse_temperature,
            first_mask=source_present[u],
            second_mask=target_present[v],
        )
    return out


def omni_loss_terms(
    embedding_key: str = "{side}_{modality}_embedding",
    present_key: str = "{side}_{modality}_present",
    scale_key: str = "contrastive_scale",
) -> dict[str, Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]]:
    """The 9 Omni loss terms (``LossTerm``), one per task, for ``Objectives.losses``.

    Each term reads only its two embeddings, so the trainer logs 9 losses and each
    is divided by its own global count of gated-in rows (weight 1.0 each, §4).

    Args:
        embedding_key: Model output name pattern; ``side`` is "source" or "target",
            ``modality`` one of ``MODALITIES``; float [B, E].
        present_key: Batch key pattern of the presence flags; ``modality`` is
            "text" or "image" (``δ^M`` is derived); bool/int/float [B], 1 = present.
        scale_key: Model output float []; 1/τ.

    Returns:
        ``"omni_<task>"`` -> ``(batch, outputs) -> (values [B], weights [B])``.
    """

    def make(task: str):
        u, v = OMNI_TASKS[task]

        def term(batch: dict, outputs: dict) -> tuple[tf.Tensor, tf.Tensor]:
            flags = {}
            for side in ("source", "target"):
                flags[side] = presence(
                    batch[present_key.format(side=side, modality="text")],
                    batch[present_key.format(side=side, modality="image")],
                )
            return symmetric_info_nce(
                outputs[embedding_key.format(side="source", modality=u)],
                outputs[embedding_key.format(side="target", modality=v)],
                outputs[scale_key],
                first_mask=flags["source"][u],
                second_mask=flags["target"][v],
            )

        return term

    return {f"omni_{task}": make(task) for task in OMNI_TASKS}
