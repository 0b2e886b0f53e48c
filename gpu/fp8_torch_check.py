#!/usr/bin/env python3
"""PyTorch's and ml_dtypes' FP8 casts against the kvfp8 tool, byte for byte.

For each format (e4m3fn, e5m2, e4m3fnuz, e5m2fnuz) and each cast:
  torch CUDA   all 65536 f16 and all 65536 bf16 inputs; f32: all 2^32 bit patterns
               per format while the time budget (--budget) allows, decided per
               format from the measured rate and printed, otherwise every S-th
               pattern (odd S); plus the edge set below;
  torch CPU    all f16, all bf16; f32: 2^24 random patterns, the edge set, and the
               FP8 neighbourhood (below) at mantissa stride 7 (--torch-cpu-band-stride);
               the CPU and CUDA casts are separate code and could differ;
  ml_dtypes    all f16 (np.float16), all bf16 (ml_dtypes.bfloat16); f32: 2^24 random
               patterns, the edge set, and the FP8 neighbourhood: every f32 of biased
               exponent 100..160 (--band-stride, default 1: all of them).
The neighbourhood holds every f32 whose FP8 rounding is not trivial for any of the
four formats (exponents 108..144 are the ones that matter: half the smallest
subnormal of E5M2FNUZ, 2^-18, up to the E5M2 overflow threshold, 61440).
The edge set: every exponent (0..255) and sign with mantissas made of any top 4
bits and an edge pattern in the low 19 (0, 1, 2^k - 1, 2^k, 2^k + 1, all ones), so
every tie, just-below-tie and just-above-tie of every rounding position, NaN
payloads, infinities and subnormals are in it.

The other side is `kvfp8 fp8 encode --format F --mode nonsat --profile torch|mldtypes
--from f32|f16|bf16 --raw` (the CLI's default optimized path, or --impl), fed packed
little-endian inputs (through files in /dev/shm) at most 2^26 values per call, several
calls at a time.

Coverage is printed for every row; "all 2^32" only ever means every bit pattern was
compared.  Exit status: 0 no mismatch; 1 mismatches; 2 something could not be
checked (missing library, tool failure, unsupported cast).
"""
import argparse
import collections
import concurrent.futures
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

FORMATS = ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz")
FIRST_MISMATCHES = 10
CHUNK = 1 << 26  # values per tool call; the tool holds its whole input in memory
SEED = 20261130
ALL32 = 1 << 32


def log(msg=""):
    print(msg, flush=True)


# ---- inputs ------------------------------------------------------------------------
# A "plan" is (description, total count, list of zero-argument functions that each
# return one chunk of input bits), so big input sets are generated a chunk at a time.

def plan_all16():
    return ("all 65536", 65536, [lambda: np.arange(65536, dtype=np.uint32).astype(np.uint16)])


def plan_range32(stride):
    """Every stride-th f32 bit pattern: k * stride for every k with k * stride < 2^32."""
    total = (ALL32 - 1) // stride + 1

    def chunk(k0, n):
        if stride == 1:
            return np.arange(n, dtype=np.uint32) + np.uint32(k0)
        return (np.arange(k0, k0 + n, dtype=np.uint64) * np.uint64(stride)).astype(np.uint32)

    desc = "all 2^32" if stride == 1 else "f32 stride %d (sample, 1 in %d)" % (stride, stride)
    return (desc, total, [lambda k0=k0: chunk(k0, min(CHUNK, total - k0)) for k0 in range(0, total, CHUNK)])


def edge_bits():
    low = {0, 1, 2, 3, (1 << 19) - 1, (1 << 19) - 2}
    for k in range(19):
        low |= {(1 << k) - 1, 1 << k, (1 << k) + 1}
    low = np.array(sorted(v for v in low if v < (1 << 19)), dtype=np.uint32)
    mant = ((np.arange(16, dtype=np.uint32)[:, None] << np.uint32(19)) | low[None, :]).ravel()
    exp = np.arange(256, dtype=np.uint32)
    sign = np.array([0, 1], dtype=np.uint32)
    bits = (sign[:, None, None] << np.uint32(31)) | (exp[None, :, None] << np.uint32(23)) | mant[None, None, :]
    return np.ascontiguousarray(bits.ravel())


