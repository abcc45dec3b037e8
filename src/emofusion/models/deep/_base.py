"""`TorchClassifier`: the scikit-learn side of every PyTorch model in emofusion.

What the base class does for all subclasses:

* ``__init__`` only stores parameters (subclasses declare them); everything fitted ends in ``_``.
* ``fit(X, y, groups=None)`` validates the input, encodes labels into ``classes_``, carves an
  early-stopping validation split **out of the training data it was given** (whole speakers when
  ``groups`` is passed, else a stratified split), standardises the inputs with statistics of the
  training part only, trains with AdamW and class-weighted cross-entropy, and keeps the weights of
  the epoch with the lowest validation loss. **The final model is that best-epoch model**: it is not
  refitted on the validation part afterwards. There is deliberately no way to pass validation
  data from outside, so an outer test fold can never steer training.
* Training runs inside ``torch.random.fork_rng`` seeded from ``random_state`` (the global RNG of
  the caller is left untouched), with ``n_threads`` torch threads (restored afterwards), and with a
  deterministic data order, so two fits with the same seed on CPU give identical models.
* After fitting, small models are converted to float64 for prediction, which makes predictions
  independent of batch composition (padding, batch size) up to float64 rounding.
* Pickle / skops: ``__getstate__`` stores the module as a dict of numpy arrays plus the
  constructor config (``module_config_``), never a pickled ``nn.Module``.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from emofusion.models.deep._augment import (
    LearningRateSchedule,
    mixup,
    mixup_cross_entropy,
    spec_augment,
)
from emofusion.models.deep._data import Batcher, frame_statistics


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run with ``n_threads`` torch intra-op threads (None keeps the current setting)."""
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(max(int(n_threads), 1))
    try:
        yield
    finally:
        if n_threads is not None:
            torch.set_num_threads(previous)


def resolve_device(device) -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Fork torch's global RNG (CPU, and CUDA when used), seed it, restore it afterwards."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def validation_split(y: np.ndarray, groups, fraction, rng: np.random.Generator):
    """Split the *training* rows into (fit rows, validation rows, validation groups).

    With ``groups`` (speaker ids) and at least two distinct groups, whole groups are held out:
    ``max(1, round(fraction * n_groups))`` of them, never all. Without groups (or with a single
    group) the split is stratified by class when every class has two members and the validation
    part can hold one of each, otherwise it is a plain random split. A fraction of 0/None, or too
    little data, gives no validation rows (training then monitors the training loss).
    """
    n = len(y)
    everything = np.arange(n)
    empty = np.zeros(0, dtype=np.int64)
    if not fraction or fraction <= 0 or n < 3:
        return everything, empty, None
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},) like y.")
        unique = np.unique(groups)
        if len(unique) >= 2:
            n_val = min(max(1, int(round(fraction * len(unique)))), len(unique) - 1)
            chosen = np.sort(unique[rng.permutation(len(unique))[:n_val]])
            is_val = np.isin(groups, chosen)
            return np.flatnonzero(~is_val), np.flatnonzero(is_val), chosen
    n_val = int(round(fraction * n))
    if n_val < 1 or n - n_val < 2:
        return everything, empty, None
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts) else None
    seed = int(rng.integers(np.iinfo(np.int32).max))
    fit_rows, val_rows = train_test_split(
        everything, test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(fit_rows), np.sort(val_rows), None


def class_weights(class_weight, classes: np.ndarray, y_enc: np.ndarray) -> np.ndarray | None:
    """Per-class loss weights: None, ``"balanced"`` (n / (k * count)) or a {label: weight} dict."""
    if class_weight is None:
        return None
    k = len(classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}")
        counts = np.bincount(y_enc, minlength=k).astype(np.float64)
        return len(y_enc) / (k * np.maximum(counts, 1.0))
    if isinstance(class_weight, dict):
        w = np.ones(k)
        for i, c in enumerate(classes):
            if c in class_weight:
                w[i] = float(class_weight[c])
        return w
    raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}")


