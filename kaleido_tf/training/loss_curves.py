"""A picture of the training losses, like Kaleido-BERT's Fig. 6."""

from __future__ import annotations

from pathlib import Path


def plot_loss_curves(history: list[dict], out_path: str | Path, title: str) -> Path:
    """Plots every ``<task>_loss`` and the total against the step.

    Args:
        history: Rows with ``step`` and ``<task>_loss`` values (trainer history).
        out_path: PNG file (written atomically).
        title: Figure title.

    Reference: Kaleido-BERT Fig. 6 (sub-task losses and "Total Loss = AKPM + ITM +
    AMLM").
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kaleido_tf.atomic_files import atomic_write_bytes

    keys = sorted({k for row in history for k in row if k.endswith("_loss")})
    tasks = [k for k in keys if k != "total_loss"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    steps = [row["step"] for row in history]
    for key in tasks:
        axes[0].plot(steps, [row.get(key) for row in history], label=key[:-5], lw=1.6)
    axes[0].set_title("per-task losses")
    axes[0].set_xlabel("step")
    axes[0].set_yscale("log")
    axes[0].grid(alpha=0.3)
    axes[0].legend(ncol=2, fontsize=8)
    axes[1].plot(steps, [row.get("total_loss") for row in history], color="black", lw=2)
    axes[1].set_title("total loss (unweighted sum, Eq. 8)")
    axes[1].set_xlabel("step")
    axes[1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path
