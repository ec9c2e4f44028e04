"""Single-step adversarial training runs of `posneg bench adversarial`: FGSM-AT vs FGSM-AT + AAER.

Both arms run :func:`posneg.adversarial.aaer.aaer_loss` with the same random start and the same
signed step (FGSM-RS: ``U[-eps, eps]`` start, step ``1.25 eps``, projection; or N-FGSM:
``U[-2 eps, 2 eps]``, step ``eps``, no projection); the baseline sets ``lambda1 = 0`` (plain
cross-entropy on the adversarial examples), AAER keeps the paper's weights. After every epoch
the held-out split is scored clean and under PGD (L-inf, ``eps``, step ``2.5 eps / steps``
(Madry et al.'s rule), random start from a fixed generator). Catastrophic overfitting
shows as PGD accuracy collapsing while the training attack (FGSM) accuracy stays high.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from posneg.adversarial.aaer import aaer_loss
from posneg.adversarial.attacks import fgsm, pgd

#: The PGD evaluation attack's generator seed (fixed: every run is attacked alike).
PGD_SEED = 1234

MODEL = "CNN conv16-conv32-maxpool-fc64-fc10 (ReLU, no BN); Adam, one-cycle lr (linear)"


def small_cnn(num_classes: int = 10, *, size: int = 8, width: int = 16) -> nn.Module:
    """The digits CNN of the adversarial bench (no BatchNorm, so train/eval agree).

    ``size``: the images' side (even); ``width``: channels of the first conv (the second has
    twice as many).
    """
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (size // 2) ** 2, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@dataclass(frozen=True)
class ATSetting:
    """One adversarial-training arm: the attack and the AAER weights (``lambda1 = 0``: off)."""

    epsilon: float
    random_start: bool
    project: bool
    alpha: float
    lambda1: float
    lambda2: float
    lambda3: float
    epochs: int
    lr: float
    batch_size: int
    pgd_steps: int
    width: int = 16


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, no gradient."""
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int
) -> tuple[float, float]:
    """Accuracy under FGSM and PGD-``steps`` (step ``2.5 eps / steps``, fixed random start)."""
    g = torch.Generator(device=x.device).manual_seed(PGD_SEED)
    step = 2.5 * epsilon / steps
    adv = pgd(model, x, y, epsilon=epsilon, step_size=step, steps=steps, generator=g)
    return accuracy(model, fgsm(model, x, y, epsilon=epsilon), y), accuracy(model, adv, y)


def train_at(
    method: str,
    setting: ATSetting,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """Train one arm under ``seed``; per-epoch clean/FGSM/PGD accuracy and the AAE count."""
    x_tr, y_tr, x_te, y_te = data
    device = x_tr.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = small_cnn(int(y_tr.max()) + 1, size=int(x_tr.shape[-1]), width=setting.width).to(
            device
        )
    gen = torch.Generator(device=device).manual_seed(seed)
    n, bs = x_tr.shape[0], min(setting.batch_size, x_tr.shape[0])
    steps = math.ceil(n / bs)
    opt = torch.optim.Adam(model.parameters(), lr=setting.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=setting.lr,
        total_steps=setting.epochs * steps,
        pct_start=0.5,
        anneal_strategy="linear",
    )
    lam1 = setting.lambda1 if method == "aaer" else 0.0
    curve: dict[str, list[float]] = {"clean": [], "fgsm": [], "pgd": [], "aae_share": []}
    start = time.perf_counter()
    for _ in range(setting.epochs):
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        n_aae = 0
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            out = aaer_loss(
                model,
                x_tr[idx],
                y_tr[idx],
                epsilon=setting.epsilon,
                alpha=setting.alpha,
                project=setting.project,
                random_start=setting.random_start,
                lambda1=lam1,
                lambda2=setting.lambda2,
                lambda3=setting.lambda3,
                generator=gen,
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sched.step()
            n_aae += int(out.num_abnormal)
        model.eval()
        f_acc, p_acc = robust_accuracy(model, x_te, y_te, setting.epsilon, setting.pgd_steps)
        curve["clean"].append(accuracy(model, x_te, y_te))
        curve["fgsm"].append(f_acc)
        curve["pgd"].append(p_acc)
        curve["aae_share"].append(n_aae / n)
        tick()
    best = max(curve["pgd"])
    return {
        "method": method,
        "seed": seed,
        "clean_accuracy": curve["clean"][-1],
        "fgsm_accuracy": curve["fgsm"][-1],
        "pgd_accuracy": curve["pgd"][-1],
        "best_pgd_accuracy": best,
        "pgd_drop": best - curve["pgd"][-1],
        "collapsed": bool(best - curve["pgd"][-1] > 0.2),
        "curve": curve,
        "train_seconds": round(time.perf_counter() - start, 2),
    }
