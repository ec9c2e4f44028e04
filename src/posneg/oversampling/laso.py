"""LaSO: label-set operation networks that synthesise multi-label features.

Alfassy, Karlinsky, Aides, Shtok, Harary, Feris, Giryes, Bronstein. *LaSO: Label-Set Operations
networks for multi-label few-shot learning.* CVPR 2019, arXiv 1902.09811. Released code:
leokarlin/LaSO (``oneshot/setops_models/res_setops.py``, ``scripts_coco/train_setops_stripped.py``).

Three networks take the features of two samples ``a`` and ``b`` and return a feature vector whose
label set is ``L(a) & L(b)`` (intersection), ``L(a) | L(b)`` (union) or ``L(a) - L(b)``
(subtraction). They are trained so that a fixed multi-label classifier reads the right label set
off their outputs, with reconstruction, symmetry and set-identity ("tautology") terms, and are then
used to synthesise labelled features for few-shot multi-label episodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from posneg import _checks

__all__ = ["OPS", "LaSO", "SetOpNet"]

CITATION = """
@inproceedings{alfassy2019laso,
  title     = {{LaSO}: Label-Set Operations networks for multi-label few-shot learning},
  author    = {Alfassy, Amit and Karlinsky, Leonid and Aides, Amit and Shtok, Joseph and
               Harary, Sivan and Feris, Rogerio and Giryes, Raja and Bronstein, Alex M.},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  pages     = {6548--6557},
  year      = {2019},
  note      = {arXiv:1902.09811}
}
"""

Op = Literal["intersection", "union", "subtraction"]
#: The three label-set operations, in the order :meth:`LaSO.augment` cycles through them.
OPS: tuple[str, ...] = ("intersection", "union", "subtraction")
_PAIRS: tuple[str, ...] = ("shared", "random")

Array = Any  # a torch.Tensor or a numpy.ndarray (the output type follows the input)


def _sub_relu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.relu(a - b)


_RESIDUAL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "intersection": torch.minimum,
    "union": torch.add,
    "subtraction": _sub_relu,
}


def _linear(
    n_in: int, n_out: int, dtype: torch.dtype, device: torch.device, gen: torch.Generator | None
) -> nn.Linear:
    """An ``nn.Linear`` with torch's default init drawn from ``gen`` (global RNG untouched)."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, device=device, dtype=dtype)
    bound = 1.0 / math.sqrt(n_in)  # kaiming_uniform(a=sqrt(5)) on weight == U(-1/sqrt(fan_in), .)
    with torch.no_grad():
        w = torch.rand(layer.weight.shape, generator=gen, device=device, dtype=dtype)
        layer.weight.copy_((2.0 * w - 1.0) * bound)
        bias = torch.rand(layer.bias.shape, generator=gen, device=device, dtype=dtype)
        layer.bias.copy_((2.0 * bias - 1.0) * bound)
    return layer


class _ResBlock(nn.Module):
    """``leaky_relu(BN(fc(h)) + residual, 0.2)`` (the released ``SetopResBasicBlock``)."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device, gen: Any) -> None:
        super().__init__()
        self.fc = _linear(dim, dim, dtype, device, gen)
        self.bn = nn.BatchNorm1d(dim, device=device, dtype=dtype)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.bn(self.fc(h)) + residual, 0.2)


class SetOpNet(nn.Module):
    """One label-set operation network ``M(a, b)`` (the released ``SetopResBlock_v1``).

    ``h = leaky_relu(BN(W [a, b]), 0.2)``; then ``n_layers`` residual blocks
    ``h = leaky_relu(BN(W_l h) + r(a, b), 0.2)`` where ``r`` is the operation's arithmetic prior
    (``min(a, b)`` for intersection, ``a + b`` for union, ``relu(a - b)`` for subtraction); the
    output is ``W_out h`` followed by a ReLU when the features are non-negative (post-ReLU
    backbone features, as in the paper), then dropout when ``dropout > 0``.
    """

    def __init__(
        self,
        op: str,
        dim: int,
        *,
        n_layers: int,
        output_relu: bool,
        dropout: float,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__()
        self.op = op
        self.dim = dim
        self.output_relu = output_relu
        self.dropout = dropout
        self.inp = _linear(2 * dim, dim, dtype, device, generator)
        self.inp_bn = nn.BatchNorm1d(dim, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(
            [_ResBlock(dim, dtype, device, generator) for _ in range(n_layers)]
        )
        self.out = _linear(dim, dim, dtype, device, generator)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Synthesised features (B, D) for the pair ``(a, b)``."""
        h = F.leaky_relu(self.inp_bn(self.inp(torch.cat([a, b], dim=1))), 0.2)
        res = _RESIDUAL[self.op](a, b)
        for block in self.blocks:
            h = block(h, res)
        out = self.out(h)
        if self.output_relu:
            out = F.relu(out)
        if self.dropout > 0 and self.training:
            # deterministic dropout is not available with a generator; the released default is 0
            out = F.dropout(out, p=self.dropout, training=True)
        return out

    def extra_repr(self) -> str:
        return f"op={self.op!r}, dim={self.dim}, output_relu={self.output_relu}"


