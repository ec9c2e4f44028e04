"""MADAug: a model-adaptive augmentation policy (per-sample ops and magnitudes) and its curriculum.

Hou, Zhang, Zhou. When to Learn What: Model-Adaptive Data Augmentation Curriculum. ICCV 2023,
arXiv 2309.04747.

A policy network ``h`` (one linear layer) reads the task model's penultimate features ``f(x)`` and
outputs, for each of the K operations, a magnitude and a weight::

    m = sigmoid(h(f(x))[:K])          w = softmax(h(f(x))[K:] / T)

- **exploit** (training images): draw ``k_ops = 2`` distinct ops ``~ multinomial(w)``, perturb
  each magnitude ``m' = clip(m +/- U(0, delta), 0, 1)`` (sign 1/2), apply the ops in sequence
  (:func:`sample_exploit_params`, :func:`apply_ops`);
- **explore** (the bi-level step): apply all K ops at ``m_k``, pass the gradient to ``m_k``
  straight through (``img_k <- (img_k - m_k).detach() + m_k``) and mix
  ``x_bar = sum_k w_k img_k`` (:func:`explore_mix`, weights at T = 1); one differentiable SGD
  step of the task model on ``x_bar`` (label-smoothed CE, eps 0.1), then the validation loss of the
  stepped model is back-propagated into ``h`` (:func:`bilevel_validation_loss`);
- **curriculum**: the first ``int(split(e) B)`` samples of a batch are augmented,
  ``split(e) = min(tanh(e / 40) + 0.01, 1)`` (:func:`curriculum_split`).

Checked against the official code, github.com/JackHck/MADAug (``adaptive_augmentor.py`` at commit
376f8c8, ``main_higher.py``): ``predict_aug_params``, ``stop_gradient``, ``perturb_param``,
``get_training_aug_images`` (``torch.multinomial(weights, k_ops)``: without replacement) and the
``higher.innerloop_ctx`` step. Choices made deliberately:

- ``bi_epochs``: the released ``main.sh`` gates the bi-level step on ``epoch > bi_epochs = 300``
  with 240/200 training epochs, so the released runs never train ``h``. The runner of
  ``posneg bench policies`` defaults to ``bi_epochs = 0`` (the policy is trained) and also offers
  the released behaviour (``madaug_released``).
- The official inner step runs with the task model in eval mode (``predict_aug_params`` calls
  ``gf_model.eval()``); :func:`bilevel_validation_loss` leaves the mode to the caller and the
  runner does the same (eval).
- ``higher`` replays the task model's own optimiser (SGD with momentum); here the unrolled step
  is plain SGD with a given ``inner_lr`` (one step, so momentum from a fresh buffer is 1x anyway).

Operations. Images (``(B, C, H, W)``, float in [0, 1] or uint8) use posneg's RandAugment kernels
(:mod:`posneg.augment.functional`) with MADAug's ranges: 16 of its 17 ops (Cutout is left out:
its centre is random, and the after-transforms of the official code add Cutout to every image
anyway). Sequences (``(B, C, L)``) use 1-D analogues defined here (:data:`SEQUENCE_OPS`): shift,
horizontal stretch, an added linear ramp (MNIST-1D's shear), time reversal, amplitude scaling and
a 3-tap blur. Every op reads one magnitude ``m`` in [0, 1] and maps it to
``low + m (high - low)``; the signed ops (shears, translations, rotation; 1-D shift and ramp)
also negate that value with probability 1/2 (the ``signs`` argument), so ``m = 0.5`` is the
identity for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from posneg import _checks, _rng
from posneg.augment import functional as AF

__all__ = [
    "CITATION",
    "IMAGE_OPS",
    "SEQUENCE_OPS",
    "ExploitParams",
    "MADAugPolicy",
    "apply_ops",
    "bilevel_validation_loss",
    "curriculum_split",
    "explore_mix",
    "op_values",
    "ops_for",
    "perturb_magnitudes",
    "policy_outputs",
    "sample_exploit_params",
]

CITATION = """
@inproceedings{hou2023madaug,
  title     = {When to Learn What: Model-Adaptive Data Augmentation Curriculum},
  author    = {Hou, Chengkai and Zhang, Jieyu and Zhou, Tianyi},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  eprint    = {2309.04747},
  archivePrefix = {arXiv}
}
"""

#: Image ops: name -> (low, high, signed). Translate is a fraction of the image size, solarize a
#: threshold on the 0..256 scale, posterize bits (truncated to an integer), enhancers a factor.
IMAGE_RANGES: dict[str, tuple[float, float, bool]] = {
    "identity": (0.0, 0.0, False),
    "shear_x": (-0.3, 0.3, True),
    "shear_y": (-0.3, 0.3, True),
    "translate_x": (-0.45, 0.45, True),
    "translate_y": (-0.45, 0.45, True),
    "rotate": (-30.0, 30.0, True),
    "auto_contrast": (0.0, 0.0, False),
    "invert": (0.0, 0.0, False),
    "equalize": (0.0, 0.0, False),
    "solarize": (0.0, 256.0, False),
    "posterize": (4.0, 8.0, False),
    "contrast": (0.1, 1.9, False),
    "color": (0.1, 1.9, False),
    "brightness": (0.1, 1.9, False),
    "sharpness": (0.1, 1.9, False),
    "flip": (0.0, 0.0, False),
}
#: Sequence ops: shift (fraction of L), stretch factor about the centre, ramp height added
#: (``v * linspace(-1, 1, L)``, in the data's units), time reversal, amplitude factor, blur weight.
SEQUENCE_RANGES: dict[str, tuple[float, float, bool]] = {
    "identity": (0.0, 0.0, False),
    "translate": (-0.25, 0.25, True),
    "scale": (0.75, 1.25, False),
    "shear": (-1.0, 1.0, True),
    "flip": (0.0, 0.0, False),
    "amplitude": (0.5, 1.5, False),
    "blur": (0.0, 1.0, False),
}
IMAGE_OPS: tuple[str, ...] = tuple(IMAGE_RANGES)
SEQUENCE_OPS: tuple[str, ...] = tuple(SEQUENCE_RANGES)


def ops_for(x: torch.Tensor) -> tuple[str, ...]:
    """:data:`IMAGE_OPS` for 4-D ``x``, :data:`SEQUENCE_OPS` for 3-D ``x``."""
    return IMAGE_OPS if x.dim() == 4 else SEQUENCE_OPS


def _check_x(fn: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() == 4:
        return AF.check_images(fn, x)
    if x.dim() != 3 or not x.dtype.is_floating_point:
        raise ValueError(
            f"{fn}: x must be (B, C, H, W) images or (B, C, L) float sequences; got "
            f"{tuple(x.shape)} {x.dtype}"
        )
    return x


def op_values(
    ops: torch.Tensor, magnitudes: torch.Tensor, signs: torch.Tensor, *, kind: str
) -> torch.Tensor:
    """Each op's argument ``sign * (low + m (high - low))`` (sign only for signed ops), float64.

    Args:
        ops: (...) int64 op indices into :data:`IMAGE_OPS` (``kind="image"``) or
            :data:`SEQUENCE_OPS` (``kind="sequence"``).
        magnitudes: (...) in [0, 1].
        signs: (...) of +1 / -1.
    """
    table = IMAGE_RANGES if kind == "image" else SEQUENCE_RANGES
    rows = torch.tensor(list(table.values()), dtype=torch.float64, device=ops.device)
    low, high, signed = rows[ops, 0], rows[ops, 1], rows[ops, 2].bool()
    v = low + magnitudes.detach().to(torch.float64) * (high - low)
    return torch.where(signed, v * signs.to(torch.float64), v)


def _resample1d(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``out[b, :, t] = x[b, :, src[b, t]]`` by linear interpolation, 0 outside [0, L - 1]."""
    length = x.shape[-1]
    lo = torch.floor(src)
    frac = (src - lo).to(x.dtype).unsqueeze(1)
    out = torch.zeros_like(x)
    for offset, wt in ((0, 1.0 - frac), (1, frac)):
        idx = lo.long() + offset
        ok = ((idx >= 0) & (idx < length)).unsqueeze(1)
        gathered = x.gather(2, idx.clamp(0, length - 1).unsqueeze(1).expand_as(x))
        out = out + torch.where(ok, gathered * wt, torch.zeros_like(x))
    return out


