"""A small fully connected network in NumPy that uses YOUR Batch Normalization functions.

Each hidden layer is ``affine -> [BN] -> activation`` (BN before the activation, as in Ioffe &
Szegedy 2015) or ``affine -> activation -> [BN]`` (``bn_position="after"``). The network never
implements BN itself: you pass in ``batchnorm_forward`` and ``batchnorm_backward`` from the
notebook, so the experiments show how your own implementation trains.
"""

import numpy as np
from threadpoolctl import threadpool_limits


def _sigmoid(a):
    # Split by sign so that exp never overflows.
    out = np.empty_like(a)
    positive = a >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-a[positive]))
    exp_a = np.exp(a[~positive])
    out[~positive] = exp_a / (1.0 + exp_a)
    return out


def softmax_loss(scores, labels):
    """Mean cross-entropy of (N, K) scores against (N,) integer labels, and its gradient."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = scores.shape[0]
    loss = -float(log_probs[np.arange(n), labels].mean())
    dscores = np.exp(log_probs)
    dscores[np.arange(n), labels] -= 1.0
    return loss, dscores / n


class MLP:
    """Fully connected network: ``len(hidden)`` hidden layers, a softmax output.

    Args:
        sizes: (input size, hidden sizes..., number of classes), e.g. (64, 100, 100, 100, 10).
        rng: a ``np.random.Generator`` for the weights (Glorot uniform, as Keras's default).
        activation: "sigmoid" or "relu".
        bn: ``None`` (no BN) or a pair ``(batchnorm_forward, batchnorm_backward)``.
        bn_position: "before" or "after" the activation.
        momentum, eps: BN settings (Keras's names; the default momentum 0.9 lets the running
            statistics catch up within a few dozen steps on this small data set).
    """

    def __init__(
        self,
        sizes,
        rng,
        activation="sigmoid",
        bn=None,
        bn_position="before",
        momentum=0.9,
        eps=1e-3,
    ):
        if activation not in ("sigmoid", "relu"):
            raise ValueError(f'activation must be "sigmoid" or "relu", got {activation!r}')
        if bn_position not in ("before", "after"):
            raise ValueError(f'bn_position must be "before" or "after", got {bn_position!r}')
        self.activation = activation
        self.bn = bn
        self.bn_position = bn_position
        self.params = {}
        self.bn_params = []
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            self.params[f"W{layer}"] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            self.params[f"b{layer}"] = np.zeros(fan_out)
            if bn is not None and layer < len(sizes) - 2:
                self.params[f"gamma{layer}"] = np.ones(fan_out)
                self.params[f"beta{layer}"] = np.zeros(fan_out)
                self.bn_params.append(
                    {
                        "mode": "train",
                        "eps": eps,
                        "momentum": momentum,
                        "running_mean": np.zeros(fan_out),
                        "running_var": np.ones(fan_out),
                    }
                )
        self.num_hidden = len(sizes) - 2

    def _act(self, a):
        return _sigmoid(a) if self.activation == "sigmoid" else np.maximum(a, 0.0)

    def _act_backward(self, dh, h):
        return dh * h * (1.0 - h) if self.activation == "sigmoid" else dh * (h > 0)

    def forward(self, x, mode="test"):
        """Scores (N, K), the caches, and each hidden layer's activation input (N, H)."""
        caches, act_inputs = [], []
        h = x
        for layer in range(self.num_hidden):
            a = h @ self.params[f"W{layer}"] + self.params[f"b{layer}"]
            bn_cache = None
            if self.bn is not None:
                self.bn_params[layer]["mode"] = mode
            if self.bn is not None and self.bn_position == "before":
                a, bn_cache = self.bn[0](
                    a,
                    self.params[f"gamma{layer}"],
                    self.params[f"beta{layer}"],
                    self.bn_params[layer],
                )
            act_inputs.append(a)
            out = self._act(a)
            h_next = out
            if self.bn is not None and self.bn_position == "after":
                h_next, bn_cache = self.bn[0](
                    out,
                    self.params[f"gamma{layer}"],
                    self.params[f"beta{layer}"],
                    self.bn_params[layer],
                )
            caches.append((h, out, bn_cache))
            h = h_next
        last = self.num_hidden
        scores = h @ self.params[f"W{last}"] + self.params[f"b{last}"]
        caches.append((h, None, None))
        return scores, caches, act_inputs

    def backward(self, dscores, caches):
        """Gradients of every parameter, from d loss / d scores (N, K)."""
        grads = {}
        last = self.num_hidden
        h, _, _ = caches[last]
        grads[f"W{last}"] = h.T @ dscores
        grads[f"b{last}"] = dscores.sum(axis=0)
        dh = dscores @ self.params[f"W{last}"].T
        for layer in reversed(range(self.num_hidden)):
            h_in, out, bn_cache = caches[layer]
            if self.bn is not None and self.bn_position == "after":
                dh, grads[f"gamma{layer}"], grads[f"beta{layer}"] = self.bn[1](dh, bn_cache)
            da = self._act_backward(dh, out)
            if self.bn is not None and self.bn_position == "before":
                da, grads[f"gamma{layer}"], grads[f"beta{layer}"] = self.bn[1](da, bn_cache)
            grads[f"W{layer}"] = h_in.T @ da
            grads[f"b{layer}"] = da.sum(axis=0)
            dh = da @ self.params[f"W{layer}"].T
        return grads

    def accuracy(self, x, labels):
        scores, _, _ = self.forward(x, mode="test")
        return float((scores.argmax(axis=1) == labels).mean())


def train(
    model, data, rng, epochs=20, batch_size=64, learning_rate=0.1, steps=None, watch_unit=None
):
    """Plain SGD on ``data`` (a bnkit.data.Digits); returns a history dict.

    Args:
        steps: if given, stop after this many updates (epochs is then an upper bound).
        watch_unit: (layer, unit) whose activation input is recorded at every step: the 15th,
            50th and 85th percentiles over the mini-batch.

    Returns:
        dict with lists "loss" (mean training loss per epoch), "train_acc", "val_acc" (per
        epoch, test mode), "steps" (updates done by the end of each epoch) and, with
        ``watch_unit``, "percentiles" of shape (number of steps, 3).
    """
    # The matrices are tiny: one BLAS thread is 3x faster here than several competing threads
    # on a shared 2-core machine (measured), and leaves the other core to its neighbours.
    with threadpool_limits(limits=1):
        return _train(model, data, rng, epochs, batch_size, learning_rate, steps, watch_unit)


def _train(model, data, rng, epochs, batch_size, learning_rate, steps, watch_unit):
    x_train, y_train = data.x_train.astype(np.float64), data.y_train
    x_val, y_val = data.x_val.astype(np.float64), data.y_val
    history = {"loss": [], "train_acc": [], "val_acc": [], "steps": [], "percentiles": []}
    done = 0
    for _ in range(epochs):
        order = rng.permutation(len(y_train))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scores, caches, act_inputs = model.forward(x_train[batch], mode="train")
            loss, dscores = softmax_loss(scores, y_train[batch])
            losses.append(loss)
            if watch_unit is not None:
                layer, unit = watch_unit
                history["percentiles"].append(
                    np.percentile(act_inputs[layer][:, unit], [15, 50, 85])
                )
            grads = model.backward(dscores, caches)
            for name, grad in grads.items():
                model.params[name] -= learning_rate * grad
            done += 1
            if steps is not None and done >= steps:
                break
        history["loss"].append(float(np.mean(losses)))
        history["train_acc"].append(model.accuracy(x_train, y_train))
        history["val_acc"].append(model.accuracy(x_val, y_val))
        history["steps"].append(done)
        if steps is not None and done >= steps:
            break
    history["percentiles"] = np.array(history["percentiles"]).reshape(-1, 3)
    return history