def plan_edges32():
    bits = edge_bits()
    return ("%d edge patterns" % bits.size, bits.size, [lambda: bits])


def plan_random32(count):
    def chunk(i, n):
        return np.random.default_rng([SEED, i]).integers(0, ALL32, size=n, dtype=np.uint64).astype(np.uint32)

    return ("%d random (seed %d)" % (count, SEED), count,
            [lambda i=i: chunk(i, min(CHUNK, count - i * CHUNK)) for i in range((count + CHUNK - 1) // CHUNK)])


def plan_band32(stride, lo=100, hi=160):
    """Every f32 with biased exponent lo..hi (both signs), mantissas 0, stride, 2*stride..."""
    mant = np.arange(0, 1 << 23, stride, dtype=np.uint32)
    heads = [(s << 31) | (e << 23) for s in (0, 1) for e in range(lo, hi + 1)]
    per = max(1, CHUNK // mant.size)
    groups = [heads[i:i + per] for i in range(0, len(heads), per)]
    desc = ("all f32 of exponents %d..%d" % (lo, hi) if stride == 1 else
            "exponents %d..%d, mantissa stride %d" % (lo, hi, stride))
    return (desc, len(heads) * mant.size,
            [lambda g=g: (np.array(g, dtype=np.uint32)[:, None] | mant[None, :]).ravel() for g in groups])


def combine(*plans):
    return (" + ".join(p[0] for p in plans), sum(p[1] for p in plans), [c for p in plans for c in p[2]])


# ---- the two sides -------------------------------------------------------------------

class ToolError(RuntimeError):
    pass


class Tool:
    def __init__(self, path, impl):
        self.path, self.impl = path, impl
        # Input and output go through files in memory, not pipes: subprocess's
        # communicate() feeds a pipe 4 KiB per select() round in Python, which for
        # 2^32 values a format costs more than the tool itself.
        self.tmpdir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

    def encode(self, fmt, profile, source, bits):
        args = [self.path, "fp8", "encode", "--format", fmt, "--mode", "nonsat", "--profile", profile,
                "--from", source, "--raw"]
        if self.impl:
            args += ["--impl", self.impl]
        with tempfile.TemporaryFile(dir=self.tmpdir) as fin, tempfile.TemporaryFile(dir=self.tmpdir) as fout:
            fin.write(memoryview(np.ascontiguousarray(bits).view(np.uint8)))  # x86: little-endian already
            fin.seek(0)
            p = subprocess.run(args, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
            fout.seek(0)
            out = fout.read()
        if p.returncode != 0 or len(out) != bits.size:
            raise ToolError("%s: exit %d, %d bytes for %d values: %s" % (
                " ".join(args), p.returncode, len(out), bits.size, p.stderr.decode(errors="replace").strip()))
        return np.frombuffer(out, dtype=np.uint8)


def torch_cast(torch, device, fmt, source):
    dst = getattr(torch, "float8_" + fmt)
    view = {"f32": (np.int32, torch.float32), "f16": (np.int16, torch.float16),
            "bf16": (np.int16, torch.bfloat16)}[source]

    def cast(bits):
        t = torch.from_numpy(bits.view(view[0])).to(device).view(view[1])
        return t.to(dst).view(torch.uint8).cpu().numpy()
    return cast


def mldtypes_cast(ml_dtypes, fmt, source):
    dst = getattr(ml_dtypes, "float8_" + fmt)
    src = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}[source]

    def cast(bits):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return bits.view(src).astype(dst).view(np.uint8)
    return cast


# ---- comparison ------------------------------------------------------------------------

class Row:
    def __init__(self, library, device, fmt, source, coverage):
        self.library, self.device, self.fmt, self.source, self.coverage = library, device, fmt, source, coverage
        self.checked = self.mismatches = 0
        self.first = []
        self.error = None
        self.seconds = 0.0


def run_row(row, plan, lib_cast, tool_encode, pool, window):
    """Feeds every chunk to both sides (the tool in the pool, the library here) and
    compares; the tool calls overlap each other and the library's work."""
    t0 = time.monotonic()
    pending = collections.deque()

    def finish():
        bits, future, got = pending.popleft()
        want = future.result()
        bad = np.flatnonzero(got != want)
        row.checked += bits.size
        row.mismatches += bad.size
        for i in bad[:FIRST_MISMATCHES - len(row.first)]:
            row.first.append((int(bits[i]), int(got[i]), int(want[i])))

    try:
        for make in plan[2]:
            bits = make()
            future = pool.submit(tool_encode, bits)
            got = np.asarray(lib_cast(bits), dtype=np.uint8)
            pending.append((bits, future, got))
            while len(pending) >= window:
                finish()
        while pending:
            finish()
    except Exception as e:  # an unsupported cast or a tool failure: reported, not fatal
        row.error = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        for _, future, _ in pending:
            future.cancel()
    row.seconds = time.monotonic() - t0
    report_row(row)
    return row


def report_row(row):
    width = 8 if row.source == "f32" else 4
    status = ("ERROR " + row.error) if row.error else "%d mismatches" % row.mismatches
    log("%-9s %-4s %-8s %-4s: %d checked (%s), %s [%.1f s]" % (
        row.library, row.device, row.fmt, row.source, row.checked, row.coverage, status, row.seconds))
    for bits, got, want in row.first:
        log("  %s 0x%0*x: %s 0x%02x kvfp8 0x%02x" % (row.source, width, bits, row.library, got, want))
    if row.mismatches > len(row.first):
        log("  ... %d more" % (row.mismatches - len(row.first)))


# ---- main ------------------------------------------------------------------------------

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", default=os.environ.get("KVFP8_TOOL", os.path.join(here, "..", "build", "bin", "kvfp8")))
    ap.add_argument("--impl", default=None, help="passed to the tool as --impl (default: the tool's own, auto)")
    ap.add_argument("--budget", type=float, default=200.0,
                    help="seconds for the whole run; decides per format whether torch CUDA f32 is exhaustive")
    ap.add_argument("--band-stride", type=int, default=1, help="mantissa stride of the ml_dtypes exponent band")
    ap.add_argument("--torch-cpu-band-stride", type=int, default=7,
                    help="mantissa stride of the torch CPU exponent band")
    ap.add_argument("--random", type=int, default=1 << 24, help="random f32 patterns for the CPU casts")
    ap.add_argument("--quick", action="store_true", help="smoke run: small samples everywhere")
    ap.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    args = ap.parse_args()
    if args.quick:
        args.random, args.band_stride, args.torch_cpu_band_stride = 1 << 20, 1021, 1021
    if sys.byteorder != "little":
        sys.exit("fp8_torch_check: the tool's --raw input is little-endian; this host is not")

    t_start = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    tool = Tool(os.path.abspath(args.tool), args.impl)
    if not os.access(tool.path, os.X_OK):
        sys.exit("fp8_torch_check: kvfp8 tool not found at %s (make cli, or --tool)" % tool.path)
    try:
        import torch
    except Exception as e:
        torch, torch_error = None, str(e)
    try:
        import ml_dtypes
    except Exception as e:
        ml_dtypes, ml_error = None, str(e)
    cuda = torch is not None and torch.cuda.is_available()

    info = [("date", date), ("python", platform.python_version()), ("numpy", np.__version__)]
    if torch is not None:
        info.append(("torch", "%s (CUDA %s)" % (torch.__version__, torch.version.cuda)))
        info.append(("GPU", torch.cuda.get_device_name(0) + " (cc %d.%d)" % torch.cuda.get_device_capability(0)
                     if cuda else "none visible to torch"))
    else:
        info.append(("torch", "NOT AVAILABLE: " + torch_error))
    info.append(("ml_dtypes", ml_dtypes.__version__ if ml_dtypes is not None else "NOT AVAILABLE: " + ml_error))
    info.append(("kvfp8 tool", "%s fp8 encode --mode nonsat --raw%s" % (
        tool.path, " --impl " + args.impl if args.impl else " (default --impl auto)")))
    log("# kvfp8 fp8_torch_check: torch and ml_dtypes FP8 casts vs the kvfp8 tool")
    for k, v in info:
        log("%s: %s" % (k, v))
    log("workers (concurrent tool calls): %d; budget %.0f s%s" % (args.workers, args.budget,
                                                                    "; QUICK (smoke) run" if args.quick else ""))
    log()

    rows, missing = [], []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.workers)
    window = args.workers + 2

    def row(library, device, fmt, source, plan, cast, profile):
        r = Row(library, device, fmt, source, plan[0])
        rows.append(r)
        return run_row(r, plan, cast, lambda bits: tool.encode(fmt, profile, source, bits), pool, window)

    if torch is None:
        missing.append("torch")
    elif not cuda:
        missing.append("torch CUDA")
    if ml_dtypes is None:
        missing.append("ml_dtypes")

    # 1. every f16 and bf16 input, every library and device
    for fmt in FORMATS:
        for source in ("f16", "bf16"):
            if cuda:
                row("torch", "cuda", fmt, source, plan_all16(), torch_cast(torch, "cuda", fmt, source), "torch-cuda")
            if torch is not None:
                row("torch", "cpu", fmt, source, plan_all16(), torch_cast(torch, "cpu", fmt, source), "torch")
            if ml_dtypes is not None:
                row("ml_dtypes", "cpu", fmt, source, plan_all16(), mldtypes_cast(ml_dtypes, fmt, source), "mldtypes")

    # 2. f32 samples on the CPU casts
    for fmt in FORMATS:
        if torch is not None:
            row("torch", "cpu", fmt, "f32",
                combine(plan_random32(args.random), plan_edges32(), plan_band32(args.torch_cpu_band_stride)),
                torch_cast(torch, "cpu", fmt, "f32"), "torch")
        if ml_dtypes is not None:
            row("ml_dtypes", "cpu", fmt, "f32",
                combine(plan_random32(args.random), plan_edges32(), plan_band32(args.band_stride)),
                mldtypes_cast(ml_dtypes, fmt, "f32"), "mldtypes")

    # 3. torch CUDA f32: exhaustive per format while the budget allows.  Each pass
    # measures the rate (values per second, tool calls included) that decides the
    # next format: all 2^32 if that many values, with a 20% margin, still fit in
    # the budget, else the smallest odd stride that does (odd, so that mantissa
    # LSBs of both parities are sampled).  The first format is always exhaustive.
    if cuda:
        rate = None
        for fmt in FORMATS:
            left = args.budget - (time.monotonic() - t_start)
            need = ALL32 / rate * 1.2 if rate else 0.0
            if args.quick:
                stride = 65537
            elif need <= left:
                stride = 1
            elif left > 10:
                stride = int(np.ceil(need / (left - 5))) | 1
            else:
                stride = None
            if stride is None:
                log("torch cuda %s f32: budget spent; edge patterns only" % fmt)
                plan = plan_edges32()
            else:
                log("torch cuda %s f32: %s" % (fmt, "all 2^32 (exhaustive)" if stride == 1 else
                                               "stride %d (sample; %.0f s of budget left, all 2^32 would "
                                               "need about %.0f s)" % (stride, left, need)))
                plan = combine(plan_range32(stride), plan_edges32())
            r = row("torch", "cuda", fmt, "f32", plan, torch_cast(torch, "cuda", fmt, "f32"), "torch-cuda")
            if stride is not None and not r.error and r.seconds > 0:
                rate = r.checked / r.seconds
    pool.shutdown()

    # ---- summary -----------------------------------------------------------------------
    mismatches = sum(r.mismatches for r in rows)
    errors = [r for r in rows if r.error]
    log()
    log("## fp8_torch_check summary")
    log()
    log("| | |")
    log("|---|---|")
    for k, v in info + [("wall time", "%.1f s" % (time.monotonic() - t_start))]:
        log("| %s | %s |" % (k, v))
    log()
    log("| library | device | format | source | coverage | checked | mismatches |")
    log("|---|---|---|---|---|---:|---:|")
    for r in rows:
        log("| %s | %s | %s | %s | %s | %d | %s |" % (r.library, r.device, r.fmt, r.source, r.coverage, r.checked,
                                                    "ERROR: " + r.error if r.error else r.mismatches))
    for m in missing:
        log("| %s | | | | NOT CHECKED (not available) | 0 | - |" % m)
    log()
    verdict = "FAIL" if mismatches else ("INCOMPLETE" if errors or missing else "PASS")
    log("result: %s (%d mismatches, %d rows with errors%s)" % (
        verdict, mismatches, len(errors), ", missing: " + ", ".join(missing) if missing else ""))
    return 1 if mismatches else (2 if errors or missing else 0)


if __name__ == "__main__":
    sys.exit(main())
