"""Adaptive Multi-head Contrastive Learning (AMCL, Wang et al., ECCV 2024) on SimCLR's NT-Xent."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg._tiling import compute_dtype, map_rows, mask_columns
from posneg._types import Reduction

__all__ = ["CITATION", "AMCLLoss", "TemperatureFn", "amcl", "amcl_temperature"]

CITATION = """
@inproceedings{wang2024adaptive,
  title     = {Adaptive Multi-head Contrastive Learning},
  author    = {Wang, Lei and Koniusz, Piotr and Gedeon, Tom and Zheng, Liang},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024},
  eprint    = {2310.05615},
  archivePrefix = {arXiv}
}
"""

#: ``temperature_fn(head, anchors, candidates) -> logits``: for head ``c``, anchor rows (R, D)
#: and candidate rows (M, D), the raw temperature-network outputs phi_c([z_i; z_j]) as (R, M).
TemperatureFn = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_tau_range(fn: str, tau_min: float, tau_max: float) -> tuple[float, float]:
    lo = _checks.check_positive(fn, "tau_min", tau_min)
    hi = _checks.check_positive(fn, "tau_max", tau_max)
    if not lo < hi:
        raise ValueError(f"{fn}: tau_min must be < tau_max; got tau_min={lo}, tau_max={hi}")
    return lo, hi


def amcl_temperature(logits: torch.Tensor, *, tau_min: float, tau_max: float) -> torch.Tensor:
    """Map temperature-network outputs to tau = tau_min + (tau_max - tau_min) * sigmoid(logits).

    Mathematically inside the open interval (tau_min, tau_max); in floating point the sigmoid
    saturates for |logits| beyond about 17 (float32) or 37 (float64), where tau reaches an end.
    """
    return tau_min + (tau_max - tau_min) * torch.sigmoid(logits)


def amcl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature_fn: TemperatureFn,
    tau_min: float = 1e-5,
    tau_max: float = 2.0,
    reg_weight: float = 0.1,
    reg_dim: float | None = None,
    temperature_width: int = 1,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""AMCL on SimCLR: per-head NT-Xent with pair-adaptive temperatures, plus their regulariser.

    Wang, Koniusz, Gedeon, Zheng. *Adaptive Multi-head Contrastive Learning*. ECCV 2024,
    arXiv 2310.05615. Written from the paper's SimCLR loss as recorded in posneg's paper card;
    the official repository (``LeiWangR/cl``) is not a faithful reference: its first version
    does not run and its "NT-Xent" has no negatives, and a later revision uses one shared
    temperature network, a bilinear pair score and a top-k linear surrogate for the
    log-sum-exp. Only architectural defaults are taken from it.

    For each head ``c`` with embeddings :math:`u^c = [z1_c; z2_c]` (2B rows, L2-normalised when
    ``normalize``), similarity :math:`s_c(i, j) = u^c_i \cdot u^c_j` and temperature
    :math:`\tau_c(i, j) = \tau_{min} + (\tau_{max} - \tau_{min})\,
    \sigma(\phi_c([u^c_i; u^c_j]))` (``temperature_fn``), anchor i (positive :math:`i^+`, the
    other view of the same image; the 2B - 2 other rows are negatives) has

    .. math::

        \ell_i = \sum_c \Big[ -\frac{s_c(i, i^+)}{\tau_c(i, i^+)}
            + \log \sum_{j \ne i} \exp\frac{s_c(i, j)}{\tau_c(i, j)}
            + \mathrm{reg\_weight} \cdot \frac{1}{2B - 1} \sum_{j \ne i}
              \Big(\frac{n}{2} \log \tau_c(i, j) + \frac{1}{\tau_c(i, j)}\Big) \Big]

    Choices, stated deliberately:

    - heads are **summed** (the paper's multi-head objective is a sum over heads);
    - the regulariser is averaged over every temperature the loss uses (all pairs j != i of
      each anchor, positive included) and summed over heads like the base loss;
    - ``n`` is ``reg_dim``, by default the head's embedding dimension D (the regulariser is the
      negative log-likelihood of a D-dimensional Gaussian with variance tau, up to constants;
      the later code revision uses that dimension too). Alone, the regulariser
      :math:`\frac{n}{2}\log\tau + \frac{1}{\tau}` is minimised at :math:`\tau = 2/n`;
    - the exact form of ``n`` and of the regulariser is in the paper's Table 2, which posneg's
      card marks as unverified.

    With one head and ``temperature_fn`` constant so that :math:`\tau \equiv t`, the loss minus
    its regulariser is SimCLR's NT-Xent at temperature t.

    Cost: the temperature network is evaluated on all (2B)^2 ordered pairs of each head. Rows
    are processed in blocks through :func:`posneg._tiling.map_rows`, so memory is
    O(chunk_size * 2B * temperature_width) per head (``temperature_width`` is the number of
    values ``temperature_fn`` holds per pair, e.g. phi's hidden width; it only sizes the
    blocks); time is O(C * (2B)^2 * (D + temperature_width)).

    Args:
        z1: (C, B, D) head embeddings of the first views (C heads, B >= 2 images).
        z2: (C, B, D) head embeddings of the second views, same shape, device and dtype.
        temperature_fn: ``(c, anchors (R, D), candidates (M, D)) -> (R, M)`` logits of head c's
            temperature network on the concatenation ``[anchor; candidate]``. It receives the
            (normalised) embeddings in the compute dtype and must be a pure function (it is
            re-run in backward when blocks are checkpointed).
        tau_min: lower end of the temperature range (> 0).
        tau_max: upper end of the temperature range (> tau_min).
        reg_weight: weight beta of the regulariser (>= 0; paper 0.1).
        reg_dim: n in the regulariser (> 0); ``None`` uses D.
        temperature_width: values per pair held by ``temperature_fn`` (>= 1), to size blocks.
        normalize: L2-normalise the embeddings first (cosine similarity, as SimCLR).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        chunk_size: anchor rows per block; ``None`` picks a block within the default budget.

    Returns:
        ``"none"``: (2B,) per-anchor losses ordered [view-1 anchors, view-2 anchors], each
        summed over heads with its regulariser; ``"mean"``/``"sum"``: their mean/sum as a scalar
        (float32 for half inputs, else the inputs' dtype).

    Raises:
        TypeError: non-floating inputs, mismatched dtypes, a non-callable ``temperature_fn``
            or a hyperparameter of the wrong type.
        ValueError: shapes other than (C, B, D) with B >= 2, mismatched shapes or devices,
            non-finite inputs, bad hyperparameter values, or ``temperature_fn`` returning a
            tensor that is not (R, M).

    Example:
        >>> import torch
        >>> from posneg.losses import amcl
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(2, 3, 8, 16, generator=g)  # C=3 heads, B=8, D=16
        >>> const = lambda c, a, b: torch.zeros(a.shape[0], b.shape[0])  # tau = midpoint
        >>> amcl(z1, z2, temperature_fn=const).shape
        torch.Size([])
    """
    fn = "amcl"
    for name, t in (("z1", z1), ("z2", z2)):
        _checks.check_float(fn, name, t)
        if t.dim() != 3:
            raise ValueError(f"{fn}: {name} must have shape (C, B, D); got {tuple(t.shape)}")
    if z2.shape != z1.shape:
        raise ValueError(
            f"{fn}: z2 must have shape (C, B, D) matching z1 {tuple(z1.shape)}; "
            f"got {tuple(z2.shape)}"
        )
    _checks.check_same_device(fn, "z2", z2, "z1", z1)
    _checks.check_same_dtype(fn, "z2", z2, "z1", z1)
    n_heads, batch, dim = (int(s) for s in z1.shape)
    if n_heads < 1 or dim < 1:
        raise ValueError(f"{fn}: z1 must have C >= 1 and D >= 1; got {tuple(z1.shape)}")
    if batch < 2:
        raise ValueError(f"{fn}: z1 must have at least 2 rows (B >= 2); got {tuple(z1.shape)}")
    if not callable(temperature_fn):
        raise TypeError(
            f"{fn}: temperature_fn must be callable; got {type(temperature_fn).__name__}"
        )
    tau_min, tau_max = _check_tau_range(fn, tau_min, tau_max)
    reg_weight = _checks.check_nonnegative(fn, "reg_weight", reg_weight)
    n_reg = float(dim) if reg_dim is None else _checks.check_positive(fn, "reg_dim", reg_dim)
    temperature_width = _checks.check_int(fn, "temperature_width", temperature_width, min_value=1)
    _checks.check_bool(fn, "normalize", normalize)
    reduction = _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_finite(fn, "z1", z1)
    _checks.check_finite(fn, "z2", z2)

    dt = compute_dtype(z1)
    u = torch.cat([z1, z2], dim=1).to(dt)  # (C, 2B, D)
    if normalize:
        u = F.normalize(u, dim=-1)
    n_rows = 2 * batch
    half_n = 0.5 * n_reg

    def block(start: int, stop: int, u: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(start, stop, device=u.device)
        self_cols = rows.unsqueeze(1)
        pos_cols = ((rows + batch) % n_rows).unsqueeze(1)
        out = torch.zeros(stop - start, dtype=u.dtype, device=u.device)
        for c in range(n_heads):
            anchors, cands = u[c, start:stop], u[c]
            logits = temperature_fn(c, anchors, cands)
            if not isinstance(logits, torch.Tensor) or logits.shape != (stop - start, n_rows):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
                raise ValueError(
                    f"{fn}: temperature_fn must return a ({stop - start}, {n_rows}) tensor "
                    f"(anchors x candidates); got {got}"
                )
            tau = amcl_temperature(logits.to(u.dtype), tau_min=tau_min, tau_max=tau_max)
            scaled = (anchors @ cands.T) / tau
            lse = torch.logsumexp(mask_columns(scaled, self_cols), dim=1)
            positive = scaled.gather(1, pos_cols).squeeze(1)
            reg = half_n * torch.log(tau) + 1.0 / tau
            reg = (reg.sum(dim=1) - reg.gather(1, self_cols).squeeze(1)) / (n_rows - 1)
            out = out + (lse - positive) + reg_weight * reg
        return out

    per_anchor = map_rows(
        block, n_rows, n_rows * n_heads * temperature_width, u, chunk_size=chunk_size
    )
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    return per_anchor


class AMCLLoss(nn.Module):
    r"""AMCL for SimCLR as a module that owns its projection heads and temperature networks.

    Wang, Koniusz, Gedeon, Zheng. *Adaptive Multi-head Contrastive Learning*. ECCV 2024,
    arXiv 2310.05615. ``forward(h1, h2)`` takes backbone features of two views, projects them
    with C heads (``in_dim -> hidden_dim -> ReLU -> out_dim``), and calls :func:`amcl` with the
    head-wise temperature networks
    :math:`\phi_c: 2\,\mathrm{out\_dim} \to \mathrm{temperature\_hidden\_dim} \to
    \mathrm{ReLU} \to 1` on :math:`[z_i; z_j]`. Defaults follow the paper's architecture
    (C = 3, 512 -> 512 -> 128 heads, phi 256 -> 128 -> 1, tau in (1e-5, 2), beta = 0.1).

    Unlike posneg's other losses this module has parameters: add ``loss.parameters()`` to the
    optimiser. ``project(h)`` gives the heads' embeddings and ``temperatures(c, a, b)`` the
    temperatures of head ``c`` for inspection. The first layer of phi_c is split into its
    anchor and candidate halves, so the (R, M, hidden) activations of a block are a broadcast
    sum rather than a concatenation; the result equals phi_c(cat([z_i, z_j])).

    Args:
        in_dim: backbone feature dimension.
        num_heads: number of projection heads C (>= 1).
        hidden_dim: hidden width of each projection head.
        out_dim: output dimension of each head (D of :func:`amcl`).
        temperature_hidden_dim: hidden width of each temperature network phi_c.
        tau_min, tau_max, reg_weight, reg_dim, normalize, reduction, chunk_size: see
            :func:`amcl`.
        generator: draws the initial weights from this generator (the same uniform
            +-1/sqrt(fan_in) law as ``nn.Linear``'s default), leaving the global RNG untouched;
            ``None`` uses ``nn.Linear``'s initialisation from torch's global RNG.

    Raises:
        TypeError, ValueError: bad hyperparameters (in ``__init__``); in ``forward``, inputs
        that are not (B, in_dim) floating tensors of the parameters' dtype (half inputs are
        computed in float32 when the parameters are float32) and device, and the errors of
        :func:`amcl`.

    Example:
        >>> import torch
        >>> from posneg.losses import AMCLLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> loss_fn = AMCLLoss(32, num_heads=2, hidden_dim=32, out_dim=16, generator=g)
        >>> h1, h2 = torch.randn(2, 8, 32, generator=g)
        >>> loss = loss_fn(h1, h2)
        >>> loss.backward()
        >>> loss_fn.temperature_nets[0][0].weight.grad is not None
        True
    """

    def __init__(
        self,
        in_dim: int,
        *,
        num_heads: int = 3,
        hidden_dim: int = 512,
        out_dim: int = 128,
        temperature_hidden_dim: int = 128,
        tau_min: float = 1e-5,
        tau_max: float = 2.0,
        reg_weight: float = 0.1,
        reg_dim: float | None = None,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        fn = "AMCLLoss"
        self.in_dim = _checks.check_int(fn, "in_dim", in_dim, min_value=1)
        self.num_heads = _checks.check_int(fn, "num_heads", num_heads, min_value=1)
        self.hidden_dim = _checks.check_int(fn, "hidden_dim", hidden_dim, min_value=1)
        self.out_dim = _checks.check_int(fn, "out_dim", out_dim, min_value=1)
        self.temperature_hidden_dim = _checks.check_int(
            fn, "temperature_hidden_dim", temperature_hidden_dim, min_value=1
        )
        self.tau_min, self.tau_max = _check_tau_range(fn, tau_min, tau_max)
        self.reg_weight = _checks.check_nonnegative(fn, "reg_weight", reg_weight)
        self.reg_dim = None if reg_dim is None else _checks.check_positive(fn, "reg_dim", reg_dim)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)
        _checks.check_generator(fn, generator, torch.device("cpu"))  # parameters start on CPU

        # With a generator, layers are created uninitialised (no draw from the global RNG) and
        # then filled from the generator; without one, nn.Linear's own initialisation is used.
        def linear(n_in: int, n_out: int) -> nn.Linear:
            if generator is None:
                return nn.Linear(n_in, n_out)
            layer: nn.Linear = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)
            return layer

        self.heads = nn.ModuleList(
            nn.Sequential(
                linear(self.in_dim, self.hidden_dim),
                nn.ReLU(),
                linear(self.hidden_dim, self.out_dim),
            )
            for _ in range(self.num_heads)
        )
        self.temperature_nets = nn.ModuleList(
            nn.Sequential(
                linear(2 * self.out_dim, self.temperature_hidden_dim),
                nn.ReLU(),
                linear(self.temperature_hidden_dim, 1),
            )
            for _ in range(self.num_heads)
        )
        if generator is not None:
            self._init_from(generator)

    @torch.no_grad()
    def _init_from(self, generator: torch.Generator) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                for p in (module.weight, module.bias):
                    p.copy_(
                        _rng.uniform(
                            tuple(p.shape),
                            low=-bound,
                            high=bound,
                            dtype=p.dtype,
                            device=p.device,
                            generator=generator,
                        )
                    )

    def _check_input(self, name: str, h: torch.Tensor) -> torch.Tensor:
        fn = "AMCLLoss"
        _checks.check_embeddings(fn, name, h, min_rows=2)
        if h.shape[1] != self.in_dim:
            raise ValueError(
                f"{fn}: {name} must have shape (B, {self.in_dim}) (in_dim); got {tuple(h.shape)}"
            )
        weight = next(self.parameters())
        x = h.to(compute_dtype(h)) if weight.dtype == torch.float32 else h
        if x.dtype != weight.dtype:
            raise TypeError(
                f"{fn}: {name} has dtype {h.dtype} but the module's parameters are "
                f"{weight.dtype}; convert one of them (e.g. loss_fn.to({h.dtype}))"
            )
        if x.device != weight.device:
            raise ValueError(
                f"{fn}: {name} is on {x.device} but the module's parameters are on "
                f"{weight.device}; move them to one device"
            )
        _checks.check_finite(fn, name, h)
        return x

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Head embeddings (C, B, out_dim) of backbone features ``h`` (B, in_dim), unnormalised."""
        return torch.stack([head(h) for head in self.heads])

    def temperature_logits(
        self, head: int, anchors: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """phi_head([anchor_i; candidate_j]) for all pairs: (R, M) from (R, D) and (M, D)."""
        net = cast(nn.Sequential, self.temperature_nets[head])
        first, last = cast(nn.Linear, net[0]), cast(nn.Linear, net[2])
        w_a, w_c = first.weight[:, : self.out_dim], first.weight[:, self.out_dim :]
        hidden = (anchors @ w_a.T + first.bias).unsqueeze(1) + (candidates @ w_c.T).unsqueeze(0)
        out = torch.relu(hidden) @ last.weight.squeeze(0) + last.bias
        return out  # (R, M)

    def temperatures(
        self, head: int, anchors: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """tau_head(i, j) in (tau_min, tau_max) for all pairs: (R, M)."""
        return amcl_temperature(
            self.temperature_logits(head, anchors, candidates),
            tau_min=self.tau_min,
            tau_max=self.tau_max,
        )

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """Loss of backbone features ``h1``, ``h2`` (B, in_dim) of two views of B images."""
        x1 = self._check_input("h1", h1)
        x2 = self._check_input("h2", h2)
        if h2.shape != h1.shape:
            raise ValueError(
                f"AMCLLoss: h2 must have shape (B, D) matching h1 {tuple(h1.shape)}; "
                f"got {tuple(h2.shape)}"
            )
        return amcl(
            self.project(x1),
            self.project(x2),
            temperature_fn=self.temperature_logits,
            tau_min=self.tau_min,
            tau_max=self.tau_max,
            reg_weight=self.reg_weight,
            reg_dim=self.reg_dim,
            temperature_width=self.temperature_hidden_dim,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, num_heads={self.num_heads}, hidden_dim={self.hidden_dim}, "
            f"out_dim={self.out_dim}, temperature_hidden_dim={self.temperature_hidden_dim}, "
            f"tau_min={self.tau_min}, tau_max={self.tau_max}, reg_weight={self.reg_weight}, "
            f"reg_dim={self.reg_dim}, normalize={self.normalize}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )
