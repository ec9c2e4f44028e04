"""Adapt-then-Unlearn: EWC-adapt a GAN to negatives, then repel the retrained GAN from it.

Tiwary, Guha, Panda, Prathosh, "Adapt then Unlearn: Exploring Parameter Space Semantics for
Unlearning in Generative Adversarial Networks", TMLR 2025 (arXiv 2309.14054). Official code:
``atriguha/Adapt_Unlearn`` (read at 163a354): ``Negative_Adaptation/EWC_ADAPT_MNIST/model.py``
(``Generator.estimate_fisher``, ``consolidate``, ``ewc_loss``), ``.../stylegan2_ewc.py`` and
``Unlearning/Unlearning_MNIST/train_different_losses.py`` (``calc_difference_param_new``,
``calc_scaling_fact``, ``train``).

**Stage 1 (adapt on negatives, EWC).** From the pretrained generator ``theta0``, estimate once
the diagonal Fisher ``F_p = mean_i (dD(G(z_i)) / d theta_p)^2`` (the discriminator's raw output
per sample, 32 samples in the code; :func:`estimate_fisher`), store ``theta0`` and ``F``
(:func:`consolidate`), then fine-tune G and D on the negative samples with the GAN loss plus
``L_EWC = (lam / 2) * sum_p sum F_p * (theta_p - theta0_p)^2`` (:func:`ewc_loss`, lam = 5e8 in
the code). Repeating with different seeds gives K adapted models ``theta_N^(k)``.

**Stage 2 (unlearn with repulsion).** From ``theta0`` again, train on the positives with
``L_G + R(d)``, where (:func:`repulsion_distance`)
``d(theta) = s_K * (1/P) * sum_p sum_k mean_elem((theta_N^(k)_p - theta_p)^2)`` over the P
parameter tensors (each tensor weighs the same, whatever its size) and (:func:`repulsion_loss`)

- ``"l2"`` (NL2): ``R = -gamma * d`` (unbounded below);
- ``"exp"`` (EL2): ``R = 100 * exp(-gamma * d)``;
- ``"reci"`` (IL2): ``R = gamma / d`` (the code: ``1 / (d * (1 / gamma))``).

**The K factor** (``k_scale=``). The code writes ``avg_value = value/2*len(ckpt_gens)``, which
Python parses as ``(value / 2) * K``: ``s_K = K / 2`` and d *grows* with the number of adapted
models (``k_scale="times"``, the default, exact to the released code: use it with the
README's gamma, 1.2 for MNIST ``l2``, 0.8 for CelebA ``exp``). What the line reads like, an
average over the adapted models, is ``value / (2 K)``: ``s_K = 1 / (2 K)``
(``k_scale="over"``). For K = 1 both agree; for K > 1 they differ by a factor K^2
(tests/generative/test_unlearn.py shows it).

**``scale_by_digits``** reproduces ``--scale_repel_loss``: the divisor ``1/gamma`` is replaced
by ``10 ** n`` with n the number of decimal digits of the integer part of d (``n = 1`` for any
``0 < d < 10``; :func:`digit_scale`), used as the code uses it: ``-d / 10^n``,
``100 * exp(-d / 10^n)`` and, for ``"reci"``, ``1 / (d * 10^n)`` (the code multiplies there).

Example:
    >>> import torch
    >>> from posneg.generative.unlearn import repulsion_distance, repulsion_loss
    >>> theta = {"w": torch.zeros(2, 2), "b": torch.zeros(2)}
    >>> adapted = [{"w": torch.ones(2, 2), "b": torch.zeros(2)}]
    >>> d = repulsion_distance(params=theta, adapted=adapted)
    >>> round(float(d), 4)  # (1/2) * (1/2) * (1.0 + 0.0)
    0.25
    >>> round(float(repulsion_loss(distance=d, gamma=1.2, kind="l2")), 4)
    -0.3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from posneg._checks import check_choice, check_nonnegative

__all__ = [
    "CITATION",
    "EWCPenalty",
    "RepulsionLoss",
    "consolidate",
    "digit_scale",
    "estimate_fisher",
    "ewc_loss",
    "fisher_diagonal",
    "repulsion_distance",
    "repulsion_loss",
]

CITATION = """@article{tiwary2025adapt,
  title   = {Adapt then Unlearn: Exploring Parameter Space Semantics for Unlearning in
             Generative Adversarial Networks},
  author  = {Tiwary, Piyush and Guha, Atri and Panda, Subhodip and Prathosh, A. P.},
  journal = {Transactions on Machine Learning Research},
  year    = {2025},
  eprint  = {2309.14054},
  archivePrefix = {arXiv}
}"""

RepulsionKind = Literal["l2", "exp", "reci"]
KScale = Literal["times", "over"]
KINDS: tuple[str, ...] = ("l2", "exp", "reci")
K_SCALES: tuple[str, ...] = ("times", "over")

ParamDict = Mapping[str, torch.Tensor]


def _check_dict(fn: str, name: str, value: object) -> ParamDict:
    if not isinstance(value, Mapping) or not value:
        raise TypeError(
            f"{fn}: {name} must be a non-empty mapping name -> tensor, got {value!r:.80}"
        )
    for k, v in value.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{fn}: {name}[{k!r}] must be a tensor, got {type(v).__name__}")
    return value


def _check_like(fn: str, name: str, other: ParamDict, ref_name: str, ref: ParamDict) -> None:
    for k, v in ref.items():
        if k not in other:
            raise ValueError(f"{fn}: {name} has no entry {k!r} (present in {ref_name})")
        if tuple(other[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{fn}: {name}[{k!r}] has shape {tuple(other[k].shape)}, "
                f"{ref_name}[{k!r}] has {tuple(v.shape)}"
            )


def fisher_diagonal(*, per_sample_grads: ParamDict) -> dict[str, torch.Tensor]:
    """The diagonal Fisher estimate ``F_p = mean_i g_{i,p}^2`` from per-sample gradients.

    Args:
        per_sample_grads: name -> ``(N, *shape)`` gradients of each sample's score.

    Returns:
        name -> ``shape`` tensor, non-negative (``(g ** 2).mean(0)`` in ``estimate_fisher``).
    """
    grads = _check_dict("fisher_diagonal", "per_sample_grads", per_sample_grads)
    out = {}
    for k, g in grads.items():
        if g.dim() < 1 or g.shape[0] < 1:
            raise ValueError(
                f"fisher_diagonal: per_sample_grads[{k!r}] needs a sample dim, got {tuple(g.shape)}"
            )
        out[k] = (g.detach() ** 2).mean(0)
    return out


def estimate_fisher(
    *,
    g_model: nn.Module,
    d_model: Callable[[torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    names: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Fisher of the generator's parameters under the discriminator's score, sample by sample.

    As ``Generator.estimate_fisher``: ``x = G(latents)``, ``s = D(x)`` (raw outputs, one per
    sample), ``g_i = d s_i / d theta`` by one ``autograd.grad`` per sample, ``F = mean_i g_i^2``.
    The code restricts theta to the StyleGAN ``convs`` (32 latents, style mixing 0.9); ``names``
    selects parameters here (default: every parameter that requires grad).

    Args:
        g_model: the generator; ``g_model(latents)`` -> ``(N, ...)`` samples.
        d_model: the discriminator; returns ``(N,)`` or ``(N, 1)`` scores.
        latents: ``(N, ...)`` latent codes (draw them with your ``torch.Generator``).
        names: parameter names of ``g_model`` to estimate (others get no entry).

    Returns:
        name -> Fisher diagonal with the parameter's shape (detached).
    """
    fn = "estimate_fisher"
    if not isinstance(g_model, nn.Module):
        raise TypeError(f"{fn}: g_model must be an nn.Module, got {type(g_model).__name__}")
    if not isinstance(latents, torch.Tensor) or latents.dim() < 1 or latents.shape[0] < 1:
        raise ValueError(f"{fn}: latents must be a tensor (N, ...) with N >= 1")
    named = dict(g_model.named_parameters())
    wanted = [n for n, p in named.items() if p.requires_grad] if names is None else list(names)
    for n in wanted:
        if n not in named:
            raise ValueError(f"{fn}: names has {n!r}, not a parameter of g_model")
    if not wanted:
        raise ValueError(f"{fn}: no parameter to estimate (names is empty)")
    params = [named[n] for n in wanted]
    scores = d_model(g_model(latents)).reshape(latents.shape[0], -1)
    if scores.shape[1] != 1:
        raise ValueError(f"{fn}: d_model must give one score per sample, got {tuple(scores.shape)}")
    per_sample = [
        torch.autograd.grad(s, params, retain_graph=True, allow_unused=True) for s in scores[:, 0]
    ]
    stacked = {
        n: torch.stack([torch.zeros_like(p) if g[j] is None else g[j] for g in per_sample])
        for j, (n, p) in enumerate(zip(wanted, params, strict=True))
    }
    return fisher_diagonal(per_sample_grads=stacked)