class AdamW:
    """AdamW (decoupled weight decay), the update of ``torch.optim.AdamW`` with its defaults
    (betas 0.9/0.999, eps 1e-8, no amsgrad).

    Why not ``torch.optim``: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo``
    (its methods are wrapped in ``torch._disable_dynamo``), which costs seconds per process and
    hundreds of MB; every fold worker and every ``emofusion predict``/``train`` paid it. This
    class needs nothing but tensor ops. ``params`` is an iterable of parameters or of
    ``{"params": ..., "lr": ...}`` groups, as for torch optimizers.
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 1e-2,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            group = {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps, **g}
            group["params"] = [p for p in group["params"] if p.requires_grad]
            self.param_groups.append(group)
        self.state: dict[torch.Tensor, dict] = {}
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, wd, (b1, b2), eps = group["lr"], group["weight_decay"], group["betas"], group["eps"]
            grads = [p.grad for p in params]
            for p in params:
                if p not in self.state:
                    self.state[p] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
            m = [self.state[p]["m"] for p in params]
            v = [self.state[p]["v"] for p in params]
            if wd:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_lerp_(m, grads, 1.0 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, 1.0 - b2)
            bc1 = 1.0 - b1 ** self.steps
            bc2 = 1.0 - b2 ** self.steps
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, -lr / bc1)


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """Base class: subclasses declare ``__init__`` parameters and the hooks below.

    Parameters every subclass has: ``dropout, lr, weight_decay, max_epochs, batch_size, patience,
    validation_fraction, class_weight, random_state, device, n_threads``.

    Training aids (see `_augment.py`), parameters of the subclasses that declare them; the class
    attributes below are the values for the others (no aid):
    ``time_masks, time_mask_fraction, freq_masks, freq_mask_fraction`` (SpecAugment-style
    masking of training batches), ``mixup_alpha`` (mixup; 0 = off), ``lr_schedule``
    (``"constant"`` or ``"cosine"``) and ``warmup_fraction``.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``module_`` (the ``nn.Module``),
    ``module_config_`` (what rebuilds it), ``best_epoch_`` (1-based epoch whose weights were kept),
    ``history_`` (per-epoch ``train_loss``, ``val_loss``, ``val_accuracy``, ``lr`` = the rate of
    the epoch's last step), ``validation_groups_`` (speakers held out for early stopping, None
    without groups), ``n_validation_samples_``.
    """

    time_masks = 0
    time_mask_fraction = 0.0
    freq_masks = 0
    freq_mask_fraction = 0.0
    mixup_alpha = 0.0
    lr_schedule = "constant"
    warmup_fraction = 0.0

    #: convert the fitted module to float64 for prediction (batch-composition invariant)
    _predict_in_double = True
    #: buckets hold this many batches
    _bucket_batches = 8

    # ---- hooks -------------------------------------------------------------------------------
    def _parse_fit(self, X, y):
        """Validate X and y for fit; return (store, y) and set n_features_in_ (and widths)."""
        raise NotImplementedError

    def _parse_predict(self, X):
        """Validate X for prediction against the fitted input; return a store."""
        raise NotImplementedError

    def _fit_preprocessing(self, store, rows) -> None:
        """Fit input statistics on the training rows (default: per-modality frame mean/std)."""
        self.feature_means_, self.feature_stds_ = frame_statistics(store, rows)

    def _preprocess(self, store):
        """Apply the fitted statistics; returns the store the module consumes."""
        store.standardise(self.feature_means_, self.feature_stds_)
        return store

    def _module_config(self, store, n_classes: int) -> dict:
        raise NotImplementedError

    @classmethod
    def _build_module(cls, config: dict) -> torch.nn.Module:
        raise NotImplementedError

    def _make_optimizer(self, module: torch.nn.Module) -> AdamW:
        return AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _frequency_channels(self) -> int:
        """Channel blocks of a frame's columns that share frequency bands (1 = plain features)."""
        return 1

    def _augmented(self, batch) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None,
                                         float]:
        """A training batch after masking and mixup: (xs, lengths, mixup partner rows or None,
        mixup weight lam)."""
        xs, lengths = batch.xs, batch.lengths
        if (self.time_masks and self.time_mask_fraction) or (self.freq_masks
                                                             and self.freq_mask_fraction):
            xs = [spec_augment(x, lengths[:, m], time_masks=self.time_masks,
                               time_mask_fraction=self.time_mask_fraction,
                               freq_masks=self.freq_masks, freq_mask_fraction=self.freq_mask_fraction,
                               n_channels=self._frequency_channels())
                  for m, x in enumerate(xs)]
        if self.mixup_alpha and self.mixup_alpha > 0:
            return mixup(xs, lengths, float(self.mixup_alpha))
        return xs, lengths, None, 1.0

    def _new_module(self, config: dict, device: torch.device,
                    restoring: bool = False) -> torch.nn.Module:
        """Build the module for a fresh fit, or (``restoring``) to receive a saved state."""
        return self._build_module(config).to(device)

    # ---- shared validation helpers -----------------------------------------------------------
    def _check_y(self, y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: [{n}, {len(y)}]"
            )
        return y

    def _validate_matrix(self, X, y=None, reset=True):
        """Numeric (n, d) input through sklearn's validation (feature names, n_features_in_)."""
        if y is None and reset:
            self._check_y(None, 0)
        if reset:
            return validate_data(self, X, y, dtype=[np.float64, np.float32])
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    # ---- fit / predict ----------------------------------------------------------------------
    def fit(self, X, y, groups=None):
        """Fit on training data only.

        Args:
            X: see the subclass docstring for the accepted shapes.
            y: class labels (any hashable labels; ``classes_`` keeps them sorted).
            groups: optional speaker ids of the rows. When given, early stopping holds out whole
                speakers of this training data; otherwise a stratified split is used.

        Returns:
            self. The kept weights are those of the epoch with the lowest validation loss.
        """
        store, y = self._parse_fit(X, y)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, but the data "
                f"contains only one class: {classes[0]!r}."
            )
        if groups is not None and len(np.asarray(groups)) != len(y):
            raise ValueError(f"groups has {len(np.asarray(groups))} entries but y has {len(y)}.")
        self.classes_ = classes
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        rng = np.random.default_rng(seed)
        fit_rows, val_rows, val_groups = validation_split(
            y_enc, groups, self.validation_fraction, rng
        )
        self.validation_groups_ = val_groups
        self.n_validation_samples_ = int(len(val_rows))
        self._fit_preprocessing(store, fit_rows)
        store = self._preprocess(store)

        device = resolve_device(self.device)
        weights = class_weights(self.class_weight, classes, y_enc)
        with torch_threads(self.n_threads), seeded(seed, device):
            config = self._module_config(store, len(classes))
            module = self._new_module(config, device)
            history, best_epoch = self._train(
                module, store, y_enc, fit_rows, val_rows, weights, rng, device
            )
            if self._predict_in_double:
                module = module.double()
            module.eval()
        self.module_config_ = config
        self.module_ = module
        self.history_ = history
        self.best_epoch_ = best_epoch
        return self

    def _train(self, module, store, y_enc, fit_rows, val_rows, weights, rng, device):
        y_all = torch.as_tensor(y_enc, dtype=torch.long, device=device)
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32,
                                                         device=device)
        train_batches = Batcher(store, fit_rows, self.batch_size, torch.float32, device,
                                bucket_batches=self._bucket_batches)
        val_batches = (Batcher(store, val_rows, self.batch_size, torch.float32, device,
                               bucket_batches=self._bucket_batches) if len(val_rows) else None)
        optimizer = self._make_optimizer(module)
        base_rates = [group["lr"] for group in optimizer.param_groups]
        schedule = LearningRateSchedule(
            str(self.lr_schedule), float(self.warmup_fraction),
            int(self.max_epochs) * train_batches.batches_per_epoch)
        step = 0
        history: list[dict] = []
        best_loss, best_epoch, best_state, waited = math.inf, 0, None, 0
        patience = self.patience if self.patience is not None else math.inf
        for epoch in range(1, int(self.max_epochs) + 1):
            module.train()
            total, weight_sum = 0.0, 0.0
            for batch in train_batches.shuffled(rng):
                schedule.apply(optimizer, base_rates, step)
                step += 1
                target = y_all[torch.as_tensor(batch.rows, device=device)]
                xs, lengths, partner, lam = self._augmented(batch)
                logits = module(xs, lengths)
                loss = (F.cross_entropy(logits, target, weight=w) if partner is None
                        else mixup_cross_entropy(logits, target, partner, lam, w))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
                optimizer.step()
                bw = float(len(target) if w is None else w[target].sum())
                total += float(loss.detach()) * bw
                weight_sum += bw
            record = {"epoch": epoch, "train_loss": total / max(weight_sum, 1e-12),
                      "lr": float(optimizer.param_groups[0]["lr"])}
            if val_batches is not None:
                record["val_loss"], record["val_accuracy"] = self._evaluate(
                    module, val_batches, y_all, w, device)
                monitored = record["val_loss"]
            else:
                monitored = record["train_loss"]
            history.append(record)
            if monitored < best_loss - 1e-7 or best_state is None:
                best_loss, best_epoch, waited = monitored, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                waited += 1
                if waited >= patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        return history, best_epoch

    @staticmethod
    def _evaluate(module, batches, y_all, w, device):
        module.eval()
        loss_sum, weight_sum, correct, count = 0.0, 0.0, 0, 0
        with torch.no_grad():
            for batch in batches.sequential():
                target = y_all[torch.as_tensor(batch.rows, device=device)]
                logits = module(batch.xs, batch.lengths)
                per = F.cross_entropy(logits, target, reduction="none")
                bw = torch.ones_like(per) if w is None else w[target]
                loss_sum += float((per * bw).sum())
                weight_sum += float(bw.sum())
                correct += int((logits.argmax(1) == target).sum())
                count += len(target)
        return loss_sum / max(weight_sum, 1e-12), correct / max(count, 1)

    def _forward_all(self, X, *, embedding: bool) -> np.ndarray:
        check_is_fitted(self, "module_")
        store = self._preprocess(self._parse_predict(X))
        module = self.module_
        param = next(module.parameters())
        device, dtype = param.device, param.dtype if param.is_floating_point() else torch.float32
        out = None
        with torch_threads(self.n_threads), torch.no_grad():
            module.eval()
            batches = Batcher(store, np.arange(store.n), max(self.batch_size, 64), dtype, device,
                              bucket_batches=self._bucket_batches, precompute=False)
            for batch in batches.sequential():
                res = module(batch.xs, batch.lengths, return_embedding=embedding)
                if not embedding:
                    res = torch.softmax(res.to(torch.float64), dim=1)
                res = res.detach().cpu().numpy().astype(np.float64)
                if out is None:
                    out = np.zeros((store.n, res.shape[1]), dtype=np.float64)
                out[batch.rows] = res
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits), columns ordered as ``classes_``."""
        return self._forward_all(X, embedding=False)

    def predict(self, X) -> np.ndarray:
        """Most probable class label for each row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def embed(self, X) -> np.ndarray:
        """The learned representation fed to the final linear layer, ``(n, d_embedding)``.

        Use it as frozen embeddings for `EmbeddingFusionHead` (end-to-end fusion).
        """
        return self._forward_all(X, embedding=True)

    # ---- persistence ---------------------------------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        module = state.pop("module_", None)
        if module is not None:
            state["module_state_"] = {
                k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()
            }
            state["module_dtype_"] = "float64" if self._predict_in_double else "float32"
        return state

    def __setstate__(self, state):
        state = dict(state)
        arrays = state.pop("module_state_", None)
        dtype = state.pop("module_dtype_", "float32")
        super().__setstate__(state)
        if arrays is not None:
            device = resolve_device(getattr(self, "device", "cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            with seeded(0, device):
                module = self._new_module(self.module_config_, device, restoring=True)
            if dtype == "float64":
                module = module.double()
            module.load_state_dict(
                {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
            )
            module.eval()
            self.module_ = module

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
