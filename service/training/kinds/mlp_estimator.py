"""A scikit-learn style MLP in torch that follows the penalty convention exactly.

Objective: mean_loss + strength*(l1_ratio*||W||_1 + (1-l1_ratio)/2*||W||_2^2) over weight
matrices only. The L2 part enters through its gradient (identical to adding it to the loss, and
cheaper than building it into the autograd graph); the L1 part is a proximal soft-threshold after
each optimizer step, so weights reach exact zeros. Dropout and early stopping come on top.

Regression nets end in a fixed affine map ``y = mean + scale * out`` (training-split statistics,
not learned). The loss is half the MSE in the target's own units; it is optimised divided by
scale**2 (with the penalty divided likewise), which has the same minimiser and keeps gradients
well scaled whatever the target's units.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import nn

from service.training.errors import SpecError, TrainingCancelled

__all__ = ["MLPEstimator", "MLPNet", "resolve_device"]

Activation = Literal["relu", "tanh", "gelu"]
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}
#: Rows per forward pass when evaluating without gradients.
EVAL_BATCH_ROWS = 16_384
#: Per-epoch train figures are computed on a fixed random subset of at most this many training
#: rows (all rows when fewer), so curves cost little next to the epoch itself.
CURVE_ROWS = 20_000
#: Momentum of the 'sgd' optimizer (plain SGD stalls at the default learning rate).
SGD_MOMENTUM = 0.9


def resolve_device(device: str | None) -> torch.device:
    """'auto' or None picks CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class MLPNet(nn.Module):
    """Dense layers with activation and dropout after each hidden layer; stable state_dict keys."""

    target_mean: torch.Tensor
    target_scale: torch.Tensor

    def __init__(
        self,
        n_inputs: int,
        hidden_layers: Sequence[int],
        n_outputs: int,
        activation: Activation = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [n_inputs, *hidden_layers, n_outputs]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        # A plain list of the same modules (not registered twice): typed, and fast to iterate.
        self._dense: list[nn.Linear] = [cast(nn.Linear, m) for m in self.linears]
        self.activation = _ACTIVATIONS[activation]
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        # Regression output map; identity for classification logits.
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs in training units: logits, or the standardized regression target."""
        training, p, act = self.training, self.dropout, self.activation
        if self.input_dropout > 0:
            x = F.dropout(x, self.input_dropout, training)
        *hidden, last = self._dense
        for layer in hidden:
            x = act(F.linear(x, layer.weight, layer.bias))
            if p > 0:
                x = F.dropout(x, p, training)
        return F.linear(x, last.weight, last.bias)

    def layers(self) -> list[nn.Linear]:
        """The dense layers, input side first."""
        return list(self._dense)

    def weight_matrices(self) -> list[torch.Tensor]:
        """The penalised parameters: every weight matrix, no bias."""
        return [layer.weight for layer in self.layers()]


class MLPEstimator(BaseEstimator):
    """Classifier or regressor MLP; fit(X, y) returns self, learned attributes end in '_'."""

    classes_: np.ndarray | None

    def __init__(
        self,
        task: Literal["classification", "regression"] = "classification",
        hidden_layers: Sequence[int] = (128, 64),
        activation: Activation = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        strength: float = 0.0,
        l1_ratio: float = 0.0,
        epochs: int = 100,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        optimizer: Literal["adam", "sgd"] = "adam",
        early_stopping: bool = False,
        patience: int = 10,
        min_delta: float = 0.0,
        class_weight: Literal["balanced"] | None = None,
        random_state: int = 0,
        device: str | None = "auto",
        curve_rows: int | None = CURVE_ROWS,
    ) -> None:
        self.task = task
        self.hidden_layers = hidden_layers
        self.activation = activation
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.strength = strength
        self.l1_ratio = l1_ratio
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_delta = min_delta
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.curve_rows = curve_rows

    # -- fitting ----------------------------------------------------------------------------

    def _targets(self, y: np.ndarray, device: torch.device) -> torch.Tensor:
        """Class indices (classification) or float targets (regression) as a device tensor."""
        if self.task == "classification":
            classes = self._classes()
            idx = np.searchsorted(classes, y)
            if np.any(idx >= len(classes)) or np.any(classes[idx] != y):
                raise ValueError("y holds labels outside classes")
            return torch.as_tensor(idx, dtype=torch.long, device=device)
        return torch.as_tensor(np.asarray(y, dtype=np.float32), device=device)

    def _classes(self) -> np.ndarray:
        classes: np.ndarray | None = getattr(self, "classes_", None)
        if classes is None:
            raise AttributeError("classes_ is set only for classification, after fit")
        return classes

    def _class_weights(self, y_idx: torch.Tensor) -> torch.Tensor | None:
        """'balanced' weights n / (n_classes * count), as scikit-learn computes them."""
        if self.class_weight is None:
            return None
        k = len(self._classes())
        counts = torch.bincount(y_idx, minlength=k).to(torch.float32).clamp_min(1.0)
        return y_idx.numel() / (k * counts)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        classes: Sequence[Any] | np.ndarray | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> MLPEstimator:
        """Train on (X, y); early stopping and val curves use (X_val, y_val) when given."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        has_val = X_val is not None and y_val is not None and len(X_val) > 0
        if self.early_stopping and not has_val:
            raise ValueError("early_stopping needs X_val and y_val")
        device = resolve_device(self.device)
        self.device_ = str(device)
        self.n_features_in_ = X.shape[1]
        classification = self.task == "classification"
        if classification:
            self.classes_ = np.asarray(classes if classes is not None else np.unique(y))
            n_outputs = len(self.classes_)
        else:
            self.classes_ = None
            n_outputs = 1

        l1 = float(self.strength) * float(self.l1_ratio)
        l2 = float(self.strength) * (1.0 - float(self.l1_ratio))
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.random_state)
            net = MLPNet(
                X.shape[1],
                list(self.hidden_layers),
                n_outputs,
                self.activation,
                self.dropout,
                self.input_dropout,
            )
            loss_scale = 1.0
            if not classification:
                mean = float(np.mean(y)) if len(y) else 0.0
                scale = float(np.std(y)) if len(y) else 1.0
                scale = scale if math.isfinite(scale) and scale > 0 else 1.0
                net.target_mean.fill_(mean)
                net.target_scale.fill_(scale)
                loss_scale = scale * scale
            net.to(device)
            self.target_mean_ = float(net.target_mean)
            self.target_scale_ = float(net.target_scale)
            X_t = torch.as_tensor(X, device=device)
            y_t = self._targets(y, device)
            X_v = y_v = None
            if has_val:
                assert X_val is not None and y_val is not None
                X_v = torch.as_tensor(np.asarray(X_val, dtype=np.float32), device=device)
                y_v = self._targets(np.asarray(y_val), device)
            self.module_ = net
            self._train_loop(
                net,
                X_t,
                y_t,
                X_v,
                y_v,
                l1 / loss_scale,
                l2 / loss_scale,
                on_epoch,
                should_stop,
            )
        return self

    def _make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam or SGD with momentum; the fused kernels when the build has them (same maths)."""
        lr = float(self.learning_rate)
        for fused in (True, False):
            kwargs: dict[str, Any] = {"fused": True} if fused else {}
            try:
                if self.optimizer == "sgd":
                    return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, **kwargs)
                return torch.optim.Adam(params, lr=lr, **kwargs)
            except (RuntimeError, TypeError, ValueError):
                continue
        raise AssertionError("unreachable")

    @torch.no_grad()
    def _l1_prox(
        self, opt: torch.optim.Optimizer, weights: list[torch.Tensor], threshold: float, step: int
    ) -> None:
        """Soft-threshold W <- sign(W)*max(|W| - t, 0) after the optimizer step.

        SGD: t = lr*l1, the proximal gradient step. Adam: t = lr*l1 / (sqrt(v_hat) + eps), the
        same step in Adam's per-weight metric; with a bare lr*l1 Adam's normalised steps swamp
        the threshold, so weights rarely reach zero and the fixed point is not the convention's
        optimum. In both, a weight stays at zero exactly when its (averaged) gradient is below l1.
        """
        if self.optimizer == "sgd":
            for w in weights:
                w.sub_(w.clamp(-threshold, threshold))
            return
        group = opt.param_groups[0]
        beta2, eps = float(group["betas"][1]), float(group["eps"])
        correction = math.sqrt(1.0 - beta2**step)
        v = [opt.state[w]["exp_avg_sq"] for w in weights]
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, correction)
        torch._foreach_add_(denom, eps)
        torch._foreach_reciprocal_(denom)
        torch._foreach_mul_(denom, threshold)
        for w, t in zip(weights, denom, strict=True):
            w.sub_(torch.clamp(w, min=-t, max=t))

    def _train_loop(
        self,
        net: MLPNet,
        X: torch.Tensor,
        y: torch.Tensor,
        X_val: torch.Tensor | None,
        y_val: torch.Tensor | None,
        l1: float,
        l2: float,
        on_epoch: Callable[[dict[str, Any]], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Epochs of shuffled mini-batches with penalty, prox step, curves and early stopping.

        Per batch: mean loss (class-weighted like scikit-learn; regression on the standardized
        target), plus the L2 gradient l2*W on weights only, optimizer step, then the L1 proximal
        soft-threshold (see _l1_prox).
        """
        n = X.shape[0]
        step = _Stepper(self, net, l1, l2)
        batches = self._batches(net, X, y)
        curve = self._curve_rows(X, y)
        validation = (X_val, y_val) if X_val is not None and y_val is not None else None
        generator = torch.Generator().manual_seed(self.random_state)
        stopper = _Stopper(int(self.patience), float(self.min_delta))
        history: list[dict[str, Any]] = []
        start = time.perf_counter()
        for epoch in range(1, int(self.epochs) + 1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training cancelled before epoch {epoch}")
            net.train()
            batches.run(net, torch.randperm(n, generator=generator).to(X.device), step)
            record = self._epoch_record(net, epoch, curve, validation)
            history.append(record)
            if on_epoch is not None:
                on_epoch(dict(record))
            val_loss = record["val_loss"]
            if self.early_stopping and val_loss is not None and stopper.stop(net, epoch, val_loss):
                break
        if stopper.best_state is not None:
            net.load_state_dict(stopper.best_state)
        net.eval()
        self.history_ = history
        self.n_epochs_ = len(history)
        self.best_epoch_ = stopper.best_epoch
        self.fit_seconds_ = time.perf_counter() - start

    def _batches(self, net: MLPNet, X: torch.Tensor, y: torch.Tensor) -> _Batches:
        """The training rows as the loss sees them: standardized target, class weights per row."""
        classification = self.task == "classification"
        cw = self._class_weights(y) if classification else None
        return _Batches(
            X=X,
            y_fit=y if classification else (y - net.target_mean) / net.target_scale,
            row_weight=cw[y] if cw is not None else None,
            size=max(1, min(int(self.batch_size), X.shape[0])),
            classification=classification,
        )

    def _curve_rows(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed subset of training rows the per-epoch train figures are computed on."""
        n = X.shape[0]
        if self.curve_rows is None or n <= self.curve_rows:
            return X, y
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(self.random_state + 1))
        pick = pick[: self.curve_rows].sort().values.to(X.device)
        return X[pick], y[pick]

    def _epoch_record(
        self,
        net: MLPNet,
        epoch: int,
        curve: tuple[torch.Tensor, torch.Tensor],
        validation: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> dict[str, Any]:
        """The epoch's losses and scores; a non-finite training loss is a divergence (422)."""
        train_loss, train_metric = self._evaluate(net, *curve)
        val_loss = val_metric = None
        if validation is not None:
            val_loss, val_metric = self._evaluate(net, *validation)
        if not math.isfinite(train_loss):
            raise SpecError(
                [
                    {
                        "field": "model.learning_rate",
                        "message": f"training diverged (the loss is not finite at epoch "
                        f"{epoch}); lower model.learning_rate or raise regularization.strength",
                    }
                ]
            )
        return {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "train_metric": train_metric,
            "val_metric": val_metric,
        }

    @torch.no_grad()
    def _outputs(self, net: MLPNet, X: torch.Tensor) -> torch.Tensor:
        """Eval-mode outputs in large batches: logits, or the regression target's own units."""
        net.eval()
        parts = [net(X[i : i + EVAL_BATCH_ROWS]) for i in range(0, X.shape[0], EVAL_BATCH_ROWS)]
        out = torch.cat(parts) if parts else X.new_zeros((0, net.layers()[-1].out_features))
        if self.task == "regression":
            out = out.squeeze(1) * net.target_scale + net.target_mean
        return out

    def _evaluate(
        self, net: MLPNet, X: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float | None]:
        """(mean loss, accuracy or r2) in eval mode; the loss is unweighted, in target units."""
        out = self._outputs(net, X)
        if self.task == "classification":
            loss = F.cross_entropy(out, y).item()
            metric = (out.argmax(1) == y).to(torch.float32).mean().item()
            return loss, metric
        resid = y - out
        sse = torch.dot(resid, resid)
        loss = 0.5 * sse.item() / max(y.numel(), 1)
        centred = y - y.mean()
        sst = torch.dot(centred, centred).item()
        r2 = 1.0 - sse.item() / sst if sst > 0 else None
        return loss, r2

    # -- prediction -------------------------------------------------------------------------

    def _check_fitted(self) -> MLPNet:
        if not hasattr(self, "module_"):
            raise RuntimeError("MLPEstimator is not fitted yet; call fit first")
        return self.module_

    def _forward_numpy(self, X: np.ndarray) -> np.ndarray:
        net = self._check_fitted()
        device = next(net.parameters()).device
        X_t = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
        return self._outputs(net, X_t).cpu().numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in the order of classes_."""
        if self.task != "classification":
            raise AttributeError("predict_proba is for classification")
        logits = torch.from_numpy(self._forward_numpy(X))
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels from classes_ (classification) or values (regression)."""
        out = self._forward_numpy(X)
        if self.task == "classification":
            return self._classes()[out.argmax(1)]
        return out.astype(np.float64)

    def weight_arrays(self) -> list[np.ndarray]:
        """The penalised weight matrices as numpy arrays (biases excluded)."""
        net = self._check_fitted()
        return [w.detach().cpu().numpy() for w in net.weight_matrices()]

    def architecture(self) -> dict[str, Any]:
        """What it takes to rebuild the net around saved weights (JSON-safe)."""
        net = self._check_fitted()
        return {
            "n_inputs": int(self.n_features_in_),
            "hidden_layers": [int(h) for h in self.hidden_layers],
            "n_outputs": int(net.layers()[-1].out_features),
            "activation": self.activation,
            "dropout": float(self.dropout),
            "input_dropout": float(self.input_dropout),
            "task": self.task,
            "target_mean": self.target_mean_,
            "target_scale": self.target_scale_,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Contiguous CPU tensors of the net's state, ready for safetensors."""
        net = self._check_fitted()
        return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}

    @classmethod
    def from_saved(
        cls,
        architecture: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        classes: Sequence[Any] | None,
    ) -> MLPEstimator:
        """A fitted estimator rebuilt from architecture.json and the saved tensors, on the CPU."""
        est = cls(
            task=architecture["task"],
            hidden_layers=architecture["hidden_layers"],
            activation=architecture["activation"],
            dropout=architecture["dropout"],
            input_dropout=architecture["input_dropout"],
            device="cpu",
        )
        net = MLPNet(
            architecture["n_inputs"],
            architecture["hidden_layers"],
            architecture["n_outputs"],
            architecture["activation"],
            architecture["dropout"],
            architecture["input_dropout"],
        )
        net.load_state_dict(tensors, strict=True)
        net.eval()
        est.module_ = net
        est.device_ = "cpu"
        est.n_features_in_ = architecture["n_inputs"]
        est.classes_ = np.arange(len(classes)) if classes is not None else None
        est.target_mean_ = float(net.target_mean)
        est.target_scale_ = float(net.target_scale)
        return est


class _Stepper:
    """One optimizer step per batch: backward, the L2 gradient on weights, step, L1 prox."""

    def __init__(self, estimator: MLPEstimator, net: MLPNet, l1: float, l2: float) -> None:
        self.estimator = estimator
        self.opt = estimator._make_optimizer(list(net.parameters()))
        self.weights = net.weight_matrices()
        self.l2 = l2
        self.threshold = float(estimator.learning_rate) * l1
        self.steps = 0

    def __call__(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.l2 > 0:
            # The gradient of l2/2 * ||W||^2: the L2 term of the loss, weights only.
            grads = [cast(torch.Tensor, w.grad) for w in self.weights]
            torch._foreach_add_(grads, self.weights, alpha=self.l2)
        self.opt.step()
        if self.threshold > 0:
            self.steps += 1
            self.estimator._l1_prox(self.opt, self.weights, self.threshold, self.steps)


class _Batches:
    """The training rows of an epoch, shuffled once, in contiguous mini-batches."""

    def __init__(
        self,
        X: torch.Tensor,
        y_fit: torch.Tensor,
        row_weight: torch.Tensor | None,
        size: int,
        classification: bool,
    ) -> None:
        self.X, self.y_fit, self.row_weight = X, y_fit, row_weight
        self.size, self.classification = size, classification

    def run(self, net: MLPNet, perm: torch.Tensor, step: _Stepper) -> None:
        """One pass over the rows in the order ``perm``."""
        # One gather per epoch; batches are then contiguous views.
        Xp, yp = self.X[perm], self.y_fit[perm]
        wp = self.row_weight[perm] if self.row_weight is not None else None
        bs = self.size
        for i in range(0, self.X.shape[0], bs):
            out = net(Xp[i : i + bs])
            yb = yp[i : i + bs]
            if not self.classification:
                loss = 0.5 * F.mse_loss(out.squeeze(1), yb)
            elif wp is None:
                loss = F.cross_entropy(out, yb)
            else:
                loss = (F.cross_entropy(out, yb, reduction="none") * wp[i : i + bs]).mean()
            step(loss)


class _Stopper:
    """Early stopping on the validation loss, keeping the best epoch's weights."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None
        self.since_best = 0

    def stop(self, net: MLPNet, epoch: int, val_loss: float) -> bool:
        """Note this epoch's validation loss; True once it has not improved for `patience`."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss = val_loss
            self.best_epoch = epoch
            self.best_state = copy.deepcopy(net.state_dict())
            self.since_best = 0
            return False
        self.since_best += 1
        return self.since_best >= self.patience