def consolidate(
    *, params: ParamDict, fisher: ParamDict
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Store the anchor ``theta0`` and the Fisher (detached copies), as ``consolidate`` does.

    Args:
        params: name -> current (pretrained) parameter; only names in ``fisher`` are kept.
        fisher: name -> Fisher diagonal of the same shape.

    Returns:
        ``(means, fisher)``: name -> detached clones.
    """
    fn = "consolidate"
    p = _check_dict(fn, "params", params)
    f = _check_dict(fn, "fisher", fisher)
    _check_like(fn, "params", p, "fisher", f)
    return (
        {k: p[k].detach().clone() for k in f},
        {k: v.detach().clone() for k, v in f.items()},
    )


def ewc_loss(
    *, params: ParamDict, means: ParamDict, fisher: ParamDict, lam: float = 5e8
) -> torch.Tensor:
    """``(lam / 2) * sum_p sum F_p * (theta_p - theta0_p)^2`` over the names in ``fisher``.

    Args:
        params: name -> current parameter (differentiable).
        means: name -> anchor ``theta0`` (from :func:`consolidate`).
        fisher: name -> Fisher diagonal.
        lam: the strength (``lamda = 5e8`` in the code, for StyleGAN2 on MNIST).

    Returns:
        A scalar; zero, with zero gradient, at ``params == means``; its gradient is
        ``lam * F * (theta - theta0)``.
    """
    fn = "ewc_loss"
    lam = check_nonnegative(fn, "lam", lam)
    p = _check_dict(fn, "params", params)
    m = _check_dict(fn, "means", means)
    f = _check_dict(fn, "fisher", fisher)
    _check_like(fn, "params", p, "fisher", f)
    _check_like(fn, "means", m, "fisher", f)
    terms = [(f[k] * (p[k] - m[k]) ** 2).sum() for k in f]
    return (lam / 2) * torch.stack(terms).sum()


class EWCPenalty(nn.Module):
    """Module form of :func:`ewc_loss` (stores ``lam``).

    Example:
        >>> import torch
        >>> pen = EWCPenalty(lam=2.0)
        >>> p = {"w": torch.ones(3)}
        >>> float(pen(p, {"w": torch.zeros(3)}, {"w": torch.full((3,), 0.5)}))
        1.5
    """

    def __init__(self, lam: float = 5e8) -> None:
        super().__init__()
        self.lam = check_nonnegative("EWCPenalty", "lam", lam)

    def forward(self, params: ParamDict, means: ParamDict, fisher: ParamDict) -> torch.Tensor:
        return ewc_loss(params=params, means=means, fisher=fisher, lam=self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}"


def repulsion_distance(
    *, params: ParamDict, adapted: Sequence[ParamDict], k_scale: KScale = "times"
) -> torch.Tensor:
    """``d = s_K (1/P) sum_p sum_k mean((theta_N^(k)_p - theta_p)^2)`` (the code's distance).

    Args:
        params: name -> current parameter (differentiable); the P tensors compared.
        adapted: K dicts name -> adapted parameter (same names and shapes; extra names ignored).
        k_scale: ``"times"``: ``s_K = K / 2`` (the released code, default); ``"over"``:
            ``s_K = 1 / (2K)`` (the average the line reads like). See the module docstring.

    Returns:
        A non-negative scalar.
    """
    fn = "repulsion_distance"
    check_choice(fn, "k_scale", k_scale, K_SCALES)
    p = _check_dict(fn, "params", params)
    if isinstance(adapted, Mapping) or not isinstance(adapted, Sequence) or len(adapted) == 0:
        raise TypeError(f"{fn}: adapted must be a non-empty sequence of parameter dicts")
    for i, a in enumerate(adapted):
        _check_like(fn, f"adapted[{i}]", _check_dict(fn, f"adapted[{i}]", a), "params", p)
    k = len(adapted)
    per_tensor = [
        torch.stack([((a[n].to(v) - v) ** 2).mean() for a in adapted]).sum() for n, v in p.items()
    ]
    value = torch.stack(per_tensor).sum() / len(per_tensor)
    return value / 2 * k if k_scale == "times" else value / (2 * k)


def digit_scale(distance: float | torch.Tensor) -> int:
    """``calc_scaling_fact``: how many times ``d // 10`` runs before reaching 0 (0 for d <= 0)."""
    num = float(distance)
    if not math.isfinite(num):
        raise ValueError(f"digit_scale: distance must be finite, got {num}")
    fact = 0
    while num > 0:
        num = num // 10
        fact += 1
    return fact


def repulsion_loss(
    *,
    distance: torch.Tensor,
    gamma: float = 1.2,
    kind: RepulsionKind = "l2",
    scale_by_digits: bool = False,
) -> torch.Tensor:
    """The repulsion term added to the generator loss (``train`` in train_different_losses.py).

    Args:
        distance: ``d`` from :func:`repulsion_distance` (scalar).
        gamma: strength (README: 1.2 for MNIST ``l2``, 0.8 for CelebA ``exp``); ignored with
            ``scale_by_digits``.
        kind: ``"l2"`` -> ``-gamma d``; ``"exp"`` -> ``100 exp(-gamma d)``; ``"reci"`` ->
            ``gamma / d``.
        scale_by_digits: ``--scale_repel_loss``: ``f = 10 ** digit_scale(d)`` replaces
            ``1 / gamma``: ``-d / f``, ``100 exp(-d / f)``, ``1 / (d f)``.

    Returns:
        A scalar. With ``gamma = 0`` its gradient is zero for every kind (plain fine-tuning).
    """
    fn = "repulsion_loss"
    check_choice(fn, "kind", kind, KINDS)
    gamma = check_nonnegative(fn, "gamma", gamma)
    if not isinstance(distance, torch.Tensor) or distance.numel() != 1:
        raise TypeError(f"{fn}: distance must be a scalar tensor")
    d = distance.reshape(())
    if scale_by_digits:
        f = float(10 ** digit_scale(d.detach()))
        if kind == "l2":
            return -d / f
        if kind == "exp":
            return 100 * torch.exp(-d / f)
        return 1 / (d * f)
    if kind == "l2":
        return -gamma * d
    if kind == "exp":
        return 100 * torch.exp(-gamma * d)
    if gamma == 0:
        return d * 0.0  # the limit of gamma / d: no repulsion (kept in the graph)
    return 1 / (d * (1 / gamma))


class RepulsionLoss(nn.Module):
    """Module form of :func:`repulsion_distance` + :func:`repulsion_loss`.

    Example:
        >>> import torch
        >>> rep = RepulsionLoss(gamma=1.0, kind="exp")
        >>> theta = {"w": torch.zeros(4)}
        >>> float(rep(theta, [{"w": torch.zeros(4)}]))  # d = 0 -> 100 * exp(0)
        100.0
    """

    def __init__(
        self,
        gamma: float = 1.2,
        kind: RepulsionKind = "l2",
        k_scale: KScale = "times",
        scale_by_digits: bool = False,
    ) -> None:
        super().__init__()
        name = "RepulsionLoss"
        self.gamma = check_nonnegative(name, "gamma", gamma)
        self.kind = check_choice(name, "kind", kind, KINDS)
        self.k_scale = check_choice(name, "k_scale", k_scale, K_SCALES)
        if not isinstance(scale_by_digits, bool):
            raise TypeError(f"{name}: scale_by_digits must be a bool, got {scale_by_digits!r}")
        self.scale_by_digits = scale_by_digits

    def forward(self, params: ParamDict, adapted: Sequence[ParamDict]) -> torch.Tensor:
        d = repulsion_distance(params=params, adapted=adapted, k_scale=self.k_scale)  # type: ignore[arg-type]
        return repulsion_loss(
            distance=d,
            gamma=self.gamma,
            kind=self.kind,  # type: ignore[arg-type]
            scale_by_digits=self.scale_by_digits,
        )

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma:g}, kind={self.kind!r}, k_scale={self.k_scale!r}, "
            f"scale_by_digits={self.scale_by_digits}"
        )
