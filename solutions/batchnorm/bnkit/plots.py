"""Plotting helpers for the experiments: each returns a matplotlib Figure with titles and units."""

import matplotlib.pyplot as plt
import numpy as np


def plot_training_curves(histories, title):
    """Training loss and validation accuracy per epoch, one line per labelled history."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        ax_loss.plot(epochs, history["loss"], marker=".", label=label)
        ax_acc.plot(epochs, history["val_acc"], marker=".", label=label)
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="mean cross-entropy (nats)")
    ax_acc.set(
        title="Validation accuracy (test mode)", xlabel="epoch", ylabel="accuracy", ylim=(0, 1)
    )
    ax_acc.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_percentiles(percentiles, title):
    """15th, 50th and 85th percentiles of one unit's activation input over training steps.

    Args:
        percentiles: dict label -> array (steps, 3), as recorded by bnkit.mlp.train.
    """
    fig, axes = plt.subplots(1, len(percentiles), figsize=(5 * len(percentiles), 3.5), sharey=True)
    for ax, (label, values) in zip(np.atleast_1d(axes), percentiles.items(), strict=True):
        steps = np.arange(1, len(values) + 1)
        for column, name in enumerate(["15th", "50th", "85th"]):
            ax.plot(steps, values[:, column], label=f"{name} percentile", linewidth=1)
        ax.set(title=label, xlabel="training step", ylabel="input to the sigmoid (no unit)")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_batch_sweep(batch_sizes, accuracies, title):
    """Validation accuracy against batch size (log scale), one line per labelled result list."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in accuracies.items():
        ax.plot(batch_sizes, values, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(size) for size in batch_sizes])
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax.set(
        title=title,
        xlabel="batch size (examples per step)",
        ylabel="validation accuracy",
        ylim=(0, 1),
    )
    ax.legend()
    fig.tight_layout()
    return fig
