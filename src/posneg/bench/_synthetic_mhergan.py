"""The MhERGAN section of `posneg bench synthetic`: few-shot accuracy with MH-selected samples.

Feng et al., arXiv 2411.16567 (:mod:`posneg.synthetic.mhergan`, a stand-in built on MH-GAN's
sampler). The card's small CPU check: the bench's digits with ``shots`` (10) real images per
class; a small conditional MLP GAN trained on them; a classifier trained on (a) the real shots,
(b) real + plain GAN samples, (c) real + the same number of samples picked by
Metropolis-Hastings chains (K proposals of the chain's class, starting at a real image of that
class; a chain that accepts nothing is rerun from its first proposal) over a calibrated
ensemble of 3 discriminators, as many samples as (b). Tested on the held-out digits. Claimed
direction: (c) >= (b) > (a).

What stands in for what: the GAN is the architecture of :mod:`posneg.bench._gan` (MLP, z = 16,
LeakyReLU 0.2, non-saturating loss, Adam(1e-3, 0.5, 0.999)) made class-conditional by
concatenating a one-hot label to the generator's latent and the discriminator's input; the
ensemble members are discriminators trained after the GAN on bootstrap resamples of the shots
against fresh samples; each is calibrated (:class:`~posneg.synthetic.mhergan.MHERGANSelector`)
on the shots left out of its bootstrap and fresh samples. The paper's "MHLoss" and
"reparameterized GAN ensemble" are not reproduced (unverified).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._gan import Z_DIM, make_optimizers
from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.synthetic.mhergan import MHERGANSelector

__all__ = ["SECTIONS", "claims"]

#: (shots per class, GAN steps, D-ensemble steps, synthetic per class, chain length K, clf steps)
SETTINGS = {"default": (10, 800, 150, 30, 20, 200), "demo": (3, 5, 3, 2, 3, 3)}
ENSEMBLE = 3
METHODS = ("real", "plain", "mh")


class CondG(nn.Module):
    """``z (16) + one-hot (10) -> 128 -> 128 -> 64 (tanh)`` as ``(N, 1, 8, 8)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(Z_DIM + 10, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128),
            nn.LeakyReLU(0.2), nn.Linear(128, 64), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, F.one_hot(y, 10).float()], 1)).reshape(-1, 1, 8, 8)


class CondD(nn.Module):
    """``image (64) + one-hot (10) -> 128 -> 128 -> 1`` logit."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(74, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
            nn.Linear(128, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), F.one_hot(y, 10).float()], 1))[:, 0]


def _seeded(build: Any, seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _sample(gen: CondG, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        return gen(torch.randn(len(y), Z_DIM, generator=g), y)


def _d_step(d: CondD, opt: torch.optim.Optimizer, xr: Any, yr: Any, xf: Any, yf: Any) -> None:
    loss = F.softplus(-d(xr, yr)).mean() + F.softplus(d(xf, yf)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _train_gan(
    x: torch.Tensor, y: torch.Tensor, steps: int, g: torch.Generator, seed: int
) -> CondG:
    gen, d = _seeded(CondG, seed), _seeded(CondD, seed + 1)
    opt_g, opt_d = make_optimizers(gen, d)
    for _ in range(steps):
        idx = torch.randint(len(y), (64,), generator=g)
        yf = y[torch.randint(len(y), (64,), generator=g)]
        _d_step(d, opt_d, x[idx], y[idx], _sample(gen, yf, g), yf)
        z = torch.randn(64, Z_DIM, generator=g)
        g_loss = F.softplus(-d(gen(z, yf), yf)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return gen.eval()


def _ensemble(
    gen: CondG, x: torch.Tensor, y: torch.Tensor, steps: int, g: torch.Generator, seed: int
) -> tuple[list[CondD], MHERGANSelector]:
    """E bootstrap discriminators and the selector calibrated on their out-of-bag shots."""
    members, oob_masks = [], []
    for e in range(ENSEMBLE):
        boot = torch.randint(len(y), (len(y),), generator=g)
        oob = torch.ones(len(y), dtype=torch.bool)
        oob[boot] = False
        d = _seeded(CondD, seed + 10 + e)
        opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
        for _ in range(steps):
            idx = boot[torch.randint(len(boot), (64,), generator=g)]
            _d_step(d, opt, x[idx], y[idx], _sample(gen, y[idx], g), y[idx])
        members.append(d.eval())
        oob_masks.append(oob)
    held = torch.stack(oob_masks).all(0)  # shots out of every member's bootstrap
    held = held if int(held.sum()) >= 5 else torch.ones_like(held)
    yf = y[held]
    fake = _sample(gen, yf, g)
    with torch.no_grad():
        real_logits = torch.stack([d(x[held], yf) for d in members])
        fake_logits = torch.stack([d(fake, yf) for d in members])
    return members, MHERGANSelector().fit(real_logits, fake_logits)


def _classifier(
    x: torch.Tensor, y: torch.Tensor, steps: int, g: torch.Generator, seed: int
) -> nn.Module:
    net = _seeded(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), seed
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(len(y), (64,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _pick(pool: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` distinct random entries of ``pool``."""
    return pool[torch.randperm(len(pool), generator=g)[:n]]


