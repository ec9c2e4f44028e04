"""Mahalanobis OOD detector with input pre-processing and a feature ensemble (Lee et al., 2018).

Lee, Lee, Lee, Shin. *A Simple Unified Framework for Detecting Out-of-Distribution Samples and
Adversarial Attacks.* NeurIPS 2018, arXiv:1807.03888. Official code: pokaxpoka/
deep_Mahalanobis_detector (commit f128c35): ``lib_generation.py`` (``sample_estimator``,
``get_Mahalanobis_score``), ``lib_regression.py`` (``block_split``, ``detection_performance``),
``OOD_Regression_Mahalanobis.py``, ``calculate_log.py``.

For every probed layer ``ℓ`` (features ``f_ℓ(x)``, spatially pooled to ``(N, D_ℓ)``):

1. **Fit** (:func:`fit_gaussian`, ``sample_estimator``): class means ``μ_{ℓ,c}`` with the true
   labels; one tied covariance, the 1/N maximum-likelihood covariance of the class-centred
   features (``sklearn.covariance.EmpiricalCovariance(assume_centered=False)``), and its
   pseudo-inverse ``P_ℓ`` as precision (computed in float64).
2. **Score** (:func:`gaussian_scores`): ``G_c(f) = −½ (f − μ_c)ᵀ P (f − μ_c)``.
3. **Input pre-processing** (:func:`preprocess_input`, ``get_Mahalanobis_score``): the
   closest class ``ĉ = argmax_c G_c`` per sample and per layer; ``loss = mean_batch(−G_ĉ)``; one
   backward per layer to the input; ``g = sign(∇)`` with 0 ↦ +1 (``torch.ge(grad, 0)·2 − 1``),
   divided per channel by the input normalisation's std; ``x̃ = x − ε g``;
   ``M_ℓ(x) = max_c G_c(f_ℓ(x̃))`` (the class re-maximised).
4. **Ensemble** (``OOD_Regression_Mahalanobis.py``): a logistic regression on ``[M_1 … M_L]``
   with **OOD as the positive class** (``merge_and_generate_labels(out, in)``), fitted on half
   of the validation samples; ``ε`` chosen among the candidates by TNR@TPR95 on the other half
   (:func:`select_epsilon`). The regression is scikit-learn's ``LogisticRegressionCV``
   (defaults, ``n_jobs=1``), imported lazily: install the ``[cli]`` extra.

Validation modes of :class:`MahalanobisEnsemble` (``validation=``): ``"ood"`` (the official
protocol: tuned on validation samples of the OOD distribution the test uses, optimistic),
``"adversarial"`` (the paper's variant tuned on FGSM examples of validation in-distribution
samples; the official ADV scripts also count Gaussian-noise samples as normal, left out here)
and ``"none"`` (uniform weights ``1/L`` over layers, ``ε`` = the first candidate).

The ensemble's confidence is ``E(x) = Σ_ℓ a_ℓ M_ℓ(x) + b`` (in-distribution high; ``a, b`` are
the negated regression coefficients); **the score is ``−E``, higher = more OOD**, the logit of
the regression's OOD probability.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> feats, labels = torch.randn(200, 4, generator=g), torch.arange(200) % 2
    >>> det = Mahalanobis().fit(feats, labels)
    >>> det.score(feats[:3] + 10).min() > det.score(feats[:3]).max()
    tensor(True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from posneg import _checks

__all__ = [
    "EPSILONS",
    "VALIDATION_MODES",
    "Mahalanobis",
    "MahalanobisEnsemble",
    "fit_gaussian",
    "gaussian_scores",
    "layer_confidences",
    "mahalanobis_score",
    "preprocess_input",
    "select_epsilon",
]

CITATION = """
@inproceedings{lee2018mahalanobis,
  title     = {A Simple Unified Framework for Detecting Out-of-Distribution Samples and
               Adversarial Attacks},
  author    = {Lee, Kimin and Lee, Kibok and Lee, Honglak and Shin, Jinwoo},
  booktitle = {Advances in Neural Information Processing Systems 31 (NeurIPS 2018)},
  year      = {2018},
  note      = {arXiv:1807.03888}
}
"""

#: The official noise magnitudes (``OOD_Generate_Mahalanobis.py``), in pixel units of [0, 1].
EPSILONS: tuple[float, ...] = (0.0, 0.01, 0.005, 0.002, 0.0014, 0.001, 0.0005)
VALIDATION_MODES: tuple[str, ...] = ("ood", "adversarial", "none")

#: A function from inputs to the probed layers' pooled features, shallow to deep.
LayerFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]

_CHUNK = 512


def fit_gaussian(
    features: torch.Tensor, labels: torch.Tensor, *, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means and tied precision (pseudo-inverse of the 1/N covariance), in float64.

    Args:
        features: ``(N, D)`` training features.
        labels: ``(N,)`` integer labels in ``[0, num_classes)``; every class present.
        num_classes: number of classes (default ``labels.max() + 1``).

    Returns:
        ``(means (C, D), precision (D, D))``, float64, on the features' device.
    """
    fn = "fit_gaussian"
    x = _checks.check_embeddings(fn, "features", features, min_rows=2)
    _checks.check_finite(fn, "features", x)
    y = _checks.check_labels(fn, "labels", labels, x.shape[0], x.device)
    if bool((y < 0).any()):
        raise ValueError(f"{fn}: labels must be >= 0")
    c = int(y.max()) + 1 if num_classes is None else num_classes
    c = _checks.check_int(fn, "num_classes", c, min_value=1)
    counts = torch.bincount(y, minlength=c)
    if counts.numel() > c or bool((counts == 0).any()):
        raise ValueError(
            f"{fn}: labels must cover every class 0..{c - 1} and no other; got counts "
            f"{counts.tolist()}"
        )
    xd = x.detach().double()
    means = torch.zeros(c, x.shape[1], dtype=torch.float64, device=x.device)
    means.index_add_(0, y, xd)
    means /= counts.unsqueeze(1).double()
    centred = xd - means[y]
    centred = centred - centred.mean(dim=0)  # EmpiricalCovariance re-centres (a no-op here)
    cov = centred.T @ centred / x.shape[0]
    precision = torch.linalg.pinv(cov, hermitian=True)
    return means, precision


