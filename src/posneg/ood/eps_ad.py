"""EPS-AD: adversarial-input detection by the expected perturbation score and an MMD statistic.

Zhang, Liu, Yang, Yang, Li, Han, Tan. *Detecting Adversarial Data by Probing Multiple
Perturbations Using Expected Perturbation Score.* ICML 2023, arXiv:2305.16035. Official code:
ZSHsh98/EPS-AD (commit cceb45d): ``eval_epsad.py`` (the score loop of
``detection_test_ensattack``, flags ``--perb_image --single_vector_norm_flag``),
``score_sde/models/utils.py`` (``get_score_fn``), ``score_sde/sde_lib.py`` (``VPSDE``),
``utils_MMD.py`` (``Pdist2``, ``h1_mean_var_gram``, ``MMDu``, ``MMD_batch``, ``MMD_batch2``).

**EPS as the code computes it** (:func:`expected_perturbation_score`). Inputs ``x ∈ [0, 1]`` are
mapped to ``x' = 2x − 1``. Continuous VP-SDE (β_min = 0.1, β_max = 20):
``log a(t) = −¼ t² (β_max − β_min) − ½ t β_min``, ``σ(t) = sqrt(1 − a(t)²)``. For
``k = 1 … T*`` (``t_k = k/1000``; ``T* = diffuse_t``, 20 for CIFAR-10): one draw
``z_k ~ N(0, I)``, ``x_k = a(t_k) x' + σ(t_k) z_k``, ``s_k = score_model(x_k, t_k)``;
``EPS(x) = (1/T*) Σ_k s_k``, shaped like ``x``. The paper writes ``E_{t∼U[0,T]} ∇ log p_t(x)``;
the code is this one-draw-per-t Monte-Carlo estimate on a grid, and it is what is implemented.

**The score model** is any callable ``score_model(x_t, t) -> score`` (the score-SDE
``score_fn`` signature): ``x_t`` of the input's shape, ``t`` a ``(N,)`` tensor of continuous VP
times in ``(0, 1]``, returning ``∇_x log p_t(x_t)`` of ``x_t``'s shape. A noise-prediction
network ``eps_model(x_t, 999·t)`` (DDPM / diffusers style) is turned into one by
:func:`noise_prediction_score` (``−ε_θ / σ(t)``, as ``get_score_fn`` with ``continuous=True``).

**Kernel** (:func:`deep_kernel`, ``MMDu``): for flattened EPS ``a, b`` and features ``φ``,
``k(a, b) = (1 − ε) exp(−‖φ(a) − φ(b)‖²/σ0 − ‖a − b‖²/σ) + ε exp(−‖a − b‖²/σ)``; ``ε = 1`` is a
Gaussian kernel on raw EPS (no network). :class:`DeepKernel` holds the learned ``σ0 = p0²``,
``σ = p²``, ``ε = sigmoid(p_ε)`` and a feature net; :func:`train_deep_kernel` maximises
``MMD²_u / sqrt(V̂ + 1e−8)`` (``train_D.py``: Adam, lr 2e-3) between natural and adversarial
EPS, with :func:`mmd2_and_variance` (``h1_mean_var_gram``, paired U-statistic).

**Detection statistic** (:func:`mmd_scores`, ``MMD_batch2``): for a reference set ``R`` of
natural EPS and each test EPS ``y``, the biased ``MMD²(R, {y}) = mean(K_RR) − 2 mean_r k(r, y)
+ k(y, y)`` (``k(y, y) = 1``), vectorised (the official ``MMD_batch`` loops over ``y``).
Higher = more adversarial / OOD.

Left out: the official CIFAR/ImageNet diffusion networks (bring your own score model; the bench
trains a tiny one) and the official feature CNN sizes (``Discriminator_cifar``); the
:class:`DeepKernel` feature net is any module the caller passes (default: a small MLP).
``bandwidth="median"`` (median pairwise squared distance of the reference EPS) is a library
choice for the Gaussian path; the official code starts from ``σ = 2·H·W·sigma`` and learns it.

Example:
    >>> def score_model(x_t, t):  # N(0, I) data under the VP-SDE: p_t = N(0, I)
    ...     return -x_t
    >>> g = torch.Generator().manual_seed(0)
    >>> ref = torch.rand(32, 1, 4, 4, generator=g)
    >>> det = EPSAD(score_model, diffuse_t=5).fit(ref, generator=g)
    >>> det.score(torch.rand(3, 1, 4, 4, generator=g), generator=g).shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "EPSAD",
    "DeepKernel",
    "GaussianScore",
    "deep_kernel",
    "expected_perturbation_score",
    "median_bandwidth",
    "mmd2_and_variance",
    "mmd_scores",
    "noise_prediction_score",
    "pdist2",
    "train_deep_kernel",
    "vp_marginal",
]

CITATION = """
@inproceedings{zhang2023epsad,
  title     = {Detecting Adversarial Data by Probing Multiple Perturbations Using Expected
               Perturbation Score},
  author    = {Zhang, Shuhai and Liu, Feng and Yang, Jiahao and Yang, Yifan and Li, Changsheng
               and Han, Bo and Tan, Mingkui},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year      = {2023},
  note      = {arXiv:2305.16035}
}
"""

#: ``score_model(x_t, t) -> ∇ log p_t(x_t)``; ``t`` is ``(N,)`` continuous VP time.
ScoreModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def vp_marginal(
    t: torch.Tensor, *, beta_min: float = 0.1, beta_max: float = 20.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a(t), σ(t))`` of the continuous VP-SDE (``sde_lib.VPSDE.marginal_prob``)."""
    log_a = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    return torch.exp(log_a), torch.sqrt(1.0 - torch.exp(2.0 * log_a))