def mhergan_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """Test accuracy of the few-shot classifier with no, plain and MH-selected GAN samples."""
    shots, gan_steps, d_steps, per_class, k, clf_steps = SETTINGS[ctx.preset]
    idx = torch.cat([_pick(torch.nonzero(ctx.train_y == c).flatten(), shots, g) for c in range(10)])
    x, y = ctx.train_x[idx], ctx.train_y[idx]
    gen = _train_gan(x, y, gan_steps, g, ctx.seed)
    members, selector = _ensemble(gen, x, y, d_steps, g, ctx.seed)
    ys = torch.arange(10).repeat_interleave(per_class)
    plain = _sample(gen, ys, g)
    # MH: one chain per synthetic slot, starting at a real shot of its class
    starts = torch.cat([_pick(torch.nonzero(y == c).flatten(), 1, g) for c in ys.tolist()])
    props = _sample(gen, ys.repeat_interleave(k), g).reshape(len(ys), k, 1, 8, 8)
    with torch.no_grad():
        start_logits = torch.stack([d(x[starts], ys) for d in members])
        prop_logits = torch.stack([
            d(props.flatten(0, 1), ys.repeat_interleave(k)).reshape(len(ys), k) for d in members
        ])  # fmt: skip
    sel = selector(start_logits, prop_logits, generator=g)
    # a chain that accepted nothing is rerun from its first proposal over the other K - 1
    # (a generated start is a valid chain state, so it keeps a sample either way)
    rerun = selector(prop_logits[:, :, 0], prop_logits[:, :, 1:], generator=g)
    choice = torch.where(sel.choice >= 0, sel.choice, rerun.choice + 1)
    chosen = props[torch.arange(len(ys)), choice]
    sets = {
        "real": (x, y),
        "plain": (torch.cat([x, plain]), torch.cat([y, ys])),
        "mh": (torch.cat([x, chosen]), torch.cat([y, ys])),
    }
    out: dict[str, Any] = {}
    for name in METHODS:
        net = _classifier(*sets[name], clf_steps, g, ctx.seed)
        with torch.no_grad():
            out[f"{name}_test_acc"] = float(
                (net(ctx.test_x).argmax(1) == ctx.test_y).float().mean()
            )
    with torch.no_grad():
        out["plain_judge_agrees"] = float((ctx.judge(plain).argmax(1) == ys).float().mean())
        out["mh_judge_agrees"] = float((ctx.judge(chosen).argmax(1) == ys).float().mean())
    out["mh_accept_rate"] = float(sel.accepted.float().mean() / k)
    out["mh_chains_from_real"] = float((sel.choice >= 0).float().mean())
    out["_images"] = torch.cat([plain[::per_class][:10], chosen[::per_class][:10]])
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """MH-selected >= plain GAN samples > real only, on few-shot test accuracy."""
    key = "mhergan/{}_test_acc"
    if key.format("mh") not in agg:
        return []
    a = {m: agg[key.format(m)] for m in METHODS}
    ok = a["mh"][0] >= a["plain"][0] > a["real"][0]
    text = ", ".join(f"{m} {fmt(*a[m])}" for m in METHODS)
    return [
        f"MhERGAN claim (stand-in: MH-GAN selection over a calibrated 3-D ensemble; few-shot "
        f"accuracy real + MH-selected >= real + plain GAN > real only), 10-shot digits: {text}: "
        f"{'as claimed' if ok else 'NOT as claimed'}.",
    ]


SECTIONS = {"mhergan": mhergan_section}
