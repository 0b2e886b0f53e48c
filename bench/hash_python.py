#!/usr/bin/python3
"""Python's own block hashing, timed the way bench/bench_hash.c times kvfp8's.

The same tokens (splitmix64 from the same seed, uniform over a 152064-token
vocabulary), the same 4096-block chains from NONE_HASH = H("0"), no extra keys,
and the few lines vLLM runs per block (vllm/v1/core/kv_cache_utils.py
hash_block_tokens with vllm/utils/hashing.py's functions):
    hash_fn((parent, tuple(block_tokens), None))
with hash_fn = pickle.dumps(protocol=5) or cbor2.dumps(canonical=True), then
hashlib.sha256(...).digest() or xxhash.xxh3_128_digest(...).
Fastest and median pass in thread CPU time, as bench_hash reports them.  Prints
"algo<TAB>block_size<TAB>best<TAB>median" lines (tokens per second) for
bench/run_hash.sh, after checking its first hashes against kvfp8's when KVFP8_BIN
is set.
"""
import hashlib
import os
import pickle
import statistics
import subprocess
import sys
import time

import cbor2
import xxhash

NBLOCKS = 4096
VOCAB = 152064
PASSES = 7
M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def tokens(n):
    out, s = [], 20250917
    for _ in range(n):
        s, z = splitmix64(s)
        out.append(z % VOCAB)
    return out


def sha256(obj):
    return hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def sha256_cbor(obj):
    return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()


def xxhash_pickle(obj):
    return xxhash.xxh3_128_digest(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def xxhash_cbor(obj):
    return xxhash.xxh3_128_digest(cbor2.dumps(obj, canonical=True))


FUNCS = {"sha256": sha256, "sha256_cbor": sha256_cbor, "xxhash": xxhash_pickle,
         "xxhash_cbor": xxhash_cbor}


def chain(fn, none, toks, bs):
    parent, out = none, []
    for i in range(0, NBLOCKS * bs, bs):
        parent = fn((parent, tuple(toks[i:i + bs]), None))
        out.append(parent)
    return out


def main():
    toks = tokens(NBLOCKS * 32)
    binary = os.environ.get("KVFP8_BIN")
    for name, fn in FUNCS.items():
        none = fn("0")
        for bs in (16, 32):
            hashes = chain(fn, none, toks, bs)
            if binary:  # the same blocks: kvfp8 must agree on the first ones
                r = subprocess.run([binary, "hash", "--algo", name, "--block-size", str(bs),
                                    "--seed", "0"] + [str(t) for t in toks[:4 * bs]],
                                   capture_output=True, text=True)
                if r.stdout.split() != [h.hex() for h in hashes[:4]]:
                    print(f"hash_python: {name} bs {bs}: kvfp8 disagrees", file=sys.stderr)
                    return 1
            times = []
            for _ in range(PASSES):
                t0 = time.thread_time()
                chain(fn, none, toks, bs)
                times.append(time.thread_time() - t0)
            print(f"{name}\t{bs}\t{NBLOCKS * bs / min(times):.0f}\t"
                  f"{NBLOCKS * bs / statistics.median(times):.0f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
