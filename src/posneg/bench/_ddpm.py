"""The stand-in class-conditional DDPM of `posneg bench generative`: 8x8 digits, label dropout.

:class:`TinyUNet` is a small convolutional U-Net with the diffusers ``UNet2DModel`` call
signature (``model(x, t, class_labels=y).sample``) and one diffusers ``Attention`` layer over
the 4x4 = 16 tokens of its bottleneck (named ``mid_attn``), so attention processors such as
NegToMe's plug in as they do on a real diffusers UNet. It is smaller and faster on CPU than a
``UNet2DModel`` of the same width (which spends most of its CPU time on per-op overhead at 8x8).
Labels ``0..9`` are the digits; label ``10`` is the null (unconditional) class, drawn with
probability ``p_uncond`` during training (classifier-free guidance). Training is seeded and the
weights are cached under ``$POSNEG_CACHE`` or ``~/.cache/posneg/generative/`` keyed by the
configuration and the training data's hash (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg._io import atomic_write_bytes

__all__ = ["DDPMConfig", "TinyUNet", "ddim_sample", "make_scheduler", "pretrained_ddpm"]

NUM_CLASSES = 10
NULL_CLASS = 10


@dataclass(frozen=True)
class DDPMConfig:
    """The stand-in DDPM's architecture and training budget (all of it enters the cache key)."""

    width: int = 16
    steps: int = 800
    batch: int = 128
    lr: float = 2e-3
    p_uncond: float = 0.15
    num_train_timesteps: int = 1000
    seed: int = 0


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class _Res(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.e = nn.Linear(emb, c_out)
        self.n2, self.c2 = (
            nn.GroupNorm(_groups(c_out), c_out),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.e(emb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """8x8 -> 4x4 (self-attention over 16 tokens) -> 8x8 denoiser, ``UNet2DModel``'s signature."""

    def __init__(self, width: int = 32, num_class_embeds: int = NUM_CLASSES + 1) -> None:
        super().__init__()
        from diffusers.models.attention_processor import Attention

        w, emb = width, 4 * width
        self.width = w
        self.time = nn.Sequential(nn.Linear(w, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(num_class_embeds, emb)
        self.inp = nn.Conv2d(1, w, 3, padding=1)
        self.down = _Res(w, w, emb)
        self.pool = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.mid1 = _Res(2 * w, 2 * w, emb)
        self.mid_attn = Attention(
            2 * w,
            heads=4,
            dim_head=2 * w // 4,
            norm_num_groups=_groups(2 * w),
            residual_connection=True,
        )
        self.mid2 = _Res(2 * w, 2 * w, emb)
        self.up = _Res(3 * w, w, emb)
        self.out = nn.Sequential(
            nn.GroupNorm(_groups(w), w), nn.SiLU(), nn.Conv2d(w, 1, 3, padding=1)
        )

    def _temb(self, t: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        a = t.float()[:, None] * freqs[None]
        return self.time(torch.cat([a.sin(), a.cos()], dim=1))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, class_labels: torch.Tensor
    ) -> SimpleNamespace:
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dim() == 0:
            t = t.expand(sample.shape[0])
        emb = self._temb(t) + self.label(class_labels)
        h0 = self.down(self.inp(sample), emb)
        h = self.mid1(self.pool(h0), emb)
        h = self.mid2(self.mid_attn(h), emb)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.up(torch.cat([h, h0], dim=1), emb)
        return SimpleNamespace(sample=self.out(h))


def make_scheduler(num_train_timesteps: int = 1000) -> Any:
    """A diffusers ``DDIMScheduler`` (squared-cosine betas, epsilon prediction)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
    )


def _cache_dir() -> Path:
    root = os.environ.get("POSNEG_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "posneg"
    return base / "generative"


def _key(cfg: DDPMConfig, x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256(json.dumps({"v": 1, **asdict(cfg)}, sort_keys=True).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pretrained_ddpm(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: DDPMConfig = DDPMConfig(),
    *,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TinyUNet, bool]:
    """The DDPM trained on ``x`` ([-1, 1]), ``y``: (model, loaded from cache)."""
    path = _cache_dir() / f"ddpm_{_key(cfg, x, y)}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = TinyUNet(cfg.width)
    if cache and path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), True
    g = torch.Generator().manual_seed(cfg.seed)
    sched = make_scheduler(cfg.num_train_timesteps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_at = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(x), (cfg.batch,), generator=g)
        x0, lab = x[idx], y[idx].clone()
        lab[torch.rand(cfg.batch, generator=g) < cfg.p_uncond] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch,), generator=g)
        xt = sched.add_noise(x0, noise, t)
        loss = F.mse_loss(model(xt, t, class_labels=lab).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_at.step()
        with torch.no_grad():
            decay = min(0.995, (1 + step) / (10 + step))
            for k, v in model.state_dict().items():
                ema[k].mul_(decay).add_(
                    v.detach(), alpha=1 - decay
                ) if v.is_floating_point() else ema[k].copy_(v)
        if progress is not None:
            progress(step + 1, cfg.steps)
    model.load_state_dict(ema)
    model.eval()
    if cache:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())
    return model, False


#: A guided noise prediction: eps_fn(x_t, t) -> eps, both (B, 1, 8, 8).
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    n: int,
    *,
    scheduler: Any,
    steps: int,
    generator: torch.Generator,
    before_step: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from ``x_T ~ N(0, I)`` drawn from ``generator``; ``(n, 1, 8, 8)``.

    ``before_step(t)`` runs before each denoiser call (NegToMe sets its timestep there).
    """
    sched = type(scheduler).from_config(scheduler.config)
    sched.set_timesteps(steps)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    for t in sched.timesteps:
        if before_step is not None:
            before_step(t)
        eps = eps_fn(x, t.expand(n))
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)
