"""Speed of posneg's MedMNIST-C corruptions against per-image loops, imagecorruptions and kornia.

Times one call of each case on the same batch in the same process (default B=256, 3x224x224
uint8: MedMNIST-C's severities are defined at 224 x 224) and prints a table of milliseconds per
batch with the ratio "peer / posneg" (above 1: posneg is faster) beside every peer row.

posneg rows (``posneg.augment.corruptions``):

* ``corrupt(x, name, severity, dataset=..., generator=g)`` on the uint8 batch, severity 3
  (``--severity``), for ``gaussian_noise``, ``impulse_noise``, ``defocus_blur``,
  ``motion_blur``, ``zoom_blur``, ``pixelate``, ``jpeg_compression``, ``contrast_down``
  (DermaMNIST's severities), ``saturate`` and ``bubble`` (PathMNIST's) and ``gaussian_blur``
  (ChestMNIST's). Where a kornia peer exists the same call is also timed on the float32 batch,
  the input kornia takes;
* ``Corruptions("dermamnist")(x, generator=g)``: the augmentation mode, one corruption (or
  identity) and one parameter drawn per sample. No peer row: the official ``AugMedMNISTC``
  needs the ``medmnistc`` package, which is not importable here (its motion blur needs
  ImageMagick through Wand).

Peers (each optional; missing ones are skipped with a printed note):

* "per-image loop (official recipe)": a Python loop over the images, numpy uint8 (H, W, C) in
  and uint8 out, doing on each image what MedMNIST-C's official code (``medmnistc-api``,
  ``medmnistc/corruptions/*.py``) does with NumPy / OpenCV / scikit-image / Pillow, with the
  *same* parameter as the posneg row (read from ``posneg.augment.corruptions.DATASETS``):
  Gaussian noise (``x/255 + normal(0, c)``, clipped, truncated to uint8), impulse noise
  (scikit-image ``random_noise(mode="s&p")``), defocus blur (the ImageNet-C disk smoothed by
  ``cv2.GaussianBlur``, then ``cv2.filter2D`` per channel on float64), pixelate (Pillow BOX down-
  then up-scale), JPEG (Pillow encode and decode), saturate (scikit-image ``rgb2hsv``, ``+ c``
  on S, ``hsv2rgb``), contrast (Pillow ``ImageEnhance.Contrast``) and bubble (Pillow
  ``ImageDraw`` ellipses on an RGBA layer pasted over the image). The noises draw from a numpy
  ``Generator`` instead of numpy's global state. Motion blur (ImageMagick), zoom blur (SciPy)
  and the Gaussian blur (torchvision) have no such row.
* "imagecorruptions (ImageNet-C severity 3, different parameters)": bethgelab's
  ``imagecorruptions.corrupt(image, corruption_name=..., severity=3)`` per image (uint8
  (H, W, C) in and out) for ``gaussian_noise``, ``impulse_noise``, ``defocus_blur``,
  ``motion_blur``, ``zoom_blur``, ``pixelate``, ``jpeg_compression`` and ``contrast`` (paired
  with posneg's ``contrast_down``). ImageNet-C's severity-3 parameters and recipes differ from
  MedMNIST-C's DermaMNIST ones for most of these: Gaussian noise std 0.18 vs 0.12, impulse
  amount 0.09 vs 0.06, defocus (6, 0.5) vs (6, 0.3), contrast towards the per-channel mean by
  0.2 vs Pillow's towards the grey-level mean by 0.6, pixelate up-scales with NEAREST instead of
  BOX, motion blur is a NumPy/OpenCV re-implementation of ImageMagick's; JPEG quality 15,
  pixelate factor 0.4, motion (15, 8) and zoom ``arange(1, 1.21, 0.02)`` coincide. These rows
  are for scale only. imagecorruptions 1.1.2 imports ``pkg_resources``, gone from
  recent setuptools; where it is missing a stand-in module is put in ``sys.modules`` (only its
  ``frost`` corruption, not timed here, uses it).
* "kornia (own parameterisation)": ``kornia.augmentation`` modules with ``p=1`` on the float32
  batch, with parameters chosen to resemble the posneg row but not equal to it:
  ``RandomGaussianNoise(std=c)`` (no clipping), ``RandomSaltAndPepperNoise(amount=(c, c),
  salt_vs_pepper=(0.5, 0.5))`` (per pixel, all channels, where MedMNIST-C's is per value),
  ``RandomMotionBlur(kernel_size=2 ceil(r) + 1, angle=(-45, 45), direction=0)`` (a centred
  uniform line kernel, where MedMNIST-C's is ImageMagick's one-sided Gaussian-weighted one),
  ``RandomJPEG(jpeg_quality=(q, q))`` (a differentiable JPEG in torch) where the installed kornia
  has it, ``RandomGaussianBlur(kernel_size=k, sigma=(s, s))`` with posneg's k and sigma. The
  kornia / posneg ratio uses the posneg float32 row.

Method, the same as ``benchmarks/mixing.py`` (whose timing helpers this script reuses): inputs
are random images; one warm-up call per case, then ``--repeats`` round-robin rounds; minimum and
median per case; ratios use the minima. posneg uses torch's intra-op threads (listed in the
header; ``--threads`` sets them); the per-image loops run in one Python thread as the official
code does (OpenCV may use its own threads inside ``filter2D``). On a machine whose cores are busy
with other work, several torch threads can be much slower than one: compare ``--threads 1``. A
DataLoader with workers would parallelise either.
``--peer-batch N`` times the per-image loops on the first N images only and scales their times
by ``B / N`` (marked in the table), to shorten a run: a per-image loop is linear in B. The GPU
section (only where CUDA is present) times the posneg and kornia rows on the device; the
per-image loops are CPU-only. A benchmark, not a test: nothing here fails on a number.

Usage::

    python benchmarks/corruptions.py                      # CPU (+ GPU if present), B=256
    python benchmarks/corruptions.py --batch 32 --repeats 3 --threads 1
    python benchmarks/corruptions.py --peer-batch 32 --out bench_corruptions.md
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import math
import statistics
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mixing import Call, environment, time_round_robin
from posneg.augment.corruptions import Corruptions, corrupt, severity_table

#: (posneg corruption, MedMNIST data set whose severities are used).
CASES: tuple[tuple[str, str], ...] = (
    ("gaussian_noise", "dermamnist"),
    ("impulse_noise", "dermamnist"),
    ("defocus_blur", "dermamnist"),
    ("motion_blur", "dermamnist"),
    ("zoom_blur", "dermamnist"),
    ("pixelate", "dermamnist"),
    ("jpeg_compression", "dermamnist"),
    ("contrast_down", "dermamnist"),
    ("saturate", "pathmnist"),
    ("bubble", "pathmnist"),
    ("gaussian_blur", "chestmnist"),
)

#: posneg corruption -> imagecorruptions corruption_name.
IMAGECORRUPTIONS: dict[str, str] = {
    "gaussian_noise": "gaussian_noise",
    "impulse_noise": "impulse_noise",
    "defocus_blur": "defocus_blur",
    "motion_blur": "motion_blur",
    "zoom_blur": "zoom_blur",
    "pixelate": "pixelate",
    "jpeg_compression": "jpeg_compression",
    "contrast_down": "contrast",
}

POSNEG_U8 = "posneg corrupt, uint8"
POSNEG_F32 = "posneg corrupt, fp32"
LOOP = "per-image loop (official recipe)"
IMAGEC = "imagecorruptions (ImageNet-C severity 3, different parameters)"
KORNIA = "kornia (own parameterisation)"

Image = np.ndarray[Any, np.dtype[np.uint8]]
Recipe = Callable[[Image, Any, np.random.Generator], Image]


# --- per-image recipes of the official MedMNIST-C code (numpy uint8 HWC in, uint8 out) ---------


def _to_u8(y: np.ndarray[Any, Any]) -> Image:
    """Clip to [0, 1], scale and truncate, as the official ``(np.clip(y, 0, 1) * 255).astype``."""
    return (np.clip(y, 0.0, 1.0) * 255).astype(np.uint8)


def _gaussian_noise(img: Image, c: float, rng: np.random.Generator) -> Image:
    x = img / 255.0
    return _to_u8(x + rng.normal(scale=c, size=x.shape))


def _impulse_noise(img: Image, c: float, rng: np.random.Generator) -> Image:
    from skimage.util import random_noise

    return _to_u8(random_noise(img / 255.0, mode="s&p", amount=c, rng=rng))


def _disk(radius: float, alias_blur: float) -> np.ndarray[Any, Any]:
    import cv2

    grid = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    kernel /= kernel.sum()
    return np.asarray(cv2.GaussianBlur(kernel, ksize=ksize, sigmaX=alias_blur))


def _defocus_blur(img: Image, c: tuple[float, float], rng: np.random.Generator) -> Image:
    import cv2

    x = img / 255.0
    kernel = _disk(c[0], c[1])
    planes = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(x.shape[2])]
    return _to_u8(np.stack(planes, axis=2))


def _pixelate(img: Image, c: float, rng: np.random.Generator) -> Image:
    from PIL import Image as PILImage

    pil = PILImage.fromarray(img)
    w, h = pil.size
    small = pil.resize((int(w * c), int(h * c)), PILImage.Resampling.BOX)
    return np.asarray(small.resize((w, h), PILImage.Resampling.BOX))


def _jpeg(img: Image, c: float, rng: np.random.Generator) -> Image:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, "JPEG", quality=int(c))
    return np.asarray(PILImage.open(buf))


def _contrast(img: Image, c: float, rng: np.random.Generator) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageEnhance

    return np.asarray(ImageEnhance.Contrast(PILImage.fromarray(img)).enhance(c))


def _saturate(img: Image, c: float, rng: np.random.Generator) -> Image:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(img / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] + c, 0.0, 1.0)
    return _to_u8(hsv2rgb(hsv))


def _bubble(img: Image, c: tuple[float, float], rng: np.random.Generator) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    max_radius, max_bubbles = int(c[0]), int(c[1])
    out = PILImage.fromarray(img)
    w, h = out.size
    layer = PILImage.new("RGBA", out.size, (255, 255, 255, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(7, max_bubbles, endpoint=True))):
        r = int(rng.integers(3, max_radius, endpoint=True))
        cx = int(rng.integers(r, w - r, endpoint=True))
        cy = int(rng.integers(r, h - r, endpoint=True))
        draw.ellipse((cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2), fill=(255, 255, 255, 130))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255, 100))
    out.paste(layer, (0, 0), layer)
    return np.asarray(out)


#: posneg corruption -> (per-image recipe, modules it needs).
RECIPES: dict[str, tuple[Recipe, tuple[str, ...]]] = {
    "gaussian_noise": (_gaussian_noise, ()),
    "impulse_noise": (_impulse_noise, ("skimage",)),
    "defocus_blur": (_defocus_blur, ("cv2",)),
    "pixelate": (_pixelate, ("PIL",)),
    "jpeg_compression": (_jpeg, ("PIL",)),
    "contrast_down": (_contrast, ("PIL",)),
    "saturate": (_saturate, ("skimage",)),
    "bubble": (_bubble, ("PIL",)),
}


# --- optional peers --------------------------------------------------------------------------


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def import_imagecorruptions() -> Any | None:
    """The ``imagecorruptions`` module, or None. Puts a stand-in ``pkg_resources`` (used only by
    its ``frost`` corruption) in ``sys.modules`` where recent setuptools no longer ships one."""
    if not _importable("pkg_resources"):
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            root = Path(spec.origin).parent if spec and spec.origin else Path.cwd()
            return str(root / resource)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        return importlib.import_module("imagecorruptions")
    except ImportError:
        return None


def kornia_modules(
    name: str, param: Any, device: torch.device
) -> tuple[torch.nn.Module | None, str]:
    """kornia's module resembling ``name`` at ``param`` (None if none), and a note."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None, "kornia not installed"
    if name == "gaussian_noise":
        return K.RandomGaussianNoise(std=float(param), p=1.0).to(device), ""
    if name == "impulse_noise":
        c = float(param)
        return K.RandomSaltAndPepperNoise(amount=(c, c), salt_vs_pepper=(0.5, 0.5), p=1.0).to(
            device
        ), ""
    if name == "motion_blur":
        k = 2 * math.ceil(float(param[0])) + 1
        return K.RandomMotionBlur(kernel_size=k, angle=(-45.0, 45.0), direction=0.0, p=1.0).to(
            device
        ), ""
    if name == "jpeg_compression":
        if not hasattr(K, "RandomJPEG"):
            return None, "this kornia has no RandomJPEG"
        q = float(param)
        return K.RandomJPEG(jpeg_quality=(q, q), p=1.0).to(device), ""
    if name == "gaussian_blur":
        k = int(param)
        k -= 1 - k % 2  # odd, as posneg and the official code
        sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8
        return K.RandomGaussianBlur(kernel_size=k, sigma=(sigma, sigma), p=1.0).to(device), ""
    return None, ""