def gaussian_scores(
    features: torch.Tensor, *, means: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """``G_c(f) = −½ (f − μ_c)ᵀ P (f − μ_c)`` for every class: ``(N, D) -> (N, C)``.

    Computed in the dtype of ``features`` (``means``/``precision`` are cast), differentiable.
    """
    fn = "gaussian_scores"
    f = _checks.check_embeddings(fn, "features", features)
    _checks.check_float(fn, "means", means)
    _checks.check_float(fn, "precision", precision)
    if means.dim() != 2 or means.shape[1] != f.shape[1]:
        raise ValueError(f"{fn}: means must have shape (C, {f.shape[1]}); got {tuple(means.shape)}")
    if precision.shape != (f.shape[1], f.shape[1]):
        raise ValueError(
            f"{fn}: precision must have shape ({f.shape[1]}, {f.shape[1]}); "
            f"got {tuple(precision.shape)}"
        )
    mu, p = means.to(f), precision.to(f)
    d = f.unsqueeze(1) - mu.unsqueeze(0)  # (N, C, D)
    return -0.5 * torch.einsum("ncd,de,nce->nc", d, p, d)


def mahalanobis_score(
    features: torch.Tensor, *, means: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """``−max_c G_c(f) = ½ min_c`` squared Mahalanobis distance, ``(N,)``; higher = more OOD."""
    return -gaussian_scores(features, means=means, precision=precision).amax(dim=1)


def _std_view(fn: str, input_std: float | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    if isinstance(input_std, int | float) and not isinstance(input_std, bool):
        s = torch.tensor([float(input_std)], dtype=x.dtype, device=x.device)
    else:
        s = torch.as_tensor(
            [float(v) for v in cast(Sequence[float], input_std)], dtype=x.dtype, device=x.device
        )
        if x.dim() < 2 or s.numel() != x.shape[1]:
            raise ValueError(
                f"{fn}: input_std must be a number or one value per channel (dim 1 of x); "
                f"got {s.numel()} values for x of shape {tuple(x.shape)}"
            )
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"{fn}: input_std must be > 0 and finite; got {input_std!r}")
    if s.numel() == 1:
        return s.reshape(())
    return s.reshape((1, -1) + (1,) * (x.dim() - 2))


def preprocess_input(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    means: torch.Tensor,
    precision: torch.Tensor,
    epsilon: float,
    input_std: float | Sequence[float] = 1.0,
) -> torch.Tensor:
    """One signed-gradient step of size ``epsilon`` toward each sample's closest class.

    ``loss = mean_n(−G_ĉ(f(x_n)))`` with ``ĉ`` fixed (argmax, no gradient through it);
    ``g = 2·[∇_x loss >= 0] − 1`` divided per channel by ``input_std``; returns the detached
    ``x − ε g``. ``epsilon = 0`` returns ``x`` unchanged (no backward).

    Args:
        feature_fn: ``x -> (N, D)`` features of one layer (the model in eval mode).
        x: ``(N, ...)`` inputs (channels on dim 1 when ``input_std`` is per channel).
        means, precision: from :func:`fit_gaussian` for this layer.
        epsilon: step size in pixel units, ``>= 0``.
        input_std: the std the model's input was normalised with (the step is ε in pixels).
    """
    fn = "preprocess_input"
    _checks.check_float(fn, "x", x)
    eps = _checks.check_nonnegative(fn, "epsilon", epsilon)
    std = _std_view(fn, input_std, x)
    if eps == 0.0:
        return x.detach()
    with torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        g = gaussian_scores(feature_fn(xi), means=means, precision=precision)
        closest = g.detach().argmax(dim=1)
        loss = (-g.gather(1, closest.unsqueeze(1))).mean()
        (grad,) = torch.autograd.grad(loss, xi)
    sign = torch.ge(grad, 0).to(x.dtype) * 2 - 1
    return (x.detach() - eps * (sign / std)).detach()


def layer_confidences(
    layer_fn: LayerFn,
    x: torch.Tensor,
    *,
    means: Sequence[torch.Tensor],
    precisions: Sequence[torch.Tensor],
    epsilon: float,
    input_std: float | Sequence[float] = 1.0,
) -> torch.Tensor:
    """``M_ℓ(x) = max_c G_c(f_ℓ(x̃_ℓ))`` for every layer, ``(N, L)`` float64.

    Each layer gets its own pre-processed input (one backward per layer); chunks of 512 rows.
    """
    fn = "layer_confidences"
    _checks.check_float(fn, "x", x)
    if len(means) != len(precisions) or not means:
        raise ValueError(f"{fn}: means and precisions must be non-empty lists of one length")
    out = torch.empty(x.shape[0], len(means), dtype=torch.float64, device=x.device)
    for layer, (mu, p) in enumerate(zip(means, precisions, strict=True)):

        def feat(inp: torch.Tensor, layer: int = layer) -> torch.Tensor:
            return layer_fn(inp)[layer]

        for start in range(0, x.shape[0], _CHUNK):
            xb = x[start : start + _CHUNK]
            xt = preprocess_input(
                feat, xb, means=mu, precision=p, epsilon=epsilon, input_std=input_std
            )
            with torch.no_grad():
                g = gaussian_scores(feat(xt), means=mu, precision=p)
            out[start : start + xb.shape[0], layer] = g.amax(dim=1).double()
    return out


def _fit_lr(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """sklearn ``LogisticRegressionCV`` (defaults, n_jobs=1); returns OOD-logit (w, b)."""
    try:
        from sklearn.linear_model import LogisticRegressionCV
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MahalanobisEnsemble: the regression needs scikit-learn (pip install 'posneg[cli]')"
        ) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lr = LogisticRegressionCV(n_jobs=1).fit(x, y)
    if list(lr.classes_) != [0, 1]:  # pragma: no cover - the labels are built by the caller
        raise RuntimeError("MahalanobisEnsemble: the regression must see labels 0 (in) and 1 (OOD)")
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _fpr95(conf_in: np.ndarray, conf_out: np.ndarray) -> float:
    from posneg.ood.metrics import fpr_at_tpr

    return fpr_at_tpr(-conf_in, -conf_out)


def select_epsilon(
    val_in: Mapping[float, torch.Tensor], val_out: Mapping[float, torch.Tensor]
) -> tuple[float, np.ndarray, float]:
    """The official tuning: per ε, fit the regression on the first half, pick the ε with the
    highest TNR@TPR95 (lowest FPR) on the second half.

    Args:
        val_in: ε -> ``(N_in, L)`` layer confidences of validation in-distribution samples.
        val_out: ε -> ``(N_out, L)`` of validation OOD (or adversarial) samples; same keys.

    Returns:
        ``(epsilon, a (L,), b)``: the confidence weights (negated OOD-logit coefficients).
    """
    fn = "select_epsilon"
    if not val_in or set(val_in) != set(val_out):
        raise ValueError(f"{fn}: val_in and val_out must be non-empty with the same epsilons")
    best: tuple[float, float, np.ndarray, float] | None = None
    for eps in val_in:
        a_in = val_in[eps].detach().cpu().double().numpy()
        a_out = val_out[eps].detach().cpu().double().numpy()
        if a_in.shape[0] < 4 or a_out.shape[0] < 4:
            raise ValueError(f"{fn}: need at least 4 in and 4 out validation samples")
        h_in, h_out = a_in.shape[0] // 2, a_out.shape[0] // 2
        x = np.concatenate([a_out[:h_out], a_in[:h_in]])
        y = np.r_[np.ones(h_out, dtype=np.int64), np.zeros(h_in, dtype=np.int64)]
        w, b = _fit_lr(x, y)
        fpr = _fpr95(-(a_in[h_in:] @ w + b), -(a_out[h_out:] @ w + b))
        if best is None or fpr < best[1]:
            best = (eps, fpr, -w, -b)
    eps, _, a, b = cast(tuple[float, float, np.ndarray, float], best)
    return eps, a, b


def _prep_load(module: nn.Module, state_dict: Mapping[str, Any], prefix: str) -> None:
    for name, buf in list(module._buffers.items()):
        if buf is None and prefix + name in state_dict:
            module._buffers[name] = torch.empty_like(state_dict[prefix + name])


class Mahalanobis(nn.Module):
    """One-layer Mahalanobis detector on features (no pre-processing, ε = 0).

    ``fit(features, labels)`` stores ``means_`` and ``precision_`` (float64);
    ``score(features) = −max_c G_c`` (higher = more OOD).

    Args:
        num_classes: number of classes (default: from the labels at fit time).
    """

    means_: torch.Tensor | None
    precision_: torch.Tensor | None

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        if num_classes is not None:
            num_classes = _checks.check_int("Mahalanobis", "num_classes", num_classes, min_value=1)
        self.num_classes = num_classes
        self.register_buffer("means_", None)
        self.register_buffer("precision_", None)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        """Fit the class means and the tied precision on ``(N, D)`` features."""
        self.means_, self.precision_ = fit_gaussian(features, labels, num_classes=self.num_classes)
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D) -> (N,)``, higher = more OOD."""
        if self.means_ is None or self.precision_ is None:
            raise ValueError("Mahalanobis.score: call fit(features, labels) first")
        return mahalanobis_score(features, means=self.means_, precision=self.precision_)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _prep_load(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)


class MahalanobisEnsemble(nn.Module):
    """Multi-layer Mahalanobis with input pre-processing and a tuned feature ensemble.

    Use: ``fit(layer_features, labels)`` (training features of every layer) ->
    ``tune(layer_fn, val_x, val_out_x)`` (validation; ``val_out_x`` per ``validation``) ->
    ``score_inputs(layer_fn, x)``; or ``score(layer_confidences)`` on precomputed ``(N, L)``.

    Args:
        epsilons: candidate noise magnitudes (pixel units), default the official seven.
        validation: ``"ood"`` (val_out_x = validation OOD samples, official), ``"adversarial"``
            (val_out_x = FGSM of validation in-distribution samples) or ``"none"`` (uniform
            weights, ε = ``epsilons[0]``, no validation data).
        input_std: std of the input normalisation (the step is ε in pixels).

    Example:
        >>> net = torch.nn.Linear(4, 3)
        >>> layers = lambda x: [net(x), x]
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(60, 4, generator=g), torch.arange(60) % 2
        >>> det = MahalanobisEnsemble(validation="none").fit(layers(x), y).tune(layers, x)
        >>> det.score_inputs(layers, x[:5]).shape
        torch.Size([5])
    """

    weights_: torch.Tensor | None
    bias_: torch.Tensor | None
    epsilon_: torch.Tensor | None

    def __init__(
        self,
        epsilons: Sequence[float] = EPSILONS,
        validation: str = "ood",
        input_std: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        name = "MahalanobisEnsemble"
        eps = tuple(epsilons)
        if not eps:
            raise ValueError(f"{name}: epsilons must not be empty")
        self.epsilons = tuple(_checks.check_nonnegative(name, "epsilons", e) for e in eps)
        self.validation = _checks.check_choice(name, "validation", validation, VALIDATION_MODES)
        self.input_std: float | tuple[float, ...] = (
            float(input_std) if isinstance(input_std, int | float) else tuple(input_std)
        )
        n_ch = 1 if isinstance(self.input_std, float) else len(self.input_std)
        _std_view(name, self.input_std, torch.zeros(1, n_ch))
        self.gaussians_ = nn.ModuleList()
        self.register_buffer("weights_", None)
        self.register_buffer("bias_", None)
        self.register_buffer("epsilon_", None)

    def extra_repr(self) -> str:
        return (
            f"epsilons={self.epsilons}, validation={self.validation!r}, input_std={self.input_std}"
        )

    def fit(
        self, layer_features: Sequence[torch.Tensor], labels: torch.Tensor
    ) -> MahalanobisEnsemble:
        """Fit one :class:`Mahalanobis` per layer on the training features."""
        if not isinstance(layer_features, list | tuple) or not layer_features:
            raise TypeError("MahalanobisEnsemble.fit: layer_features must be a non-empty list")
        self.gaussians_ = nn.ModuleList(Mahalanobis().fit(f, labels) for f in layer_features)
        return self

    def _params(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if not len(self.gaussians_):
            raise ValueError("MahalanobisEnsemble: call fit(layer_features, labels) first")
        means = [m.means_ for m in self.gaussians_]
        precs = [m.precision_ for m in self.gaussians_]
        return means, precs  # type: ignore[return-value]

    def layer_confidences(self, layer_fn: LayerFn, x: torch.Tensor, epsilon: float) -> torch.Tensor:
        """``(N, L)`` of ``M_ℓ`` at noise ``epsilon``."""
        means, precs = self._params()
        return layer_confidences(
            layer_fn, x, means=means, precisions=precs, epsilon=epsilon, input_std=self.input_std
        )

    def tune(
        self, layer_fn: LayerFn, val_x: torch.Tensor, val_out_x: torch.Tensor | None = None
    ) -> MahalanobisEnsemble:
        """Choose ε and the ensemble weights from validation inputs (see ``validation``)."""
        means, _ = self._params()
        dev, n_layers = means[0].device, len(means)
        if self.validation == "none":
            self.weights_ = torch.full((n_layers,), 1.0 / n_layers, dtype=torch.float64, device=dev)
            self.bias_ = torch.zeros((), dtype=torch.float64, device=dev)
            self.epsilon_ = torch.tensor(self.epsilons[0], dtype=torch.float64, device=dev)
            return self
        if val_out_x is None:
            raise ValueError(
                f"MahalanobisEnsemble.tune: validation={self.validation!r} needs val_out_x"
            )
        conf_in = {e: self.layer_confidences(layer_fn, val_x, e) for e in self.epsilons}
        conf_out = {e: self.layer_confidences(layer_fn, val_out_x, e) for e in self.epsilons}
        eps, a, b = select_epsilon(conf_in, conf_out)
        self.weights_ = torch.as_tensor(a, dtype=torch.float64, device=dev)
        self.bias_ = torch.tensor(b, dtype=torch.float64, device=dev)
        self.epsilon_ = torch.tensor(eps, dtype=torch.float64, device=dev)
        return self

    def score(self, layer_conf: torch.Tensor) -> torch.Tensor:
        """``−(Σ_ℓ a_ℓ M_ℓ + b)`` from ``(N, L)`` confidences; higher = more OOD."""
        if self.weights_ is None or self.bias_ is None:
            raise ValueError("MahalanobisEnsemble.score: call fit(...) and tune(...) first")
        _checks.check_float("MahalanobisEnsemble.score", "layer_conf", layer_conf)
        if layer_conf.dim() != 2 or layer_conf.shape[1] != self.weights_.numel():
            raise ValueError(
                f"MahalanobisEnsemble.score: layer_conf must have shape (N, "
                f"{self.weights_.numel()}); got {tuple(layer_conf.shape)}"
            )
        return -(layer_conf.double() @ self.weights_ + self.bias_)

    def score_inputs(self, layer_fn: LayerFn, x: torch.Tensor) -> torch.Tensor:
        """Pre-process ``x`` at the tuned ε, then :meth:`score`; ``(N,)`` float64."""
        if self.epsilon_ is None:
            raise ValueError("MahalanobisEnsemble.score_inputs: call tune(...) first")
        return self.score(self.layer_confidences(layer_fn, x, float(self.epsilon_)))

    def forward(self, layer_conf: torch.Tensor) -> torch.Tensor:
        return self.score(layer_conf)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _prep_load(self, state_dict, prefix)
        n = len(
            {
                k[len(prefix) :].split(".")[1]
                for k in state_dict
                if k.startswith(prefix + "gaussians_.")
            }
        )
        if n and not len(self.gaussians_):
            self.gaussians_ = nn.ModuleList(Mahalanobis() for _ in range(n))
        super()._load_from_state_dict(state_dict, prefix, *args)
