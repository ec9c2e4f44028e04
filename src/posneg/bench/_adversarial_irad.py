"""IRAD runs of `posneg bench adversarial`: no defence vs basic resampling vs IRAD.

Per seed: a classifier is trained on clean digits; the held-out split is attacked *obliviously*
(FGSM and PGD against the undefended classifier, as the official ``test.py``); the defences
are then applied to clean and adversarial inputs alike and the unchanged classifier scores
them. The official release has no training code, so the two IRAD networks are trained as the
paper describes and the card's CPU check sets out: the local implicit image
(:class:`~posneg.adversarial.irad.LocalImplicitImage`) maps adversarial (and clean) train
images to the clean ones with an L1 loss; then, with it frozen, SampleNet learns offsets that
make the classifier right on defended adversarial and clean train images
(cross-entropy + ``offset_penalty * mean |delta|``). Basic resampling is
:func:`posneg.augment.resample.resample` (bilinear, uniform per-pixel shifts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg.adversarial.attacks import fgsm, pgd
from posneg.adversarial.irad import LocalImplicitImage, SampleNet, irad
from posneg.augment.resample import resample
from posneg.bench._adversarial_at import accuracy, small_cnn

#: Defences in table order.
DEFENCES = ("none", "resample", "irad_reconstruction", "irad")
ATTACK_SEED = 4321


@dataclass(frozen=True)
class IRADSetting:
    """The IRAD experiment's sizes."""

    epsilon: float
    pgd_steps: int
    classifier_epochs: int
    defence_epochs: int
    resample_shift: float
    offset_penalty: float
    features: int
    hidden: int
    batch_size: int


def _batches(n: int, bs: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    perm = torch.randperm(n, device=device, generator=gen)
    return [perm[i : i + bs] for i in range(0, n, bs)]


def _attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: IRADSetting
) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=x.device).manual_seed(ATTACK_SEED)
    return {
        "clean": x,
        "fgsm": fgsm(model, x, y, epsilon=s.epsilon),
        "pgd": pgd(
            model,
            x,
            y,
            epsilon=s.epsilon,
            step_size=2.5 * s.epsilon / s.pgd_steps,
            steps=s.pgd_steps,
            generator=g,
        ),
    }


def train_irad(
    setting: IRADSetting,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """One seed: classifier, oblivious attacks, the three defences; accuracy per (defence, set)."""
    x_tr, y_tr, x_te, y_te = data
    device = x_tr.device
    devices = [device] if device.type == "cuda" else []
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        clf = small_cnn(int(y_tr.max()) + 1).to(device)
        recon = LocalImplicitImage(
            channels=1, features=setting.features, hidden=(setting.hidden, setting.hidden)
        ).to(device)
    start = time.perf_counter()
    bs = setting.batch_size
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    for _ in range(setting.classifier_epochs):
        clf.train()
        for idx in _batches(x_tr.shape[0], bs, gen, device):
            loss = F.cross_entropy(clf(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    tick()
    train_sets = _attack(clf, x_tr, y_tr, setting)
    x_in = torch.cat([train_sets["clean"], train_sets["pgd"]])
    x_target = x_tr.repeat(2, 1, 1, 1)
    y_in = y_tr.repeat(2)
    n = x_in.shape[0]
    opt = torch.optim.Adam(recon.parameters(), lr=2e-3)
    for _ in range(setting.defence_epochs):
        for idx in _batches(n, bs, gen, device):
            out = cast(torch.Tensor, irad(x_in[idx], reconstruction=recon))
            loss = (out - x_target[idx]).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    recon.eval()
    for p in recon.parameters():
        p.requires_grad_(False)
    tick()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1)
        sampler = SampleNet(recon.encoder, hidden=(setting.hidden, setting.hidden)).to(device)
    opt = torch.optim.Adam([p for p in sampler.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(setting.defence_epochs):
        for idx in _batches(n, bs, gen, device):
            out, delta = irad(x_in[idx], reconstruction=recon, sampler=sampler, return_offsets=True)
            loss = (
                F.cross_entropy(clf(out), y_in[idx]) + setting.offset_penalty * delta.abs().mean()
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sampler.eval()
    tick()
    test_sets = _attack(clf, x_te, y_te, setting)
    rg = torch.Generator(device=device).manual_seed(seed)
    defences: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "none": lambda x: x,
        "resample": lambda x: resample(x, shift=setting.resample_shift, generator=rg),
        "irad_reconstruction": lambda x: cast(torch.Tensor, irad(x, reconstruction=recon)),
        "irad": lambda x: cast(torch.Tensor, irad(x, reconstruction=recon, sampler=sampler)),
    }
    rows = []
    for name, defend in defences.items():
        with torch.no_grad():
            accs = {k: accuracy(clf, defend(v), y_te) for k, v in test_sets.items()}
        rows.append(
            {"defence": name, "seed": seed, **{f"{k}_accuracy": a for k, a in accs.items()}}
        )
    with torch.no_grad():
        _, delta = irad(x_te, reconstruction=recon, sampler=sampler, return_offsets=True)
    tick()
    return {
        "seed": seed,
        "rows": rows,
        "mean_abs_offset_px": float(delta.abs().mean()) * x_te.shape[-1] / 2,
        "train_seconds": round(time.perf_counter() - start, 2),
    }