# --- cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One timed call: the corruption row group, the implementation, the call, the factor its
    time is scaled by (per-image loops timed on fewer images) and the posneg row it is compared
    with (None for posneg rows)."""

    group: str
    label: str
    fn: Call
    scale: float = 1.0
    base: str | None = None

    @property
    def key(self) -> str:
        return f"{self.group} | {self.label}"


def _loop(recipe: Recipe, images: list[Image], param: Any, seed: int) -> Call:
    def call() -> list[Image]:
        rng = np.random.default_rng(seed)
        return [recipe(img, param, rng) for img in images]

    return call


def _module_call(module: torch.nn.Module, x: torch.Tensor) -> Call:
    return lambda: module(x)


def _imagec_loop(module: Any, name: str, images: list[Image], severity: int) -> Call:
    def call() -> list[Image]:
        return [module.corrupt(img, corruption_name=name, severity=severity) for img in images]

    return call


def build_cases(
    batch: int,
    size: int,
    severity: int,
    device: torch.device,
    peer_batch: int,
    notes: list[str],
) -> list[Case]:
    """posneg and peer cases on one shared batch (per-image peers only on the CPU)."""
    gen = torch.Generator(device=device).manual_seed(0)
    g_cpu = torch.Generator().manual_seed(1)
    x8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g_cpu)
    x8 = x8.to(device)
    xf = x8.float() / 255
    cpu = device.type == "cpu"
    n_peer = min(peer_batch, batch)
    images: list[Image] = []
    imagec = None
    if cpu:
        images = [np.ascontiguousarray(a) for a in x8[:n_peer].permute(0, 2, 3, 1).numpy()]
        imagec = import_imagecorruptions()
        if imagec is None:
            notes.append("imagecorruptions not installed: its rows skipped")
        missing = sorted({m for _, mods in RECIPES.values() for m in mods if not _importable(m)})
        if missing:
            notes.append(f"{', '.join(missing)} not installed: those per-image loop rows skipped")
    scale = batch / n_peer
    cases: list[Case] = []
    for name, dataset in CASES:
        param = severity_table(dataset, name)[severity - 1]
        group = f"{name} ({dataset}, s{severity}: {param})"

        def ours(x: torch.Tensor, name: str = name, dataset: str = dataset) -> Call:
            return lambda: corrupt(x, name, severity, dataset=dataset, generator=gen)

        cases.append(Case(group, POSNEG_U8, ours(x8)))
        kmod, why = kornia_modules(name, param, device)
        if kmod is not None:
            cases.append(Case(group, POSNEG_F32, ours(xf)))
        if cpu and name in RECIPES:
            recipe, mods = RECIPES[name]
            if all(_importable(m) for m in mods):
                cases.append(Case(group, LOOP, _loop(recipe, images, param, 0), scale, POSNEG_U8))
        if cpu and imagec is not None and name in IMAGECORRUPTIONS:
            call = _imagec_loop(imagec, IMAGECORRUPTIONS[name], images, severity)
            cases.append(Case(group, IMAGEC, call, scale, POSNEG_U8))
        if kmod is not None:
            cases.append(Case(group, KORNIA, _module_call(kmod, xf), 1.0, POSNEG_F32))
        elif why and why != "kornia not installed":
            notes.append(f"{name}: {why}")
    aug = Corruptions("dermamnist")
    cases.append(
        Case(
            "Corruptions('dermamnist'), augmentation mode",
            "posneg, uint8",
            lambda: aug(x8, generator=gen),
        )
    )
    return cases


def versions() -> list[str]:
    """Versions of the peers' libraries (kornia's is in ``environment``)."""
    found = [f"numpy {np.__version__}"]
    for label, module in (
        ("opencv", "cv2"),
        ("scikit-image", "skimage"),
        ("pillow", "PIL"),
        ("imagecorruptions", "imagecorruptions"),
    ):
        if module == "imagecorruptions":
            mod = import_imagecorruptions()
        else:
            try:
                mod = importlib.import_module(module)
            except ImportError:
                mod = None
        if mod is None:
            found.append(f"{label} not installed")
            continue
        version = getattr(mod, "__version__", None)
        if version is None:
            from importlib.metadata import PackageNotFoundError
            from importlib.metadata import version as dist_version

            try:
                version = dist_version(label)
            except PackageNotFoundError:
                version = "?"
        found.append(f"{label} {version}")
    return [", ".join(found), "medmnistc not importable here (needs ImageMagick/Wand): no rows"]


def run(
    batch: int, size: int, severity: int, repeats: int, device: torch.device, peer_batch: int
) -> list[str]:
    """Time every case on ``device``; return markdown lines."""
    notes: list[str] = []
    cases = build_cases(batch, size, severity, device, peer_batch, notes)
    for note in notes:
        print(f"note: {note}", flush=True)
    times = time_round_robin({c.key: c.fn for c in cases}, device, repeats)
    best = {c.key: min(times[c.key]) * c.scale for c in cases}
    mid = {c.key: statistics.median(times[c.key]) * c.scale for c in cases}
    n_peer = min(peer_batch, batch)
    lines = [
        f"| corruption ({device.type}, B={batch}, 3x{size}x{size}) | implementation "
        "| min ms | median ms | peer / posneg |",
        "|---|---|---|---|---|",
    ]
    ratios: list[str] = []
    for c in cases:
        label = c.label
        if c.scale != 1.0:
            label += f" [timed on {n_peer} images, x{c.scale:.3g}]"
        ratio = ""
        if c.base is not None:
            r = best[c.key] / best[f"{c.group} | {c.base}"]
            ratio = f"{r:.2f}x"
            short = c.group.split(" (")[0]
            ratios.append(f"- {short}: {c.label} / {c.base}: {ratio}")
        lines.append(
            f"| {c.group} | {label} | {best[c.key] * 1e3:.1f} | {mid[c.key] * 1e3:.1f} | {ratio} |"
        )
    lines += [
        "",
        f"Ratios peer / posneg of the minima over {repeats} rounds (above 1: posneg faster; "
        "kornia against posneg's fp32 row, the other peers against its uint8 row):",
        *ratios,
    ]
    lines += [f"- note: {note}" for note in notes]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--severity", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument(
        "--peer-batch",
        type=int,
        default=None,
        help="time the per-image loops on this many images and scale to --batch "
        "(default: the whole batch)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's); 1 compares like with like against the "
        "single-threaded per-image loops",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args(argv)
    if args.batch < 1 or (args.peer_batch is not None and args.peer_batch < 1):
        parser.error("--batch and --peer-batch must be positive")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    peer_batch = args.batch if args.peer_batch is None else args.peer_batch
    cpu = torch.device("cpu")
    report = [
        "# posneg MedMNIST-C corruptions benchmark",
        "",
        "Command: `" + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]) + "`",
        "",
        *[f"- {line}" for line in environment(cpu)],
        *[f"- {line}" for line in versions()],
        "",
        "## CPU",
        "",
    ]
    print("\n".join(report), flush=True)  # the header now, the tables when timed
    shown = len(report)
    report += run(args.batch, args.size, args.severity, args.repeats, cpu, peer_batch)
    if torch.cuda.is_available() and not args.no_gpu:
        cuda = torch.device("cuda")
        report += ["", "## GPU", "", *[f"- {line}" for line in environment(cuda)], ""]
        report += run(args.batch, args.size, args.severity, max(args.repeats, 20), cuda, peer_batch)
    print("\n".join(report[shown:]))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
