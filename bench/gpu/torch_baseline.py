#!/usr/bin/env python3
"""What a user writes without a kernel: gather the KV blocks with index_select, then
torch.nn.functional.scaled_dot_product_attention (decode: one query token per
sequence), for a BF16 cache and for an FP8 (float8_e4m3fn) cache dequantized in torch
(.to(bfloat16) * scale).  32 query heads, 8 KV heads, head 128, block 16; the shapes of
gpu/bench_gpu.cu.  Four disjoint block tables per shape are used in turn (no L2 reuse).

Writes one line per (shape, dtype): "BxL bf16|fp8 MILLISECONDS GB/S" (GB/s of KV bytes
read: the cache's own dtype), to stdout and to the file given as the first argument;
bench_gpu --torch FILE puts them into the table.  Median of 7 rounds of 10 steps
queued back to back between two CUDA events, after 5 warm-ups."""
import sys

import torch
import torch.nn.functional as F

HQ, HKV, D, BS, ROT = 32, 8, 128, 16, 4
SHAPES = [(1, 32768), (8, 8192), (32, 4096), (128, 1024)]


def median_ms(fn, warm=5, reps=7, batch=10):
    """Milliseconds per step: the median over `reps` rounds of `batch` steps queued
    back to back between two CUDA events (as gpu/bench_gpu.cu times its kernels)."""
    it = 0
    for _ in range(warm):
        fn(it)
        it += 1
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(batch):
            fn(it)
            it += 1
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / batch)
    times.sort()
    return times[len(times) // 2]


def main():
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else None
    dev = "cuda"
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    for b, l in SHAPES:
        bps = l // BS
        pool = ROT * b * bps
        kc = torch.randn(pool, BS, HKV, D, device=dev, dtype=torch.bfloat16)
        vc = torch.randn(pool, BS, HKV, D, device=dev, dtype=torch.bfloat16)
        k_scale, v_scale = float(kc.abs().max()) / 448.0, float(vc.abs().max()) / 448.0
        kc8 = (kc.float() / k_scale).to(torch.float8_e4m3fn)
        vc8 = (vc.float() / v_scale).to(torch.float8_e4m3fn)
        tables = torch.randperm(pool, device=dev, dtype=torch.int64).view(ROT, b, bps)
        q = torch.randn(b, HQ, 1, D, device=dev, dtype=torch.bfloat16)

        def step(i, fp8):
            t = tables[i % ROT].reshape(-1)
            if fp8:
                k = kc8.index_select(0, t).view(b, l, HKV, D).to(torch.bfloat16) * k_scale
                v = vc8.index_select(0, t).view(b, l, HKV, D).to(torch.bfloat16) * v_scale
            else:
                k = kc.index_select(0, t).view(b, l, HKV, D)
                v = vc.index_select(0, t).view(b, l, HKV, D)
            return F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), enable_gqa=True)

        for name, fp8 in (("bf16", False), ("fp8", True)):
            ms = median_ms(lambda i: step(i, fp8))
            kv_bytes = b * l * HKV * D * 2 * (1 if fp8 else 2)
            line = f"{b}x{l} {name} {ms:.4f} {kv_bytes / (ms * 1e-3) / 1e9:.0f}"
            print(line, flush=True)
            if out:
                out.write(line + "\n")
        del kc, vc, kc8, vc8
        torch.cuda.empty_cache()
    if out:
        out.close()


if __name__ == "__main__":
    main()