def _sequence_op(name: str, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    length = x.shape[-1]
    t = torch.arange(length, device=x.device, dtype=torch.float64).expand(x.shape[0], length)
    vv = v.view(-1, 1)
    if name == "translate":  # content moves right by v L steps
        return _resample1d(x, t - vv * length)
    if name == "scale":  # stretch by v about the centre
        c = (length - 1) / 2.0
        return _resample1d(x, c + (t - c) / vv)
    if name == "shear":
        ramp = torch.linspace(-1.0, 1.0, length, device=x.device, dtype=torch.float64)
        return x + (vv * ramp).to(x.dtype).unsqueeze(1)
    if name == "flip":
        return x.flip(-1)
    if name == "amplitude":
        return x * vv.to(x.dtype).unsqueeze(1)
    if name == "blur":
        pad = F.pad(x, (1, 1), mode="replicate")
        smooth = 0.25 * pad[..., :-2] + 0.5 * pad[..., 1:-1] + 0.25 * pad[..., 2:]
        w = vv.to(x.dtype).unsqueeze(1)
        return (1.0 - w) * x + w * smooth
    return x


def _image_op(name: str, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    bound = 255.0 if x.dtype == torch.uint8 else 1.0
    h, w = x.shape[2], x.shape[3]
    if name == "shear_x":
        return AF.shear_x(x, v)
    if name == "shear_y":
        return AF.shear_y(x, v)
    if name == "translate_x":
        return AF.translate_x(x, torch.trunc(v * w))
    if name == "translate_y":
        return AF.translate_y(x, torch.trunc(v * h))
    if name == "rotate":
        return AF.rotate(x, v)
    if name == "auto_contrast":
        return AF.auto_contrast(x)
    if name == "invert":
        return (bound - x.to(torch.float32)).to(x.dtype) if x.dtype == torch.uint8 else bound - x
    if name == "equalize":
        return AF.equalize(x)
    if name == "solarize":
        return AF.solarize(x, torch.clamp(v * (bound / 256.0), 0.0, bound))
    if name == "posterize":
        return AF.posterize(x, torch.trunc(v))
    if name in ("contrast", "color", "brightness", "sharpness"):
        kernel = {"contrast": AF.contrast, "color": AF.color, "brightness": AF.brightness}
        return kernel.get(name, AF.sharpness)(x, v)
    if name == "flip":
        return x.flip(-1)
    return x


def apply_ops(
    x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, signs: torch.Tensor
) -> torch.Tensor:
    """Apply op ``ops[i]`` at magnitude ``magnitudes[i]`` (sign ``signs[i]``) to sample ``i``.

    Deterministic; samples are grouped per op (a loop over the K ops, none over the batch).

    Args:
        x: (B, C, H, W) images (uint8 or float in [0, 1]; C in {1, 3}) or (B, C, L) sequences.
        ops: (B,) int64 indices into :func:`ops_for` ``(x)``.
        magnitudes: (B,) in [0, 1] (not differentiated: see :func:`explore_mix`).
        signs: (B,) of +1 / -1, used by the signed ops.

    Returns:
        Same shape and dtype as ``x``.

    Example:
        >>> x = torch.randn(3, 1, 40)
        >>> ops = torch.tensor([0, 1, 4])
        >>> apply_ops(x, ops, torch.full((3,), 0.5), torch.ones(3)).shape
        torch.Size([3, 1, 40])
    """
    fn = "apply_ops"
    _check_x(fn, x)
    names = ops_for(x)
    b = x.shape[0]
    for name, t in (("ops", ops), ("magnitudes", magnitudes), ("signs", signs)):
        if not isinstance(t, torch.Tensor) or t.shape != (b,):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{fn}: {name} must be a ({b},) tensor; got {got}")
    if ops.numel() and (int(ops.min()) < 0 or int(ops.max()) >= len(names)):
        raise ValueError(f"{fn}: ops must be in [0, {len(names) - 1}]")
    kind = "image" if x.dim() == 4 else "sequence"
    values = op_values(ops, magnitudes, signs, kind=kind)
    out = torch.empty_like(x)
    for k, name in enumerate(names):
        idx = (ops == k).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        sub, v = x[idx], values[idx]
        res = _image_op(name, sub, v) if kind == "image" else _sequence_op(name, sub, v)
        out.index_copy_(0, idx, res.to(x.dtype))
    return out


def curriculum_split(epoch: float, *, scale: float = 40.0, offset: float = 0.01) -> float:
    """Fraction of a batch the policy augments: ``min(tanh(e / scale) + offset, 1)``.

    The official ``main_higher.py`` uses ``scale = 40``, ``offset = 0.01`` over 200-240 epochs.
    """
    fn = "curriculum_split"
    e = _checks.check_real(fn, "epoch", epoch)
    if e < 0:
        raise ValueError(f"{fn}: epoch must be >= 0; got {epoch!r}")
    s = _checks.check_positive(fn, "scale", scale)
    o = _checks.check_range(fn, "offset", offset, 0.0, 1.0)
    return min(math.tanh(e / s) + o, 1.0)


def policy_outputs(
    logits: torch.Tensor, *, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the policy network's (B, 2K) output into magnitudes ``sigmoid(.[:K])`` and op
    weights ``softmax(.[K:] / T)`` (``predict_aug_params``)."""
    fn = "policy_outputs"
    _checks.check_float(fn, "logits", logits)
    if logits.dim() != 2 or logits.shape[1] % 2:
        raise ValueError(f"{fn}: logits must have shape (B, 2K); got {tuple(logits.shape)}")
    t = _checks.check_positive(fn, "temperature", temperature)
    k = logits.shape[1] // 2
    return torch.sigmoid(logits[:, :k]), torch.softmax(logits[:, k:] / t, dim=1)


def perturb_magnitudes(
    m: torch.Tensor, *, delta: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``perturb_param``: ``max(0, m - a)`` or ``min(1, m + a)`` (1/2 each), ``a ~ U(0, delta)``.

    ``delta <= 0`` returns ``m`` unchanged (and draws nothing). Draw order: ``a``, then the side.
    """
    fn = "perturb_magnitudes"
    d = _checks.check_real(fn, "delta", delta)
    if d <= 0:
        return m
    a = _rng.uniform(tuple(m.shape), high=d, device=m.device, dtype=m.dtype, generator=generator)
    down = _rng.uniform(tuple(m.shape), device=m.device, generator=generator) < 0.5
    return torch.where(down, torch.clamp(m - a, min=0.0), torch.clamp(m + a, max=1.0))


@dataclass(frozen=True)
class ExploitParams:
    """One exploit draw: ``ops``, ``magnitudes``, ``signs`` of shape (k_ops, B); round ``n``
    applies ``ops[n, i]`` to sample ``i``."""

    ops: torch.Tensor
    magnitudes: torch.Tensor
    signs: torch.Tensor


def sample_exploit_params(
    magnitudes: torch.Tensor,
    weights: torch.Tensor,
    *,
    k_ops: int = 2,
    delta: float = 0.3,
    generator: torch.Generator | None = None,
) -> ExploitParams:
    """Draw ``k_ops`` distinct ops per sample ``~ multinomial(weights)`` and perturbed magnitudes.

    Args:
        magnitudes: (B, K) in [0, 1] (detached here).
        weights: (B, K) op probabilities (rows sum to 1).
        k_ops: ops per sample, <= K (drawn without replacement, as ``torch.multinomial``).
        delta: magnitude perturbation (:func:`perturb_magnitudes`); 0.3 in ``main.sh``.
        generator: draw order: ops, perturbation, signs.
    """
    fn = "sample_exploit_params"
    _checks.check_float(fn, "magnitudes", magnitudes)
    _checks.check_float(fn, "weights", weights)
    if magnitudes.dim() != 2 or weights.shape != magnitudes.shape:
        raise ValueError(
            f"{fn}: magnitudes and weights must both be (B, K); got "
            f"{tuple(magnitudes.shape)} and {tuple(weights.shape)}"
        )
    k = _checks.check_int(fn, "k_ops", k_ops, min_value=0)
    if k > weights.shape[1]:
        raise ValueError(f"{fn}: k_ops must be <= K = {weights.shape[1]}; got {k}")
    _checks.check_generator(fn, generator, weights.device)
    b = weights.shape[0]
    if k == 0 or b == 0:
        empty = torch.zeros((k, b), dtype=torch.int64, device=weights.device)
        return ExploitParams(empty, empty.float(), empty.float())
    ops = torch.multinomial(weights.detach().float(), k, replacement=False, generator=generator).T
    m = magnitudes.detach().gather(1, ops.T).T
    m = perturb_magnitudes(m, delta=delta, generator=generator)
    signs = _rng.randint(2, (k, b), device=weights.device, generator=generator) * 2 - 1
    return ExploitParams(ops.contiguous(), m, signs.to(m.dtype))


def explore_mix(
    x: torch.Tensor,
    magnitudes: torch.Tensor,
    weights: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x_bar = sum_k w_k ((op_k(x; m_k) - m_k).detach() + m_k)``: the explore mixture.

    All K ops are applied to every sample; the straight-through term makes
    ``d x_bar / d m_k = w_k`` at every element and ``d x_bar / d w_k = op_k(x; m_k)``.

    Args:
        x: (B, C, H, W) float images or (B, C, L) sequences.
        magnitudes: (B, K) in [0, 1], may require grad.
        weights: (B, K), may require grad.
        generator: draws the (K, B) signs of the signed ops.

    Returns:
        Float tensor shaped like ``x``.
    """
    fn = "explore_mix"
    _check_x(fn, x)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{fn}: x must be floating point; got {x.dtype}")
    k = len(ops_for(x))
    b = x.shape[0]
    if magnitudes.shape != (b, k) or weights.shape != (b, k):
        raise ValueError(
            f"{fn}: magnitudes and weights must be ({b}, {k}); got "
            f"{tuple(magnitudes.shape)} and {tuple(weights.shape)}"
        )
    _checks.check_generator(fn, generator, x.device)
    signs = (_rng.randint(2, (k, b), device=x.device, generator=generator) * 2 - 1).to(x.dtype)
    ops = torch.arange(k, device=x.device).repeat_interleave(b)  # op-major (K*B,)
    imgs = apply_ops(
        x.repeat(k, *([1] * (x.dim() - 1))), ops, magnitudes.T.reshape(-1), signs.reshape(-1)
    )
    imgs = imgs.view(k, b, *x.shape[1:]).movedim(0, 1)  # (B, K, ...)
    view = (b, k) + (1,) * (x.dim() - 1)
    m = magnitudes.view(view).to(x.dtype)
    st = (imgs - m).detach() + m
    return (weights.view(view).to(x.dtype) * st).sum(1)


def bilevel_validation_loss(
    model: nn.Module,
    x_bar: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    inner_lr: float,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """Validation loss after one differentiable SGD step on the explore mixture (``higher``).

    ``theta' = theta - inner_lr * grad_theta CE_ls(model_theta(x_bar), y)`` (graph kept), then
    ``CE_ls(model_theta'(val_x), val_y)``; back-propagating it reaches the policy through
    ``x_bar``. ``model`` itself is not changed.
    """
    fn = "bilevel_validation_loss"
    lr = _checks.check_nonnegative(fn, "inner_lr", inner_lr)
    ls = _checks.check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    inner = F.cross_entropy(model(x_bar), y, label_smoothing=ls)
    grads = torch.autograd.grad(inner, params, create_graph=True, allow_unused=True)
    stepped = {
        n: p if g is None else p - lr * g for n, p, g in zip(names, params, grads, strict=True)
    }
    logits = functional_call(model, stepped, (val_x,))
    return F.cross_entropy(logits, val_y, label_smoothing=ls)


class MADAugPolicy(nn.Module):
    """MADAug's policy network: ``h = Linear(feature_dim -> 2K)`` on the task model's features.

    Hou, Zhang, Zhou. When to Learn What: Model-Adaptive Data Augmentation Curriculum. ICCV 2023.

    Args:
        feature_dim: size of the task model's penultimate features.
        kind: ``"image"`` (:data:`IMAGE_OPS`) or ``"sequence"`` (:data:`SEQUENCE_OPS`).
        temperature: T of the exploit weights (3 on CIFAR, 2 on SVHN in ``main.sh``).
        k_ops: ops per training sample (2).
        delta: magnitude perturbation (0.3).

    Example:
        >>> pol = MADAugPolicy(64, kind="sequence")
        >>> x, feats = torch.randn(4, 1, 40), torch.randn(4, 64)
        >>> pol(x, feats, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 40])
    """

    def __init__(
        self,
        feature_dim: int,
        *,
        kind: str = "image",
        temperature: float = 3.0,
        k_ops: int = 2,
        delta: float = 0.3,
    ) -> None:
        super().__init__()
        fn = "MADAugPolicy"
        d = _checks.check_int(fn, "feature_dim", feature_dim, min_value=1)
        self.kind = _checks.check_choice(fn, "kind", kind, ("image", "sequence"))
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.num_ops = len(IMAGE_OPS if self.kind == "image" else SEQUENCE_OPS)
        self.k_ops = _checks.check_int(fn, "k_ops", k_ops, min_value=0)
        if self.k_ops > self.num_ops:
            raise ValueError(f"{fn}: k_ops must be <= {self.num_ops}; got {self.k_ops}")
        self.delta = _checks.check_nonnegative(fn, "delta", delta)
        self.proj = nn.Linear(d, 2 * self.num_ops)

    def params(
        self, features: torch.Tensor, *, temperature: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(magnitudes, weights), each (B, K), at ``temperature`` (default: the exploit T)."""
        t = self.temperature if temperature is None else temperature
        return policy_outputs(self.proj(features.to(self.proj.weight.dtype)), temperature=t)

    def explore(
        self, x: torch.Tensor, features: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The differentiable mixture :func:`explore_mix` at T = 1."""
        m, w = self.params(features, temperature=1.0)
        return explore_mix(x, m, w, generator=generator)

    def forward(
        self, x: torch.Tensor, features: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Exploit: ``k_ops`` distinct ops per sample, applied in sequence (no gradient)."""
        with torch.no_grad():
            m, w = self.params(features)
            p = sample_exploit_params(m, w, k_ops=self.k_ops, delta=self.delta, generator=generator)
            out = x
            for n in range(p.ops.shape[0]):
                out = apply_ops(out, p.ops[n], p.magnitudes[n], p.signs[n])
        return out

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, num_ops={self.num_ops}, temperature={self.temperature}, "
            f"k_ops={self.k_ops}, delta={self.delta}"
        )
