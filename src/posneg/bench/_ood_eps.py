"""`posneg bench ood` runners of EPS-AD: a tiny denoising score network on the ID digits.

The official detector uses a pretrained score-SDE / guided-diffusion network; here a small MLP
noise predictor ``ε_θ(x_t, t)`` is trained by denoising score matching on the in-distribution
training digits (inputs mapped to ``[−1, 1]``, VP-SDE ``x_t = a(t) x' + σ(t) z``, loss
``‖ε_θ(x_t, 999 t) − z‖²``, ``t ~ U[0.001, 0.02]``: the levels EPS reads), seeded from
``ctx.seed``, a fixed number of steps (a few seconds on a CPU). The score is
``−ε_θ/σ(t)`` (:func:`posneg.ood.eps_ad.noise_prediction_score`).

Runners: ``eps_single`` (``T* = 1``, the single score at ``t = 0.001``) and ``eps_multi``
(``T* = 20``, the official CIFAR-10 setting). Both use the Gaussian kernel on raw EPS with the
median bandwidth (``ε = 1``: the deep kernel would need adversarial EPS to train on, which the
OOD protocol does not hand to runners) and 500 natural reference EPS from the training split.
"""

from __future__ import annotations

import torch
from torch import nn

from posneg.bench._ood_context import OODContext, Runner
from posneg.ood.eps_ad import EPSAD, noise_prediction_score, vp_marginal

__all__ = ["MULTI_T", "N_REFERENCE", "RUNNERS", "TRAIN_STEPS", "NoiseNet", "train_noise_net"]

MULTI_T = 20
N_REFERENCE = 500
TRAIN_STEPS = 1500
T_MAX = 0.02

_CACHE: dict[tuple[int, int, tuple[int, ...], int], nn.Module] = {}


class NoiseNet(nn.Module):
    """MLP noise predictor ``ε_θ(x_t, label)`` on flattened images; ``label = 999 t``."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        t = (label / 999).reshape(-1, 1).to(x.dtype)
        emb = torch.cat([torch.log(t), torch.sqrt(t) * 10], dim=1)
        return self.net(torch.cat([x.flatten(1), emb], dim=1)).reshape(x.shape)


def train_noise_net(
    x: torch.Tensor, *, seed: int, steps: int = TRAIN_STEPS, batch_size: int = 128
) -> nn.Module:
    """Denoising score matching on ``x`` in ``[0, 1]``; seeded, deterministic on the CPU."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = NoiseNet(x[0].numel()).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = 2 * x.detach().float() - 1
    view = (-1,) + (1,) * (data.dim() - 1)
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=g).to(data.device)
        t = 0.001 + (T_MAX - 0.001) * torch.rand(batch_size, generator=g)
        z = torch.randn((batch_size, *data.shape[1:]), generator=g)
        t, z = t.to(data.device), z.to(data.device)
        a, sigma = vp_marginal(t)
        x_t = a.reshape(view) * data[idx] + sigma.reshape(view) * z
        loss = ((net(x_t, 999 * t) - z) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _net(ctx: OODContext) -> nn.Module:
    key = (ctx.seed, ctx.train_x.data_ptr(), tuple(ctx.train_x.shape), TRAIN_STEPS)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = train_noise_net(ctx.train_x, seed=ctx.seed, steps=TRAIN_STEPS)
    return _CACHE[key]


def _eps_runner(diffuse_t: int) -> Runner:
    def run(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
        score = noise_prediction_score(_net(ctx))
        det = EPSAD(score, diffuse_t=diffuse_t)
        n_ref = min(N_REFERENCE, ctx.train_x.shape[0])
        det.fit(ctx.train_x[:n_ref].float(), generator=generator)
        return {k: det.score(x.float(), generator=generator) for k, x in ctx.eval_sets.items()}

    return run


RUNNERS: dict[str, Runner] = {
    "eps_single": _eps_runner(1),
    "eps_multi": _eps_runner(MULTI_T),
}