def _to_tensor(fn: str, name: str, x: Any) -> tuple[torch.Tensor, bool]:
    """A tensor view of ``x`` and whether the caller gave numpy."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
            raise TypeError(f"{fn}: {name} must hold numbers; got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise TypeError(f"{fn}: {name} must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}")


def _check_labels(fn: str, labels: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if labels.is_complex():
        raise TypeError(f"{fn}: labels must be real (multi-hot 0/1); got {labels.dtype}")
    if labels.dim() != 2 or labels.shape[0] != n or labels.shape[1] < 1:
        raise ValueError(
            f"{fn}: labels must be multi-hot of shape ({n}, L) with L >= 1; "
            f"got {tuple(labels.shape)}"
        )
    if labels.device != device:
        raise ValueError(
            f"{fn}: labels is on {labels.device} but features is on {device}; "
            "move them to one device"
        )
    lab = labels.to(torch.float64)
    if not bool(((lab == 0) | (lab == 1)).all()):
        raise ValueError(f"{fn}: labels must be multi-hot (every entry 0 or 1)")
    return labels.bool()


class LaSO:
    """Label-set operation networks (intersection, union, subtraction) in feature space.

    Alfassy et al. *LaSO: Label-Set Operations networks for multi-label few-shot learning.*
    CVPR 2019, arXiv 1902.09811.

    :meth:`fit` first trains a linear multi-label classifier ``C`` (BCE) on the given features
    (the paper's classifier comes with the pre-trained backbone and stays fixed; here it is fitted
    on the same features, then frozen), then trains ``M_int``, ``M_uni``, ``M_sub``
    (:class:`SetOpNet`) on pairs ``(a, b)`` with ``A = L(a)``, ``B = L(b)``; ``BCE`` is the
    multi-label soft-margin loss (mean BCE with logits) and ``MSE`` the mean squared error. The
    terms are those of the released training script with every toggle on (its defaults)::

        classification (C frozen, gradients reach the M networks):
          BCE(C(M_sub(a,b)), A-B) + BCE(C(M_sub(b,a)), B-A)
          + BCE(C(M_sub(M_sub(a,b), b)), A-B) + BCE(C(M_sub(M_sub(b,a), a)), B-A)
          + BCE(C(M_sub(a, M_int(a,b))), A-B) + BCE(C(M_sub(a, M_int(b,a))), A-B)
          + BCE(C(M_sub(b, M_int(a,b))), B-A) + BCE(C(M_sub(b, M_int(b,a))), B-A)
          + BCE(C(M_uni(a,b)), A|B) + BCE(C(M_uni(b,a)), A|B)
          + BCE(C(M_uni(M_uni(a,b), b)), A|B) + BCE(C(M_uni(M_uni(b,a), a)), A|B)
          + BCE(C(M_int(a,b)), A&B) + BCE(C(M_int(b,a)), A&B)
          + BCE(C(M_int(M_int(a,b), b)), A&B) + BCE(C(M_int(M_int(b,a), a)), A&B)
          + BCE(C(a'), A) + BCE(C(b'), B)
        reconstruction, times recon_weight:
          MSE(a, a') + MSE(b, b')      with a' = M_uni(M_sub(a, M_int(b,a)), M_int(a,b)),
                                            b' = M_uni(M_sub(b, M_int(a,b)), M_int(b,a))
          + MSE(M_uni(a,b), M_uni(b,a)) + MSE(M_int(a,b), M_int(b,a))
          + sum over x in {M_sub(M_sub(a,b), b), M_sub(a, M_int(a,b)), M_sub(a, M_int(b,a))}
            of MSE(M_sub(a,b), x), and the same with a and b swapped

    Paper versus released code, and choices made here:

    - The PAPERS.md card (from the paper, unverified) lists idempotence terms such as
      ``M_int(a, a) = a`` and ``M_sub(M_uni(a, b), b) = M_sub(a, b)``; the released script does
      not use them. This follows the released script (checked against leokarlin/LaSO).
    - Network: the released ``SetopResBlock_v1`` (width = feature dim, ``n_layers`` residual
      blocks with the arithmetic prior, output ReLU because its features are post-ReLU). Here
      the output ReLU is on when every training feature is >= 0 (``output_relu=None``).
    - Pairs: the released sampler pairs each image with one that shares at least one label,
      balancing labels by a running histogram; ``pairs="shared"`` draws a uniform label of
      ``a`` and a uniform sample carrying it (no histogram), ``pairs="random"`` any pair.
    - Optimiser: Adam (lr 1e-3, weight decay 1e-4) rather than the released SGD with a cyclic
      schedule, which suits the small CPU runs this library targets.
    - Backbone: fixed. The released ``scripts_coco/train_setops_stripped.py`` (leokarlin/LaSO,
      commit eea81de6046cc0817fc81a1d1570d967c1bb0aef) has ``train_base = True`` by default:
      the backbone is fine-tuned jointly with the set-operation networks (its embeddings are
      computed with gradients, ``conditional(not train_base, torch.no_grad())``), while the
      README's commands pass ``--train_base=False``. ``LaSO`` works on features the caller
      computed, so it always reproduces ``train_base=False``; joint fine-tuning needs the
      caller's own loop around the backbone (``train_classifier`` is False there too: the
      classifier stays frozen, as here).

    Args:
        n_layers: residual blocks per network (released: 1).
        recon_weight: weight of all reconstruction terms (released: 1).
        lr: Adam learning rate for the operation networks and the classifier.
        weight_decay: Adam weight decay (released: 1e-4).
        batch_size: pairs per step (>= 2: BatchNorm needs two rows).
        classifier_epochs: epochs of the classifier's BCE training before the networks train.
        pairs: ``"shared"`` (pairs share a label, as released) or ``"random"``.
        output_relu: ReLU on the outputs; ``None`` decides from the training features.
        dropout: output dropout while training (released: 0). It draws from the global RNG,
            so keep 0 for runs that must not touch it.

    Attributes (after :meth:`fit`):
        intersection_, union_, subtraction_: the :class:`SetOpNet` modules (frozen, eval mode).
        classifier_: the frozen ``nn.Linear(D, L)`` multi-label classifier.
        n_features_, n_labels_: D and L.
        history_: mean training loss per epoch.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = (torch.rand(64, 4, generator=g) < 0.4).float()
        >>> feats = labels.repeat_interleave(3, dim=1) + 0.05 * torch.rand(64, 12, generator=g)
        >>> laso = LaSO(classifier_epochs=5).fit(feats, labels, epochs=2, generator=g)
        >>> laso.synthesise(feats[:5], feats[5:10], "union").shape
        torch.Size([5, 12])
    """

    def __init__(
        self,
        *,
        n_layers: int = 1,
        recon_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        classifier_epochs: int = 50,
        pairs: str = "shared",
        output_relu: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        fn = "LaSO"
        self.n_layers = _checks.check_int(fn, "n_layers", n_layers, min_value=1)
        self.recon_weight = _checks.check_nonnegative(fn, "recon_weight", recon_weight)
        self.lr = _checks.check_positive(fn, "lr", lr)
        self.weight_decay = _checks.check_nonnegative(fn, "weight_decay", weight_decay)
        self.batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=2)
        self.classifier_epochs = _checks.check_int(
            fn, "classifier_epochs", classifier_epochs, min_value=1
        )
        self.pairs = _checks.check_choice(fn, "pairs", pairs, _PAIRS)
        if output_relu is not None and not isinstance(output_relu, bool):
            raise TypeError(
                f"{fn}: output_relu must be a bool or None; got {type(output_relu).__name__}"
            )
        self.output_relu = output_relu
        self.dropout = _checks.check_range(fn, "dropout", dropout, 0.0, 1.0, high_open=True)
        self.intersection_: SetOpNet | None = None
        self.union_: SetOpNet | None = None
        self.subtraction_: SetOpNet | None = None
        self.classifier_: nn.Linear | None = None
        self.n_features_: int | None = None
        self.n_labels_: int | None = None
        self.history_: list[float] = []

    def __repr__(self) -> str:
        fitted = "" if self.classifier_ is None else f", fitted D={self.n_features_}"
        return (
            f"LaSO(n_layers={self.n_layers}, recon_weight={self.recon_weight}, lr={self.lr}, "
            f"weight_decay={self.weight_decay}, batch_size={self.batch_size}, "
            f"classifier_epochs={self.classifier_epochs}, pairs={self.pairs!r}, "
            f"output_relu={self.output_relu}, dropout={self.dropout}{fitted})"
        )

    # ------------------------------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------------------------------

    def _build(
        self,
        n_features: int,
        n_labels: int,
        output_relu: bool,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
    ) -> None:
        nets = {
            op: SetOpNet(
                op,
                n_features,
                n_layers=self.n_layers,
                output_relu=output_relu,
                dropout=self.dropout,
                dtype=dtype,
                device=device,
                generator=generator,
            )
            for op in OPS
        }
        self.intersection_ = nets["intersection"]
        self.union_ = nets["union"]
        self.subtraction_ = nets["subtraction"]
        self.classifier_ = _linear(n_features, n_labels, dtype, device, generator)
        self.n_features_ = n_features
        self.n_labels_ = n_labels

    def _nets(self) -> tuple[SetOpNet, SetOpNet, SetOpNet, nn.Linear]:
        if (
            self.intersection_ is None
            or self.union_ is None
            or self.subtraction_ is None
            or self.classifier_ is None
        ):
            raise ValueError("LaSO: not fitted yet; call fit(features, labels) first")
        return self.intersection_, self.union_, self.subtraction_, self.classifier_

    def fit(
        self,
        features: Array,
        labels: Array,
        *,
        epochs: int = 50,
        generator: torch.Generator | None = None,
    ) -> LaSO:
        """Train the classifier, then the three operation networks; return ``self``.

        Args:
            features: (N, D) float features (tensor or numpy), N >= 2, finite. Half-precision
                features are trained in float32.
            labels: (N, L) multi-hot 0/1 label sets (float, int or bool).
            epochs: passes over the N samples (each sample is ``a`` once per epoch).
            generator: the source of every draw (initial weights, pairs, batches); ``None``
                uses torch's global RNG. Same generator state, device and inputs give the same
                networks.

        Returns:
            ``self``, fitted.

        Raises:
            TypeError: non-float features, non-tensor inputs, wrong generator type.
            ValueError: shapes, non-multi-hot labels, NaN/inf, fewer than 2 samples, devices.
        """
        fn = "LaSO.fit"
        x, _ = _to_tensor(fn, "features", features)
        y_raw, _ = _to_tensor(fn, "labels", labels)
        _checks.check_embeddings(fn, "features", x, min_rows=2)
        _checks.check_finite(fn, "features", x)
        epochs = _checks.check_int(fn, "epochs", epochs, min_value=1)
        _checks.check_generator(fn, generator, x.device)
        y = _check_labels(fn, y_raw, x.shape[0], x.device)
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        x = x.to(dtype)
        yf = y.to(dtype)
        n, d = x.shape
        out_relu = bool((x >= 0).all()) if self.output_relu is None else self.output_relu
        self._build(d, y.shape[1], out_relu, dtype, x.device, generator)
        inter, uni, sub, clf = self._nets()
        bs = min(self.batch_size, n)

        # 1. the multi-label classifier, then frozen
        opt_c = torch.optim.Adam(clf.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.classifier_epochs):
            perm = torch.randperm(n, generator=generator, device=x.device)
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                loss = F.binary_cross_entropy_with_logits(clf(x[idx]), yf[idx])
                opt_c.zero_grad(set_to_none=True)
                loss.backward()
                opt_c.step()
        clf.requires_grad_(False)
        clf.eval()

        # 2. the operation networks
        params = [p for net in (inter, uni, sub) for p in net.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        for net in (inter, uni, sub):
            net.train()
        self.history_ = []
        for _ in range(epochs):
            ia = torch.randperm(n, generator=generator, device=x.device)
            ib = self._partners(y, ia, generator)
            total, steps = 0.0, 0
            for start in range(0, n, bs):
                a_idx, b_idx = ia[start : start + bs], ib[start : start + bs]
                if a_idx.numel() < 2:  # BatchNorm needs two rows
                    continue
                loss = self._loss(x[a_idx], x[b_idx], y[a_idx], y[b_idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
            self.history_.append(total / max(steps, 1))
        for net in (inter, uni, sub):
            net.requires_grad_(False)
            net.eval()
        return self

    def _partners(
        self, y: torch.Tensor, ia: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """For each ``a`` in ``ia``, a partner ``b``: one sharing a label, or any (``random``)."""
        n = y.shape[0]
        dev = ia.device
        any_b = torch.randint(n, (n,), generator=generator, device=dev)
        if self.pairs == "random":
            return any_b
        ya = y[ia].to(torch.float64)
        has = ya.sum(dim=1) > 0
        weights = torch.where(has[:, None], ya, torch.ones_like(ya))
        label = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (N,)
        counts = y.sum(dim=0)  # (L,) samples carrying each label
        order = torch.argsort(y.to(torch.int8).T, dim=1, descending=True, stable=True)  # (L, N)
        u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
        pos = (u * counts[label].to(torch.float64)).long().clamp_max(n - 1)
        shared = order[label, pos]
        return torch.where(has, shared, any_b)

    def _loss(
        self, a: torch.Tensor, b: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor
    ) -> torch.Tensor:
        inter, uni, sub, clf = self._nets()
        dt = a.dtype
        t_i = (ya & yb).to(dt)
        t_u = (ya | yb).to(dt)
        t_ab = (ya & ~yb).to(dt)
        t_ba = (yb & ~ya).to(dt)
        t_a, t_b = ya.to(dt), yb.to(dt)

        # Each network's calls at one depth run as one batch (7 calls instead of the released
        # 18; BatchNorm's training statistics are then over the joint batch).
        def calls(net: SetOpNet, *pairs: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
            out = net(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
            return list(out.split(a.shape[0]))

        a_s_b, b_s_a = calls(sub, (a, b), (b, a))
        a_i_b, b_i_a = calls(inter, (a, b), (b, a))
        a_u_b, b_u_a = calls(uni, (a, b), (b, a))
        a_s_b_b, b_s_a_a, a_s_b_i_a, b_s_a_i_b, a_s_a_i_b, b_s_b_i_a = calls(
            sub, (a_s_b, b), (b_s_a, a), (a, b_i_a), (b, a_i_b), (a, a_i_b), (b, b_i_a)
        )
        a_i_b_b, b_i_a_a = calls(inter, (a_i_b, b), (b_i_a, a))
        a_u_b_b, b_u_a_a = calls(uni, (a_u_b, b), (b_u_a, a))
        fake_a, fake_b = calls(uni, (a_s_b_i_a, a_i_b), (b_s_a_i_b, b_i_a))

        # 18 classification terms, each a mean over (B, L): one call on the stacked outputs
        # (every term has the same size, so the sum of the means is 18 times the joint mean)
        outs = [
            (fake_a, t_a), (fake_b, t_b),
            (a_s_b, t_ab), (b_s_a, t_ba), (a_s_b_b, t_ab), (b_s_a_a, t_ba),
            (a_s_a_i_b, t_ab), (b_s_a_i_b, t_ba), (b_s_b_i_a, t_ba), (a_s_b_i_a, t_ab),
            (a_u_b, t_u), (a_u_b_b, t_u), (b_u_a_a, t_u), (b_u_a, t_u),
            (a_i_b, t_i), (a_i_b_b, t_i), (b_i_a_a, t_i), (b_i_a, t_i),
        ]  # fmt: skip
        z = clf(torch.cat([o for o, _ in outs]))
        target = torch.cat([t for _, t in outs])
        loss = len(outs) * F.binary_cross_entropy_with_logits(z, target)
        if self.recon_weight > 0:
            # MSE terms, each a mean over (B, D) of the same size: 10 times one joint mean
            lhs = [fake_a, fake_b, a_u_b, a_i_b, a_s_b, a_s_b, a_s_b, b_s_a, b_s_a, b_s_a]
            rhs = [a, b, b_u_a, b_i_a, a_s_b_b, a_s_a_i_b, a_s_b_i_a, b_s_a_a, b_s_a_i_b, b_s_b_i_a]
            rec = len(lhs) * F.mse_loss(torch.cat(lhs), torch.cat(rhs))
            loss = loss + self.recon_weight * rec
        return loss

    # ------------------------------------------------------------------------------------------
    # use
    # ------------------------------------------------------------------------------------------

    def _inputs(self, fn: str, name: str, x: Any) -> tuple[torch.Tensor, bool]:
        _, _, _, clf = self._nets()
        t, was_np = _to_tensor(fn, name, x)
        _checks.check_embeddings(fn, name, t)
        if t.shape[1] != self.n_features_:
            raise ValueError(
                f"{fn}: {name} must have D={self.n_features_} features like the fitted data; "
                f"got {tuple(t.shape)}"
            )
        w = clf.weight
        if t.device != w.device:
            raise ValueError(
                f"{fn}: {name} is on {t.device} but the fitted networks are on {w.device}; "
                "move them to one device (LaSO.to)"
            )
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.to(w.dtype)
        elif t.dtype != w.dtype:
            raise TypeError(
                f"{fn}: {name} has dtype {t.dtype} but the networks were fitted in {w.dtype}"
            )
        return t, was_np

    def synthesise(self, a: Array, b: Array, op: Op) -> Array:
        """Features whose label set is ``L(a) op L(b)``, row by row.

        Args:
            a: (M, D) features (tensor or numpy, like the fitted data).
            b: (M, D) features, paired with ``a`` row by row.
            op: ``"intersection"``, ``"union"`` or ``"subtraction"`` (``a`` minus ``b``).

        Returns:
            (M, D) synthesised features: numpy for numpy inputs, else a tensor on the networks'
            device in their dtype (float32 for half inputs). Gradients flow to ``a`` and ``b``
            when they require them (the networks are frozen).

        Raises:
            ValueError: not fitted, an unknown op, shapes, devices.
            TypeError: dtype different from the fitted networks' (half is cast up).
        """
        fn = "LaSO.synthesise"
        op = cast(Op, _checks.check_choice(fn, "op", op, OPS))
        ta, np_a = self._inputs(fn, "a", a)
        tb, _ = self._inputs(fn, "b", b)
        if ta.shape != tb.shape:
            raise ValueError(
                f"{fn}: b must have shape (M, D) matching a {tuple(ta.shape)}; "
                f"got {tuple(tb.shape)}"
            )
        inter, uni, sub, _ = self._nets()
        net = {"intersection": inter, "union": uni, "subtraction": sub}[op]
        out = net(ta, tb)
        return out.detach().cpu().numpy() if np_a else out

    def predict_proba(self, features: Array) -> Array:
        """The frozen classifier's label probabilities ``sigmoid(C(features))``, (M, L)."""
        fn = "LaSO.predict_proba"
        t, was_np = self._inputs(fn, "features", features)
        _, _, _, clf = self._nets()
        with torch.no_grad():
            p = torch.sigmoid(clf(t))
        return p.cpu().numpy() if was_np else p

    def augment(
        self,
        features: Array,
        labels: Array,
        n: int,
        *,
        ops: Sequence[str] = OPS,
        generator: torch.Generator | None = None,
    ) -> tuple[Array, Array]:
        """Synthesise ``n`` labelled features from random pairs of a (few-shot) support set.

        Each new sample takes a uniform random pair ``(i, j)``, ``i != j``, of the given samples
        and one of ``ops`` in turn (``n`` is spread evenly over them); its label set is the
        operation applied to the two label sets. Pairs whose resulting label set is empty are
        kept (they are valid "no label" features); filter them if unwanted.

        Args:
            features: (N, D) support features, N >= 2.
            labels: (N, L) multi-hot label sets (L as fitted).
            n: number of synthetic samples, >= 1.
            ops: operations to use, a non-empty subset of ``OPS``.
            generator: source of the pair draws.

        Returns:
            ``(new_features (n, D), new_labels (n, L))``: numpy for numpy input, else tensors
            (labels in ``labels``' dtype).
        """
        fn = "LaSO.augment"
        x, was_np = self._inputs(fn, "features", features)
        y_raw, _ = _to_tensor(fn, "labels", labels)
        n = _checks.check_int(fn, "n", n, min_value=1)
        if x.shape[0] < 2:
            raise ValueError(f"{fn}: features needs at least 2 rows to form pairs; got 1")
        y = _check_labels(fn, y_raw.to(x.device) if was_np else y_raw, x.shape[0], x.device)
        if y.shape[1] != self.n_labels_:
            raise ValueError(
                f"{fn}: labels must have L={self.n_labels_} columns like the fitted data; "
                f"got {tuple(y.shape)}"
            )
        if isinstance(ops, str) or not ops:
            raise ValueError(f"{fn}: ops must be a non-empty sequence of {', '.join(OPS)}")
        ops = [_checks.check_choice(fn, "ops[k]", o, OPS) for o in ops]
        _checks.check_generator(fn, generator, x.device)
        m = x.shape[0]
        i = torch.randint(m, (n,), generator=generator, device=x.device)
        j = (i + torch.randint(1, m, (n,), generator=generator, device=x.device)) % m
        which = torch.arange(n, device=x.device) % len(ops)
        out = torch.empty(n, x.shape[1], dtype=x.dtype, device=x.device)
        out_y = torch.empty(n, y.shape[1], dtype=torch.bool, device=x.device)
        inter, uni, sub, _ = self._nets()
        nets = {"intersection": inter, "union": uni, "subtraction": sub}
        with torch.no_grad():
            for k, op in enumerate(ops):
                sel = which == k
                if not bool(sel.any()):
                    continue
                yi, yj = y[i[sel]], y[j[sel]]
                out[sel] = nets[op](x[i[sel]], x[j[sel]])
                if op == "intersection":
                    out_y[sel] = yi & yj
                elif op == "union":
                    out_y[sel] = yi | yj
                else:
                    out_y[sel] = yi & ~yj
        if was_np:
            lab_dtype = labels.dtype if isinstance(labels, np.ndarray) else np.float32
            return out.cpu().numpy(), out_y.cpu().numpy().astype(lab_dtype)
        return out, out_y.to(y_raw.dtype)

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------

    def to(self, device: torch.device | str) -> LaSO:
        """Move the fitted networks to ``device``; return ``self``."""
        for net in self._nets():
            net.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, sizes and the four networks' weights (for ``torch.save``)."""
        inter, uni, sub, clf = self._nets()
        return {
            "n_features": self.n_features_,
            "n_labels": self.n_labels_,
            "output_relu": inter.output_relu,
            "history": list(self.history_),
            "intersection": inter.state_dict(),
            "union": uni.state_dict(),
            "subtraction": sub.state_dict(),
            "classifier": clf.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> LaSO:
        """Rebuild the fitted networks from :meth:`state_dict` output; return ``self``.

        The networks are built with this instance's ``n_layers``; a state saved with another
        depth raises (strict loading).
        """
        fn = "LaSO.load_state_dict"
        keys = ("n_features", "n_labels", "output_relu", "intersection", "union", "subtraction")
        missing = [k for k in (*keys, "classifier") if k not in state]
        if missing:
            raise ValueError(f"{fn}: state is missing {', '.join(missing)}")
        w = state["classifier"]["weight"]
        self._build(
            int(state["n_features"]),
            int(state["n_labels"]),
            bool(state["output_relu"]),
            w.dtype,
            w.device,
            torch.Generator(device=w.device),  # placeholder init (overwritten below)
        )
        inter, uni, sub, clf = self._nets()
        for net, key in ((inter, "intersection"), (uni, "union"), (sub, "subtraction")):
            net.load_state_dict(state[key])
            net.requires_grad_(False)
            net.eval()
        clf.load_state_dict(state["classifier"])
        clf.requires_grad_(False)
        clf.eval()
        self.history_ = list(state.get("history", []))
        return self