class GaussianScore(nn.Module):
    """The exact VP-SDE score of data ``x' ~ N(mean, std² I)``: ``−(x_t − a mean)/(a² std² + σ²)``.

    A closed-form ``score_model`` for tests and examples (``t`` is ``(N,)`` VP time).
    """

    def __init__(
        self, mean: float = 0.0, std: float = 1.0, *, beta_min: float = 0.1, beta_max: float = 20.0
    ) -> None:
        super().__init__()
        self.mean = _checks.check_real("GaussianScore", "mean", mean)
        self.std = _checks.check_positive("GaussianScore", "std", std)
        self.beta_min, self.beta_max = beta_min, beta_max

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sigma = vp_marginal(t.to(x_t.dtype), beta_min=self.beta_min, beta_max=self.beta_max)
        view = (-1,) + (1,) * (x_t.dim() - 1)
        a, sigma = a.reshape(view), sigma.reshape(view)
        return -(x_t - a * self.mean) / (a * a * self.std**2 + sigma * sigma)


def noise_prediction_score(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
) -> ScoreModel:
    """Wrap a noise predictor ``eps_model(x_t, 999·t)`` as ``score(x_t, t) = −ε_θ/σ(t)``.

    As ``get_score_fn(sde, model, continuous=True)`` of the official code (score-SDE).
    """

    def score(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = vp_marginal(t, beta_min=beta_min, beta_max=beta_max)[1]
        out = eps_model(x_t, t * 999)
        return -out / sigma.reshape((-1,) + (1,) * (x_t.dim() - 1))

    return score


def expected_perturbation_score(
    score_model: ScoreModel,
    x: torch.Tensor,
    *,
    diffuse_t: int = 20,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
    perturb: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``EPS(x) = (1/T*) Σ_{k=1}^{T*} s_θ(a_k x' + σ_k z_k, k/1000)`` with ``x' = 2x − 1``.

    Args:
        score_model: ``score_model(x_t, t) -> score`` (see the module docstring).
        x: ``(N, ...)`` inputs in ``[0, 1]``.
        diffuse_t: ``T*``, the number of noise levels (``t_k = k/1000``); 1 = the single score.
        beta_min, beta_max: the VP-SDE.
        perturb: draw ``x_k`` (``--perb_image``, every official command); ``False`` scores the
            clean ``x'`` at every ``t``.
        generator: for the ``z_k`` (one ``(N, ...)`` draw per ``t``, in order of ``k``).

    Returns:
        ``(N, ...)`` EPS, detached, in ``x``'s dtype.
    """
    fn = "expected_perturbation_score"
    xf = _checks.check_float(fn, "x", x)
    if xf.dim() < 2 or xf.shape[0] == 0:
        raise ValueError(f"{fn}: x must have shape (N, ...) with N >= 1; got {tuple(xf.shape)}")
    steps = _checks.check_int(fn, "diffuse_t", diffuse_t, min_value=1)
    if steps > 1000:
        raise ValueError(f"{fn}: diffuse_t must be <= 1000 (t = k/1000 <= 1); got {steps}")
    if not callable(score_model):
        raise TypeError(f"{fn}: score_model must be callable; got {type(score_model).__name__}")
    _checks.check_generator(fn, generator)
    xs = 2.0 * xf.detach() - 1.0
    total = torch.zeros_like(xs)
    gen_dev = generator.device if generator is not None else xs.device
    view = (-1,) + (1,) * (xs.dim() - 1)
    with torch.no_grad():
        for k in range(1, steps + 1):
            t = torch.full((xs.shape[0],), k / 1000, dtype=xs.dtype, device=xs.device)
            if perturb:
                z = torch.randn(xs.shape, generator=generator, dtype=xs.dtype, device=gen_dev)
                a, sigma = vp_marginal(t, beta_min=beta_min, beta_max=beta_max)
                x_t = a.reshape(view) * xs + sigma.reshape(view) * z.to(xs.device)
            else:
                x_t = xs
            s = score_model(x_t, t)
            if not isinstance(s, torch.Tensor) or s.shape != xs.shape:
                raise ValueError(
                    f"{fn}: score_model must return a tensor of shape {tuple(xs.shape)}; got "
                    f"{getattr(s, 'shape', type(s).__name__)}"
                )
            total += s.detach().to(xs.dtype)
    return total / steps


def pdist2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(n, m)``, negatives clipped to 0 (``Pdist2``)."""
    d = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * x @ y.T
    return d.clamp_min(0.0)


def deep_kernel(
    x_org: torch.Tensor,
    y_org: torch.Tensor,
    *,
    sigma: float | torch.Tensor,
    x_feat: torch.Tensor | None = None,
    y_feat: torch.Tensor | None = None,
    sigma0: float | torch.Tensor = 1.0,
    epsilon: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """``(1 − ε) exp(−D_φ/σ0 − D/σ) + ε exp(−D/σ)`` (``MMDu`` with ``is_smooth=True``).

    ``x_org, y_org``: ``(n, P)``, ``(m, P)`` flattened EPS; ``x_feat, y_feat``: their features
    (``None`` only with ``epsilon = 1``, the Gaussian kernel on raw EPS). Returns ``(n, m)``.
    """
    fn = "deep_kernel"
    d_org = pdist2(x_org, y_org)
    gauss = torch.exp(-d_org / sigma)
    if x_feat is None or y_feat is None:
        if not (isinstance(epsilon, float | int) and float(epsilon) == 1.0):
            raise ValueError(f"{fn}: x_feat and y_feat are required unless epsilon == 1")
        return gauss
    d_feat = pdist2(x_feat, y_feat)
    return (1 - epsilon) * torch.exp(-d_feat / sigma0 - d_org / sigma) + epsilon * gauss


def mmd2_and_variance(
    kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, *, unbiased: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MMD²`` and the variance estimate ``V̂`` (``h1_mean_var_gram``, ``use_1sample_U=True``).

    Unbiased: diagonals of ``K_xx``, ``K_yy`` and ``K_xy`` excluded (the paired U-statistic; it
    needs ``n_x = n_y`` for ``V̂``). ``V̂ = 4 (mean_i (h̄_i)² − (mean h)²)`` with
    ``h = K_xx + K_yy − K_xy − K_xyᵀ``.
    """
    nx, ny = kxx.shape[0], kyy.shape[0]
    if unbiased:
        xx = (kxx.sum() - kxx.diagonal().sum()) / (nx * (nx - 1))
        yy = (kyy.sum() - kyy.diagonal().sum()) / (ny * (ny - 1))
        xy = (kxy.sum() - kxy.diagonal().sum()) / (nx * (ny - 1))
    else:
        xx, yy, xy = kxx.sum() / nx**2, kyy.sum() / ny**2, kxy.sum() / (nx * ny)
    mmd2 = xx - 2 * xy + yy
    if nx != ny:
        return mmd2, torch.full_like(mmd2, float("nan"))
    hh = kxx + kyy - kxy - kxy.T
    v1 = torch.dot(hh.sum(1) / ny, hh.sum(1) / ny) / ny
    v2 = hh.sum() / nx / nx
    return mmd2, 4 * (v1 - v2**2)


def median_bandwidth(x: torch.Tensor) -> float:
    """Median of the off-diagonal pairwise squared distances of ``(n, P)`` rows (library choice)."""
    d = pdist2(x, x)
    n = d.shape[0]
    off = d[~torch.eye(n, dtype=torch.bool, device=d.device)]
    med = float(off.median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


class DeepKernel(nn.Module):
    """The learned kernel of MMD-D (Liu et al. 2020) as EPS-AD uses it.

    Args:
        featurizer: ``(N, P) -> (N, F)`` feature net on flattened EPS.
        sigma: initial ``σ`` (stored as ``sqrt σ``); official: ``2·H·W·sigma_arg``.
        sigma0: initial ``σ0`` (official CIFAR 15, ImageNet 0.5).
        epsilon_exp: ``ε_init = 10^(−epsilon_exp)`` (official CIFAR 2, ImageNet 10; the
            official init multiplies by a uniform draw, here deterministic).
    """

    def __init__(
        self, featurizer: nn.Module, *, sigma: float, sigma0: float = 15.0, epsilon_exp: float = 2.0
    ) -> None:
        super().__init__()
        fn = "DeepKernel"
        self.featurizer = featurizer
        s = _checks.check_positive(fn, "sigma", sigma)
        s0 = _checks.check_positive(fn, "sigma0", sigma0)
        e = _checks.check_positive(fn, "epsilon_exp", epsilon_exp)
        self.sigma_param = nn.Parameter(torch.tensor(math.sqrt(s)))
        self.sigma0_param = nn.Parameter(torch.tensor(math.sqrt(s0)))
        eps = 10.0 ** (-e)
        self.eps_param = nn.Parameter(torch.tensor(math.log(eps / (1 - eps))))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(σ, σ0, ε)``."""
        return self.sigma_param**2, self.sigma0_param**2, torch.sigmoid(self.eps_param)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Kernel matrix ``(n, m)`` between flattened EPS rows ``a`` and ``b``."""
        sigma, sigma0, eps = self.params()
        return deep_kernel(
            a,
            b,
            sigma=sigma,
            x_feat=self.featurizer(a),
            y_feat=self.featurizer(b),
            sigma0=sigma0,
            epsilon=eps,
        )


def train_deep_kernel(
    kernel: DeepKernel,
    natural: torch.Tensor,
    adversarial: torch.Tensor,
    *,
    epochs: int = 200,
    batch_size: int = 100,
    lr: float = 2e-3,
    generator: torch.Generator | None = None,
) -> DeepKernel:
    """Maximise ``MMD²_u / sqrt(V̂ + 1e−8)`` between natural and adversarial EPS (``train_D.py``).

    ``natural``, ``adversarial``: ``(n, P)`` flattened EPS, equal ``n``. Adam; per epoch the rows
    are shuffled with ``generator`` and cut into equal paired batches. Trains ``kernel`` in place.
    """
    fn = "train_deep_kernel"
    if natural.shape != adversarial.shape or natural.dim() != 2 or natural.shape[0] < 4:
        raise ValueError(
            f"{fn}: natural and adversarial must be (n, P) of one shape, n >= 4; got "
            f"{tuple(natural.shape)} and {tuple(adversarial.shape)}"
        )
    n = natural.shape[0]
    bs = min(_checks.check_int(fn, "batch_size", batch_size, min_value=2), n)
    opt = torch.optim.Adam(kernel.parameters(), lr=_checks.check_positive(fn, "lr", lr))
    for _ in range(_checks.check_int(fn, "epochs", epochs, min_value=0)):
        perm = torch.randperm(n, generator=generator).to(natural.device)
        for start in range(0, n - bs + 1, bs):
            idx = perm[start : start + bs]
            x, y = natural[idx], adversarial[idx]
            mmd2, var = mmd2_and_variance(kernel(x, x), kernel(y, y), kernel(x, y))
            loss = -mmd2 / torch.sqrt(var.clamp_min(0) + 1e-8)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return kernel


def mmd_scores(
    reference: torch.Tensor,
    test: torch.Tensor,
    *,
    kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Biased ``MMD²(R, {y})`` for every test row: ``mean K_RR − 2 mean_r k(r, y) + k(y, y)``.

    ``reference`` ``(n, P)``, ``test`` ``(m, P)`` (flattened EPS); ``kernel(a, b) -> (len a,
    len b)``. Vectorised form of the official ``MMD_batch`` loop (``MMD_batch2``). ``(m,)``.
    """
    fn = "mmd_scores"
    r = _checks.check_embeddings(fn, "reference", reference, min_rows=1)
    y = _checks.check_embeddings(fn, "test", test)
    _checks.check_same_dim(fn, "test", y, "reference", r)
    kxx_mean = kernel(r, r).mean()
    out = []
    for start in range(0, y.shape[0], chunk_size):
        yb = y[start : start + chunk_size]
        kry = kernel(r, yb).mean(dim=0)
        kyy = torch.stack([kernel(yb[i : i + 1], yb[i : i + 1])[0, 0] for i in range(yb.shape[0])])
        out.append(kxx_mean - 2 * kry + kyy)
    return torch.cat(out) if out else y.new_zeros(0)


class EPSAD(nn.Module):
    """EPS-AD detector: EPS of inputs, then MMD to the natural reference EPS (higher = more OOD).

    Args:
        score_model: ``score_model(x_t, t) -> score`` (module docstring).
        diffuse_t: number of noise levels ``T*`` (1 = the single-score baseline).
        kernel: a :class:`DeepKernel` (or any ``(a, b) -> K`` module); ``None`` = the Gaussian
            kernel on raw EPS (``ε = 1``) with ``bandwidth``.
        bandwidth: ``σ`` of the Gaussian path; ``"median"`` = median pairwise squared distance
            of the reference EPS, set at ``fit``.
        beta_min, beta_max: the VP-SDE.

    Fitted state: ``reference_`` (``(n, P)`` natural EPS), ``bandwidth_``.
    """

    def __init__(
        self,
        score_model: ScoreModel,
        *,
        diffuse_t: int = 20,
        kernel: nn.Module | None = None,
        bandwidth: float | str = "median",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
    ) -> None:
        super().__init__()
        fn = "EPSAD"
        if not callable(score_model):
            raise TypeError(f"{fn}: score_model must be callable; got {type(score_model).__name__}")
        self.score_model = score_model
        self.diffuse_t = _checks.check_int(fn, "diffuse_t", diffuse_t, min_value=1)
        if isinstance(bandwidth, str):
            _checks.check_choice(fn, "bandwidth", bandwidth, ("median",))
        else:
            _checks.check_positive(fn, "bandwidth", bandwidth)
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.beta_min = _checks.check_positive(fn, "beta_min", beta_min)
        self.beta_max = _checks.check_positive(fn, "beta_max", beta_max)
        self.register_buffer("reference_", torch.zeros(0, 0))
        self.bandwidth_: float = 0.0

    def extra_repr(self) -> str:
        return (
            f"diffuse_t={self.diffuse_t}, bandwidth={self.bandwidth!r}, "
            f"beta_min={self.beta_min}, beta_max={self.beta_max}"
        )

    def eps(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flattened EPS ``(N, P)`` of inputs in ``[0, 1]``."""
        e = expected_perturbation_score(
            self.score_model,
            x,
            diffuse_t=self.diffuse_t,
            beta_min=self.beta_min,
            beta_max=self.beta_max,
            generator=generator,
        )
        return e.reshape(e.shape[0], -1)

    def _kernel(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.kernel is not None:
            return self.kernel
        bw = self.bandwidth_

        def gauss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return deep_kernel(a, b, sigma=bw)

        return gauss

    def fit(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> EPSAD:
        """Store the EPS of natural reference inputs ``(n, ...)`` (official: 500 samples)."""
        ref = self.eps(x, generator=generator)
        self.reference_ = ref
        self.bandwidth_ = (
            median_bandwidth(ref) if self.bandwidth == "median" else float(self.bandwidth)
        )
        return self

    def score(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``MMD²(R, {EPS(x_i)})`` per input ``(N,)``; higher = more adversarial / OOD."""
        if self.reference_.numel() == 0:
            raise ValueError("EPSAD.score: call fit(reference inputs) first")
        with torch.no_grad():
            return mmd_scores(
                self.reference_, self.eps(x, generator=generator), kernel=self._kernel()
            )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.score(x, generator=generator)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        key = prefix + "reference_"
        if key in state_dict:
            self.reference_ = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def get_extra_state(self) -> Any:
        return {"bandwidth_": self.bandwidth_}

    def set_extra_state(self, state: Any) -> None:
        self.bandwidth_ = float(state["bandwidth_"])
