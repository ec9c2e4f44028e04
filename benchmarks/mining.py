"""Hard-negative mining: exact top-k search and end-to-end mining against faiss and
sentence-transformers.

Sections (``--sections a,b,c``; default ``a,b`` plus ``c`` where CUDA exists):

(a) Search with embeddings given: a ``--corpus`` x ``--dim`` float32 corpus (default 200,000 x 384,
    unit-norm Gaussian rows, seeded), ``--queries`` queries (5,000), top ``--k`` (100), on CPU with
    ``--threads`` torch/faiss threads (2). Cases, each in a fresh subprocess so that its peak
    resident set size (``ru_maxrss``) is its own:

    * ``posneg``: :class:`posneg.mining.index.ExactIndex` (default chunks: 1024 queries x 32,768
      documents per score block, 128 MB);
    * ``faiss``: faiss-cpu ``IndexFlatIP`` (exact; BLAS blocks + per-row heaps);
    * ``torch_topk``: ``q @ corpus.T`` then ``torch.topk`` over full score rows, queries in chunks
      of ``--topk-chunk`` (512) rows (a 512 x 200,000 fp32 block = 410 MB; all 5,000 rows at once
      would be 4 GB).

    "extra MB" is the peak RSS minus the RSS after the inputs were built. The ids of each case are
    compared with posneg's (fraction of equal ids; float32 rounding can swap near-ties).

(b) End to end on the code-search pairs (``posneg.data.code_search``, all splits): queries are
    docstring sentences, the corpus is the functions' code plus planted duplicates of the positives
    of ``--planted`` pairs: an exact copy and a whitespace variant (trailing spaces on every
    line, which the model's tokenizer ignores, so it embeds like the positive). Both miners use
    the same all-MiniLM-L6-v2 model object, batch size, ``num_negatives``, window
    (``range_min=0``, ``range_max``), ``absolute_margin``/``margin`` and "top" sampling:

    * ``st``: ``sentence_transformers.util.mine_hard_negatives(..., corpus=..., use_faiss=False,
      output_format="n-tuple")`` (it de-duplicates exact texts of the corpus itself);
    * ``posneg``: ``encode`` (no cache) + ``mine`` with the same filters;
    * ``posneg+dup``: as ``posneg`` plus ``duplicate_of=duplicate_groups(corpus,
      key=whitespace-normalised)``;
    * ``posneg cached``: ``posneg+dup`` again with the embedding cache filled beforehand;
    * ``previous posneg`` (``--no-reference`` skips it): the model's own ``encode`` (what posneg
      called before it planned batches by token length) + ``mine``; its embeddings and
      negatives are compared with ``posneg``'s (max abs difference; rows whose ids differ, and
      whether each differs only around token-identical copies: the whitespace variants and
      exact copies, which now share one forward pass and so score exactly alike);
    * ``posneg int8`` (``--no-int8`` skips it): ``load_encoder(backend="int8")`` + ``mine``;
      the mean cosine of its embeddings to the float32 ones and the fraction of its negatives
      that ``posneg`` (float32) also mined.

    Times include embedding (model loading excluded for all). A false negative is a mined negative
    that is a planted copy of that query's own positive. sentence-transformers' window is
    ``[range_min, range_max)`` among non-positives, posneg's is ranks ``range_min..range_max`` of
    the full ranking: with the positive ranked first and ``range_min=0`` both hold the same
    documents.

(c) CUDA only: ``--gpu-queries`` (4096) x ``--gpu-corpus`` (1,048,576) x ``--gpu-dim`` (768) fp16,
    k=100: ExactIndex on the GPU vs ``matmul`` + ``torch.topk`` in the same run (CUDA events,
    median of 5 after a warm-up).

This is a benchmark, not a test: nothing fails on a number. Usage::

    python benchmarks/mining.py                          # (a) and (b), (c) where CUDA exists
    python benchmarks/mining.py --sections a --corpus 50000 --queries 1000
    python benchmarks/mining.py --sections b --max-pairs 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEARCH_CASES = ("posneg", "faiss", "torch_topk")


def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(rss) / (1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0)


def _load() -> str:
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{a:.2f} {b:.2f} {c:.2f}"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("faiss", "sentence_transformers", "transformers"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            out[mod] = "not installed"
    return out


def _set_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


# ---------------------------------------------------------------------------------------------
# (a) search, one case per subprocess
# ---------------------------------------------------------------------------------------------


def _search_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)

    def rows(n: int) -> torch.Tensor:  # filled in place, chunk by chunk: no temporary copies
        out = torch.empty(n, args.dim)
        for a in range(0, n, 8192):
            block = out[a : a + 8192]
            block.normal_(generator=g)
            block.div_(block.norm(dim=1, keepdim=True))
        return out

    return rows(args.corpus), rows(args.queries)


def run_search_case(args: argparse.Namespace) -> None:
    """Child process: build inputs, time one search, print a JSON line, save the ids."""
    _set_threads(args.threads)
    x, q = _search_inputs(args)
    k = args.k
    if args.case == "posneg":
        from posneg.mining.index import ExactIndex

        index = ExactIndex(query_chunk=args.query_chunk, doc_chunk=args.doc_chunk)
        index.add(x)
        base = _maxrss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        _, ids = index.search(q, k)
    elif args.case == "faiss":
        import faiss

        fidx = faiss.IndexFlatIP(args.dim)
        fidx.add(x.numpy())
        base = _maxrss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        _, i_np = fidx.search(q.numpy(), k)
        ids = torch.from_numpy(i_np)
    elif args.case == "torch_topk":
        base = _maxrss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        parts = []
        for a in range(0, q.shape[0], args.topk_chunk):
            s = q[a : a + args.topk_chunk] @ x.T
            parts.append(torch.topk(s, k, dim=1).indices)
            del s
        ids = torch.cat(parts)
    else:
        raise SystemExit(f"unknown case {args.case!r}")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(args.ids_out, ids.numpy().astype(np.int64))
    peak = _maxrss_mb()
    print(json.dumps({"case": args.case, "wall_s": wall, "cpu_s": cpu, "base_mb": base,
                      "peak_mb": peak, "load": _load()}))  # fmt: skip


def section_a(args: argparse.Namespace) -> None:
    print(
        f"\n## (a) search: corpus {args.corpus:,} x {args.dim} fp32, {args.queries:,} queries, "
        f"k={args.k}, {args.threads} threads\n"
    )
    rows: dict[str, dict[str, Any]] = {}
    ids: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            for rep in range(args.repeats):
                out = Path(tmp) / f"{case}.npy"
                cmd = [sys.executable, __file__, "--case", case, "--ids-out", str(out),
                       *_child_args(args)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(f"{case}: failed\n{proc.stderr[-2000:]}")
                    break
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  {case} run {rep + 1}: {res['wall_s']:.2f} s wall, load {res['load']}")
                best = rows.get(case)
                if best is None or res["wall_s"] < best["wall_s"]:
                    rows[case] = res
                ids[case] = np.load(out)
    if "posneg" not in rows:
        return
    ref = rows["posneg"]["wall_s"]
    print(
        "\n| case | wall s (best) | cpu s | peak RSS MB | extra MB | time / posneg | ids = posneg |"
    )
    print("|---|---|---|---|---|---|---|")
    for case, r in rows.items():
        agree = float((ids[case] == ids["posneg"]).mean()) if case in ids else float("nan")
        print(
            f"| {case} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['peak_mb'] - r['base_mb']:.0f} | {r['wall_s'] / ref:.2f}x | {agree:.4f} |"
        )


def _child_args(args: argparse.Namespace) -> list[str]:
    out = ["--corpus", str(args.corpus), "--dim", str(args.dim), "--queries", str(args.queries),
           "--k", str(args.k), "--threads", str(args.threads), "--topk-chunk",
           str(args.topk_chunk)]  # fmt: skip
    if args.query_chunk:
        out += ["--query-chunk", str(args.query_chunk)]
    if args.doc_chunk:
        out += ["--doc-chunk", str(args.doc_chunk)]
    return out


# ---------------------------------------------------------------------------------------------
# (b) end to end against sentence-transformers
# ---------------------------------------------------------------------------------------------


def _ws_variant(code: str) -> str:
    return "\n".join(line + "   " for line in code.split("\n"))


def _ws_key(text: str) -> str:
    return " ".join(text.split())


def _class_of(texts: list[str]) -> list[int]:
    """The first index of each text's whitespace-normalised form (the planted whitespace
    variants tokenise exactly like their source, so they form one class with it)."""
    first: dict[str, int] = {}
    return [first.setdefault(_ws_key(t), i) for i, t in enumerate(texts)]


def section_b(args: argparse.Namespace) -> None:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from posneg.data.code_search import load_code_search
    from posneg.mining.encode import encode, load_encoder
    from posneg.mining.mine import duplicate_groups, mine

    _set_threads(args.threads)
    t = time.perf_counter()
    data = load_code_search(max_pairs=args.max_pairs)
    pairs = data.pairs
    queries = [p.query for p in pairs]
    codes = [p.code for p in pairs]
    g = torch.Generator().manual_seed(0)
    planted_src = torch.randperm(len(pairs), generator=g)[: args.planted].sort().values.tolist()
    corpus = list(codes)
    source_of: dict[str, int] = {}  # planted text -> the pair whose positive it copies
    for i in planted_src:
        for text in (codes[i], _ws_variant(codes[i])):
            corpus.append(text)
            source_of.setdefault(text, i)
    print(
        f"\n## (b) end to end: {len(pairs):,} code-search pairs, corpus {len(corpus):,} rows "
        f"({args.planted} positives planted twice: exact copy + whitespace variant), "
        f"num_negatives={args.num_negatives}, range_min=0, range_max={args.range_max}, "
        f"margin={args.margin}, sampling top; data built in {time.perf_counter() - t:.1f} s\n"
    )
    t = time.perf_counter()
    encoder = load_encoder(batch_size=args.batch_size)
    model = encoder.model
    if model is None:  # pragma: no cover - the default encoder is a sentence-transformers model
        raise SystemExit("(b) needs a sentence-transformers model")
    print(f"model loaded in {time.perf_counter() - t:.1f} s (excluded from the timings)")

    def count_fn(q_idx: list[int], neg_texts: list[list[str]]) -> tuple[int, int]:
        fn = sum(1 for qi, row in zip(q_idx, neg_texts, strict=True) for tx in row
                 if source_of.get(tx) == qi or tx == codes[qi])  # fmt: skip
        return fn, sum(len(r) for r in neg_texts)

    results: list[tuple[str, float, int, int, str]] = []
    cpu_s: list[float] = []  # process CPU seconds of each row, in order
    # ---- sentence-transformers
    ds = Dataset.from_dict({"anchor": queries, "positive": codes})
    t, c = time.perf_counter(), time.process_time()
    st_out = mine_hard_negatives(
        ds, model, corpus=corpus, range_min=0, range_max=args.range_max,
        absolute_margin=args.margin, num_negatives=args.num_negatives, sampling_strategy="top",
        output_format="n-tuple", batch_size=args.batch_size, use_faiss=False, verbose=False,
    )  # fmt: skip
    st_time = time.perf_counter() - t
    cpu_s.append(time.process_time() - c)
    q_index = {q: i for i, q in enumerate(queries)}
    neg_cols = [c for c in st_out.column_names if c.startswith("negative")]
    st_q = [q_index[a] for a in st_out["anchor"]]
    st_negs = [[row[c] for c in neg_cols] for row in st_out]
    fn, total = count_fn(st_q, st_negs)
    results.append(("sentence-transformers", st_time, fn, total, f"{len(st_out)} rows kept"))

    # ---- posneg
    positives = [[i] for i in range(len(pairs))]

    embs: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
    last_cpu = [0.0]

    def run_posneg(dup: bool, cache: Path | None) -> tuple[float, Any]:
        t0 = time.perf_counter()
        last_cpu[0] = time.process_time()
        q_emb = encode(queries, encoder, cache_dir=cache)
        c_emb = encode(corpus, encoder, cache_dir=cache)
        dup_of = duplicate_groups(corpus, key=_ws_key) if dup else None
        res = mine(q_emb, c_emb, positives, num_negatives=args.num_negatives, range_min=0,
                   range_max=args.range_max, margin=args.margin, duplicate_of=dup_of)  # fmt: skip
        embs[cache is None] = (q_emb, c_emb)
        last_cpu[0] = time.process_time() - last_cpu[0]
        return time.perf_counter() - t0, res

    mined: dict[str, Any] = {}
    for label, dup in (("posneg", False), ("posneg+dup", True)):
        el, res = run_posneg(dup, None)
        mined[label] = res
        negs = [[corpus[j] for j in row if j >= 0] for row in res.ids.tolist()]
        fn, total = count_fn(list(range(len(pairs))), negs)
        results.append((label, el, fn, total, f"{res.short_queries} short queries"))
        cpu_s.append(last_cpu[0])
    if args.reference:
        # the previous posneg path: the model's own encode (char-length sorted batches of 64)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            q_ref = model.encode(queries, batch_size=args.batch_size, convert_to_tensor=True,
                                 normalize_embeddings=True).clone()  # fmt: skip
            c_ref = model.encode(corpus, batch_size=args.batch_size, convert_to_tensor=True,
                                 normalize_embeddings=True).clone()  # fmt: skip
        ref = mine(q_ref, c_ref, positives, num_negatives=args.num_negatives, range_min=0,
                   range_max=args.range_max, margin=args.margin)  # fmt: skip
        el = time.perf_counter() - t0
        cpu_s.append(time.process_time() - c0)
        negs = [[corpus[j] for j in row if j >= 0] for row in ref.ids.tolist()]
        fn, total = count_fn(list(range(len(pairs))), negs)
        q_new, c_new = embs[True]
        diff = max(float((q_new - q_ref).abs().max()), float((c_new - c_ref).abs().max()))
        cls = torch.tensor(_class_of(corpus))
        a, b = ref.ids.tolist(), mined["posneg"].ids.tolist()
        differ = [i for i in range(len(a)) if a[i] != b[i]]

        # rows differ only around token-identical copies, which now embed bit-identically: a
        # copy of the query's positive scores exactly the positive's score (the margin=0
        # boundary: kept now, dropped or kept by float noise before), or the order among the
        # copies of another document changes (equal up to which copy)
        def pos_copy(row: list[int], i: int) -> bool:
            return any(j != i and int(cls[j]) == int(cls[i]) for j in row if j >= 0)

        by_pos = sum(pos_copy(a[i], i) or pos_copy(b[i], i) for i in differ)
        by_order = sum(
            not (pos_copy(a[i], i) or pos_copy(b[i], i))
            and [int(cls[j]) for j in a[i]] == [int(cls[j]) for j in b[i]]
            for i in differ
        )
        results.append(("model.encode + mine (previous posneg)", el, fn, total,
                        f"max abs emb diff vs posneg {diff:.1e}; rows with other ids "
                        f"{len(differ)}/{len(a)}: {by_pos} around a token-identical copy of the "
                        f"positive, {by_order} only in which copy of a duplicated document, "
                        f"{len(differ) - by_pos - by_order} otherwise"))  # fmt: skip
    if args.int8:
        enc8 = load_encoder(batch_size=args.batch_size, backend="int8")
        _ = enc8.model  # load (and quantise) outside the timing
        t0, c0 = time.perf_counter(), time.process_time()
        q8, c8 = encode(queries, enc8), encode(corpus, enc8)
        res8 = mine(q8, c8, positives, num_negatives=args.num_negatives, range_min=0,
                    range_max=args.range_max, margin=args.margin)  # fmt: skip
        el = time.perf_counter() - t0
        cpu_s.append(time.process_time() - c0)
        negs = [[corpus[j] for j in row if j >= 0] for row in res8.ids.tolist()]
        fn, total = count_fn(list(range(len(pairs))), negs)
        q32, c32 = embs[True]
        cos = float(torch.cat([(q8 * q32).sum(1), (c8 * c32).sum(1)]).mean())
        cls = torch.tensor(_class_of(corpus))
        a, b = res8.ids.tolist(), mined["posneg"].ids.tolist()
        same = sum(
            len({j for j in x if j >= 0} & {j for j in y if j >= 0})
            for x, y in zip(a, b, strict=True)
        )
        ca = [{int(cls[j]) for j in x if j >= 0} for x in a]
        cb = [{int(cls[j]) for j in y if j >= 0} for y in b]
        same_c = sum(len(x & y) / max(len(y), 1) for x, y in zip(ca, cb, strict=True)) / len(cb)
        results.append(("posneg int8 (opt-in)", el, fn, total,
                        f"mean cosine to float32 {cos:.4f}; negatives shared with float32 "
                        f"{same / max(1, sum(len(r) for r in b)):.3f} (by id), {same_c:.3f} "
                        f"(by token-identical class)"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run_posneg(True, Path(tmp))  # fill the cache
        el, res = run_posneg(True, Path(tmp))
        negs = [[corpus[j] for j in row if j >= 0] for row in res.ids.tolist()]
        fn, total = count_fn(list(range(len(pairs))), negs)
        results.append(("posneg+dup cached", el, fn, total, "embeddings from cache"))
        cpu_s.append(last_cpu[0])
    print(
        "\n| miner | wall s | CPU s | vs ST (wall) | vs ST (CPU) | negatives | false negatives "
        "| note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (name, el, fn, total, note), cpu in zip(results, cpu_s, strict=True):
        print(
            f"| {name} | {el:.1f} | {cpu:.1f} | {st_time / el:.2f}x | {cpu_s[0] / cpu:.2f}x "
            f"| {total} | {fn} | {note} |"
        )
    print(f"load average after (b): {_load()}")


# ---------------------------------------------------------------------------------------------
# (c) CUDA
# ---------------------------------------------------------------------------------------------


def section_c(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("\n## (c) CUDA: skipped (no CUDA device)")
        return
    from posneg.mining.index import ExactIndex

    dev = torch.device("cuda")
    nq, n, d, k = args.gpu_queries, args.gpu_corpus, args.gpu_dim, args.k
    print(f"\n## (c) CUDA {torch.cuda.get_device_name(dev)}: {nq} x {n:,} x {d} fp16, k={k}\n")
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, d, device=dev, dtype=torch.float16, generator=g)
    q = torch.randn(nq, d, device=dev, dtype=torch.float16, generator=g)
    index = ExactIndex(query_chunk=args.query_chunk, doc_chunk=args.doc_chunk)
    index.add(x)

    def timed(fn: Any) -> float:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        return float(np.median(times))

    torch.cuda.reset_peak_memory_stats()
    t_ours = timed(lambda: index.search(q, k))
    mem_ours = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    t_ref = timed(lambda: torch.topk(q @ x.T, k, dim=1))
    mem_ref = torch.cuda.max_memory_allocated() / 2**20
    t_mm = timed(lambda: q @ x.T)
    _, i1 = index.search(q, k)
    s_ref = (q @ x.T).float()
    i2 = torch.topk(s_ref, k, dim=1).indices
    agree = float((torch.sort(i1, 1).values == torch.sort(i2, 1).values).float().mean())
    print("| case | ms | peak MB | vs matmul+topk |")
    print("|---|---|---|---|")
    print(f"| posneg ExactIndex | {t_ours:.1f} | {mem_ours:.0f} | {t_ref / t_ours:.2f}x |")
    print(f"| matmul + torch.topk | {t_ref:.1f} | {mem_ref:.0f} | 1.00x |")
    print(f"| matmul alone | {t_mm:.1f} | | |")
    print(f"id sets equal (sorted per row): {agree:.4f}")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default=None, help="comma list of a,b,c (default a,b[,c])")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corpus", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=5_000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--query-chunk", type=int, default=None)
    p.add_argument("--doc-chunk", type=int, default=None)
    p.add_argument("--topk-chunk", type=int, default=512)
    p.add_argument("--cases", default=",".join(SEARCH_CASES))
    p.add_argument("--repeats", type=int, default=1, help="runs per search case (best kept)")
    p.add_argument("--max-pairs", type=int, default=None)
    p.add_argument("--planted", type=int, default=200)
    p.add_argument("--num-negatives", type=int, default=5)
    p.add_argument("--range-max", type=int, default=50)
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="(b): skip the previous path (model.encode) and its comparison",
    )
    p.add_argument(
        "--no-int8", dest="int8", action="store_false", help="(b): skip the opt-in int8 backend"
    )
    p.add_argument("--gpu-queries", type=int, default=4096)
    p.add_argument("--gpu-corpus", type=int, default=1 << 20)
    p.add_argument("--gpu-dim", type=int, default=768)
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ids-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        run_search_case(args)
        return
    sections = args.sections or ("a,b,c" if torch.cuda.is_available() else "a,b")
    print("# posneg mining benchmark")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {platform.processor() or ''}")
    print(f"load average at start: {_load()}")
    print("versions: " + ", ".join(f"{a} {b}" for a, b in _versions().items()))
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    for s in sections.split(","):
        {"a": section_a, "b": section_b, "c": section_c}[s.strip()](args)


if __name__ == "__main__":
    main()
