#!/usr/bin/python3
"""kvfp8 hash against Python's own pickle, cbor2, hashlib and xxhash.

vLLM's block hash is a few lines of Python (vllm/utils/hashing.py and
vllm/v1/core/kv_cache_utils.py); they are restated below from the facts in
docs/hashing.md, and every case is computed both ways and compared byte for byte:
thousands of random requests (tokens over the whole 0..2^63-1 range with a bias to
the encoding boundaries, block sizes 1..64, chains of many blocks, LoRA names and
cache salts that are long, non-ASCII, single characters or equal to each other,
multimodal items in both key modes, prompt embeds, the layout key, every
algorithm, seeds), pickles long enough to need several frames, and the exact
command-line forms and error behaviour that outside checks rely on.

Run by scripts/run-tests.sh as /usr/bin/python3 with KVFP8_BIN set.  One line per
check: "[       OK ] name" or "[  FAILED  ] name: details"; exit 1 on any failure.
"""
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import time

import cbor2
import xxhash

BIN = os.environ.get("KVFP8_BIN", "build/bin/kvfp8")
ALGOS = ("sha256", "sha256_cbor", "xxhash", "xxhash_cbor")
failures = 0


def report(name, ok, details=""):
    global failures
    if ok:
        print(f"[       OK ] {name}")
    else:
        failures += 1
        print(f"[  FAILED  ] {name}: {details}")
    sys.stdout.flush()


def run(args, stdin=b"", env=None):
    e = dict(os.environ)
    e.pop("PYTHONHASHSEED", None)
    if env:
        e.update(env)
    p = subprocess.run([BIN, "hash"] + args, input=stdin, capture_output=True, env=e)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---- vLLM's hashing, restated ----------------------------------------------------

def serialize(algo, obj):
    if algo in ("sha256", "xxhash"):
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # 5 on 3.8+
    return cbor2.dumps(obj, canonical=True)


def H(algo, obj):
    data = serialize(algo, obj)
    if algo.startswith("sha256"):
        return hashlib.sha256(data).digest()
    return xxhash.xxh3_128_digest(data)


def fresh(s):
    """A new str object equal to s, as a request field decoded from the wire is
    (CPython still hands out its cached singletons for "" and one Latin-1 char)."""
    return None if s is None else s.encode("utf-8").decode("utf-8")


def vllm_block_hashes(c):
    """request_block_hasher over all tokens, from block 0."""
    algo, bs, toks = c["algo"], c["block_size"], c["tokens"]
    if "none_hash" in c:
        none = bytes.fromhex(c["none_hash"])
    else:
        none = H(algo, fresh(c["seed"]))
    lora = fresh(c.get("lora"))
    salt = fresh(c.get("cache_salt"))
    mm = [(fresh(i), o, n) for i, o, n in c.get("mm", [])]
    mode = c.get("mm_keys", "id-offset")
    embeds = bytes.fromhex(c["prompt_embeds"]) if c.get("prompt_embeds") is not None else None
    rb = c.get("embeds_row_bytes", 0)
    layout = [fresh(x) for x in c["layout_key"]] if c.get("layout_key") else None
    out, parent, cur = [], none, 0
    start = 0
    while start + bs <= len(toks):
        end = start + bs
        keys = []
        if c.get("lora") is not None:
            keys.append(lora)
        if mm and not (mm[-1][1] + mm[-1][2] <= start):
            while cur < len(mm):
                ident, off, ln = mm[cur]
                if end > off:
                    if start >= off + ln:
                        cur += 1
                        continue
                    keys.append((ident, off - start) if mode == "id-offset" else ident)
                    if end >= off + ln:
                        cur += 1
                    else:
                        break
                else:
                    break
        if start == 0 and salt:
            keys.append(salt)
        if embeds is not None:
            rows = len(embeds) // rb
            a, b = min(start, rows), min(end, rows)
            keys.append(hashlib.sha256(embeds[a * rb:b * rb]).digest())
        if layout:
            keys.extend(layout)
        h = H(algo, (parent, tuple(toks[start:end]), tuple(keys) if keys else None))
        out.append(h)
        parent = h
        start = end
    return none, out


def expected_json(c):
    none, hs = vllm_block_hashes(c)
    e = {"none_hash": none.hex(), "hashes": [h.hex() for h in hs],
         "kv_events": [int.from_bytes(h, "big") & ((1 << 64) - 1) for h in hs]}
    if "group_id" in c:
        e["pool_keys"] = [(h + c["group_id"].to_bytes(4, "big")).hex() for h in hs]
    return e


def run_batch(cases):
    data = "".join(json.dumps(c) + "\n" for c in cases).encode()
    rc, out, err = run(["--batch"], stdin=data)
    if rc != 0:
        return None, f"exit {rc}: {err.strip()[:300]}"
    lines = out.splitlines()
    if len(lines) != len(cases):
        return None, f"{len(lines)} output lines for {len(cases)} cases"
    return [json.loads(l) for l in lines], ""


def compare_batch(name, cases):
    got, why = run_batch(cases)
    if got is None:
        report(name, False, why)
        return None
    bad = []
    for i, (c, g) in enumerate(zip(cases, got)):
        e = expected_json(c)
        if g != e:
            bad.append(i)
    if bad:
        i = bad[0]
        c = dict(cases[i])
        c["tokens"] = c["tokens"][:40]
        report(name, False, f"{len(bad)}/{len(cases)} cases differ; first: case {i} "
               f"{json.dumps(c)[:600]} expected {json.dumps(expected_json(cases[i]))[:300]} "
               f"got {json.dumps(got[i])[:300]}")
    else:
        report(name, True)
    return got


# ---- random cases ------------------------------------------------------------------

BOUNDS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
          2**39 - 1, 2**39, 2**40 - 1, 2**40, 2**47 - 1, 2**47, 2**48, 2**55 - 1, 2**55,
          2**56 - 1, 2**56, 2**62, 2**63 - 1]


def rand_token(r):
    k = r.random()
    if k < 0.35:
        b = r.choice(BOUNDS)
        return min(max(b + r.randint(-2, 2), 0), 2**63 - 1)
    if k < 0.65:
        return r.randrange(0, 152064)  # a real vocabulary
    return r.getrandbits(r.randint(1, 63))


ALPHABETS = ["abcdefghijklmnopqrstuvwxyz-_/.0123456789", "éüßçø", "жщыλπ中文字",
             "\U0001F600\U0001F680\U00010348", "\x00\x01\x7f\x80\xff"]


def rand_str(r, allow_empty=True):
    k = r.random()
    if k < 0.15:
        return r.choice(["a", "é", "ÿ", "ж", "\x00", "\U0001F600", "\x7f", "\x80"])  # one char
    if k < 0.25 and allow_empty:
        return ""
    if k < 0.35:
        n = r.choice([84, 85, 127, 128, 255, 256, 257, 300, 1000])  # byte-length edges
        return "".join(r.choice("abcé") for _ in range(n))[:n]
    alpha = "".join(r.sample(ALPHABETS, r.randint(1, 3)))
    return "".join(r.choice(alpha) for _ in range(r.randint(1, 40)))


def rand_case(r, algo=None):
    c = {"algo": algo or r.choice(ALGOS)}
    bs = r.randint(1, 64) if r.random() < 0.9 else r.choice([1, 2, 3, 4, 16, 32, 64, 100, 255, 256, 300])
    c["block_size"] = bs
    nblocks = r.choice([0, 1, 1, 2, 3, 5, 8, 20, 60]) if bs < 100 else r.randint(0, 3)
    ntok = nblocks * bs + (r.randint(0, bs - 1) if r.random() < 0.5 else 0)
    c["tokens"] = [rand_token(r) for _ in range(ntok)]
    k = r.random()
    if k < 0.5:
        c["seed"] = str(r.randint(0, 2**32 - 1))
    elif k < 0.7:
        c["seed"] = rand_str(r)
    else:
        c["none_hash"] = r.randbytes(r.choice([16, 32])).hex()
    if r.random() < 0.4:
        c["lora"] = rand_str(r)
    if r.random() < 0.4:
        c["cache_salt"] = c["lora"] if ("lora" in c and r.random() < 0.3) else rand_str(r)
    if r.random() < 0.3 and ntok:
        items, off = [], r.randint(0, 3 * bs)
        for _ in range(r.randint(1, 4)):
            ln = r.randint(0, 3 * bs)
            ident = r.choice([rand_str(r, False), r.randbytes(16).hex()])
            if items and r.random() < 0.2:
                ident = items[-1][0]  # the same image twice
            items.append([ident, off, ln])
            off += ln + r.randint(0, 2 * bs)
        c["mm"] = items
        c["mm_keys"] = r.choice(["id-offset", "id"])
    if r.random() < 0.15:
        rb = r.randint(1, 8)
        rows = r.randint(0, min(ntok + 3, 400))  # fewer rows than tokens: empty slices
        c["prompt_embeds"] = r.randbytes(rb * rows).hex()
        c["embeds_row_bytes"] = rb
    if r.random() < 0.15:
        c["layout_key"] = [r.choice(["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]),
                           r.choice(["e4m3fn", "e5m2", "e4m3fnuz"]),
                           "sha256:" + r.randbytes(32).hex()]
    if r.random() < 0.2:
        c["group_id"] = r.choice([0, 1, 255, 256, 2**32 - 1, r.randrange(2**32)])
    return c


# ---- checks ----------------------------------------------------------------------------

def check_vectors():
    """The public vectors (PYTHONHASHSEED=0, block size 16), through argv."""
    vec = {
        "sha256": ("1973e23848344dc43a988a9b478663803cfffe1243480253f9a3cf004b14aa7c",
                   "bea72b7d33de03c1aa715efbb492d0e0d3801f00c1f985756896072ae8b31325",
                   "2744667f6645310ff670b0c5d7c64987ffa5940de5a549f17d92dcbb5b559e31",
                   "6ef474c974f93085d9c279451c91bcc7bfb2bd6d95f1c1af71f6d667800c9f6b"),
        "sha256_cbor": ("4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e",
                        "202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332ea",
                        "4a0a393805c6d2f0ed831000d41bb65980336c4c04895d5e26470bbec927f5bf",
                        "fa8e3c82edaa7a102d2f28953ac99ee07991bc597f8239e826f909613a7a9518"),
        "xxhash": ("6fb31cc38bba6066183f7f2104b9c051", "6ba7d7fc1608e5f0a4612b1b0c87458f",
                   "dbd92304eaa08219c5cf8f4ce18166b6", "bd3c9c346ec3787f373e2c929e285156"),
        "xxhash_cbor": ("1ebe36576dcb573f26b99533a20aaeca", "c2d7a75070fc6d6b0c3fb0af456c1009",
                        "93add93233ea572fb2e2b1685bac6f8d", "a2ed26852be6601bd3c1992267d94923"),
    }
    toks = [str(i) for i in range(1, 33)]
    for algo, (none, b0, b1, b0x) in vec.items():
        got = [run(["--algo", algo, "--seed", "0", "--none-hash"]),
               run(["--algo", algo, "--block-size", "16", "--seed", "0"] + toks),
               run(["--algo", algo, "--block-size", "16", "--seed", "0", "--lora", "my-lora",
                    "--cache-salt", "salt-1"] + toks[:16])]
        want = [none + "\n", b0 + "\n" + b1 + "\n", b0x + "\n"]
        ok = all(g[0] == 0 and g[1] == w for g, w in zip(got, want))
        report(f"public vectors {algo}", ok, f"got {[g[1] for g in got]}")
        # and the same vectors from Python itself, so the restated hashing is sound
        c = {"algo": algo, "block_size": 16, "seed": "0", "tokens": list(range(1, 33))}
        n, hs = vllm_block_hashes(c)
        report(f"python restatement reproduces the vectors {algo}",
               n.hex() == none and [h.hex() for h in hs] == [b0, b1])


def check_random(r, count):
    cases = [rand_case(r) for _ in range(count)]
    nblocks = sum(len(c["tokens"]) // c["block_size"] for c in cases)
    got = compare_batch(f"{count} random requests, {nblocks} blocks, all algorithms vs Python", cases)
    per_algo = {a: [c for c in cases if c["algo"] == a] for a in ALGOS}
    return got, cases, per_algo


def check_random_per_feature(r):
    """Each feature alone, so a failure points at it."""
    feats = {
        "tokens at encoding boundaries": lambda c: c.update(tokens=[min(max(b + d, 0), 2**63 - 1) for b in BOUNDS for d in (-1, 0, 1)]),
        "LoRA name only": lambda c: c.update(lora=rand_str(r)),
        "cache salt only": lambda c: c.update(cache_salt=rand_str(r)),
        "LoRA equal to salt (singleton memo)": lambda c: c.update(lora="x", cache_salt="x"),
        "LoRA equal to salt, non-ASCII Latin-1": lambda c: c.update(lora="é", cache_salt="é"),
        "LoRA equal to salt, outside Latin-1": lambda c: c.update(lora="ж", cache_salt="ж"),
        "LoRA equal to salt, long": lambda c: c.update(lora="same-name", cache_salt="same-name"),
        "empty LoRA name": lambda c: c.update(lora=""),
        "LoRA with NUL": lambda c: c.update(lora="a\x00b"),
        "multimodal id-offset": lambda c: c.update(mm=[["img-a", 3, 20], ["img-b", 30, 5]], mm_keys="id-offset"),
        "multimodal id only": lambda c: c.update(mm=[["img-a", 3, 20], ["img-b", 30, 5]], mm_keys="id"),
        "multimodal same id twice in a block": lambda c: c.update(mm=[["i", 1, 2], ["i", 4, 1], ["", 6, 1], ["", 7, 1]]),
        "prompt embeds": lambda c: c.update(prompt_embeds=r.randbytes(8 * 50).hex(), embeds_row_bytes=8),
        "layout key": lambda c: c.update(layout_key=["fp8_e4m3", "e4m3fn", "sha256:00ff"]),
        "group id": lambda c: c.update(group_id=7),
        "empty seed": lambda c: c.update(seed=""),
        "non-ASCII seed": lambda c: c.update(seed="种子é\U0001F600"),
        "random 32-byte NONE_HASH with xxhash": lambda c: (c.pop("seed"), c.update(none_hash=r.randbytes(32).hex())),
    }
    for name, f in feats.items():
        cases = []
        for algo in ALGOS:
            for bs in (1, 3, 16):
                c = {"algo": algo, "block_size": bs, "seed": "0",
                     "tokens": [rand_token(r) for _ in range(bs * 12 + 1)]}
                f(c)
                cases.append(c)
        compare_batch(name, cases)


def check_frames(r):
    """Pickles past one 64 KiB frame: the frame boundary at every kind of position."""
    cases = []
    for algo in ("sha256", "xxhash"):
        # 3-byte tokens (BININT2): sweep the crossing over the tokens, the TUPLE and
        # MEMOIZE opcodes, None or the extra keys.
        for bs in range(21826, 21842):
            for extra in (None, "ab", "é" * 3):
                c = {"algo": algo, "block_size": bs, "seed": "0", "tokens": [300] * bs}
                if extra:
                    c["lora"] = extra
                cases.append(c)
        for bs in (20000, 21845, 30000, 50000):
            cases.append({"algo": algo, "block_size": bs, "seed": "1",
                          "tokens": [rand_token(r) for _ in range(2 * bs)]})
        # bytes / str payloads of >= 64 KiB travel outside frames
        for n in (65535, 65536, 70000):
            cases.append({"algo": algo, "block_size": 4, "seed": "0", "tokens": list(range(9)),
                          "lora": "L" * n, "cache_salt": "s" * (n - 1)})
            cases.append({"algo": algo, "block_size": 4, "seed": "0", "tokens": list(range(9)),
                          "cache_salt": "ü" * (n // 2)})
        cases.append({"algo": algo, "block_size": 2, "seed": "0", "tokens": [1, 2, 3, 4],
                      "lora": "x" * 65530, "layout_key": ["a" * 70000, "b", "c" * 66000]})
    for algo in ("sha256_cbor", "xxhash_cbor"):
        for bs in (20000, 70000):
            cases.append({"algo": algo, "block_size": bs, "seed": "0",
                          "tokens": [rand_token(r) for _ in range(bs)]})
        cases.append({"algo": algo, "block_size": 3, "seed": "0", "tokens": list(range(7)),
                      "lora": "L" * 70000, "cache_salt": "s" * 65536})
    # the sweep really crosses frames (so this check checks something)
    def frames(c):
        keys = tuple(k for k in (c.get("lora"), c.get("cache_salt")) if k) or None
        data = serialize(c["algo"], (b"\0" * 32, tuple(c["tokens"][:c["block_size"]]), keys))
        n, pos = 0, 2  # after PROTO: walk the chain of FRAME headers
        while pos < len(data) and data[pos] == 0x95:
            pos += 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
            n += 1
        return n
    multi = sum(1 for c in cases if c["algo"] in ("sha256", "xxhash") and frames(c) >= 2)
    report("frame sweep reaches multi-frame pickles", multi >= 60, f"only {multi}")
    compare_batch(f"{len(cases)} multi-frame and large-payload blocks vs Python", cases)


def check_argv_forms(r):
    """The exact command-line form, token arguments and standard input."""
    bad = []
    for i in range(48):
        algo = ALGOS[i % 4]
        bs = r.choice([1, 2, 5, 16, 33])
        toks = [rand_token(r) for _ in range(bs * r.randint(0, 4) + r.randint(0, bs - 1))]
        seed = r.choice(["0", "42", "4294967295", "7"])
        args = ["--algo", algo, "--block-size", str(bs), "--seed", seed]
        c = {"algo": algo, "block_size": bs, "seed": seed, "tokens": toks}
        if r.random() < 0.5:
            c["lora"] = rand_str(r).replace("\x00", "")
            args += ["--lora", c["lora"]]
        if r.random() < 0.5:
            c["cache_salt"] = rand_str(r).replace("\x00", "")
            args += ["--cache-salt", c["cache_salt"]]
        want = "".join(h.hex() + "\n" for h in vllm_block_hashes(c)[1])
        if i % 2:
            got = run(args + [str(t) for t in toks])
        else:
            sep = r.choice([" ", "\n", "\t", "  \n "])
            got = run(args, stdin=(sep.join(str(t) for t in toks) + "\n").encode())
        if got[0] != 0 or got[1] != want:
            bad.append(f"{args} -> rc {got[0]} {got[1][:80]!r} {got[2][:200]!r} want {want[:80]!r}")
    report("48 command-line invocations (arguments and stdin) vs Python", not bad, "; ".join(bad[:2]))

    # PYTHONHASHSEED is honoured when --seed is absent, and --seed wins over it
    toks = [str(t) for t in range(1, 17)]
    for algo in ALGOS:
        want = H(algo, (H(algo, "123"), tuple(range(1, 17)), None)).hex() + "\n"
        g1 = run(["--algo", algo, "--block-size", "16"] + toks, env={"PYTHONHASHSEED": "123"})
        g2 = run(["--algo", algo, "--block-size", "16", "--seed", "123"] + toks,
                 env={"PYTHONHASHSEED": "9"})
        g3 = run(["--algo", algo, "--none-hash"], env={"PYTHONHASHSEED": ""})
        report(f"PYTHONHASHSEED honoured, --seed preferred, empty value hashed ({algo})",
               g1[:2] == (0, want) and g2[:2] == (0, want) and g3[:2] == (0, H(algo, "").hex() + "\n"),
               f"{g1[:2]} {g2[:2]} {g3[:2]} want {want!r}")

    # --kv-events and --group-id
    toks = [rand_token(r) for _ in range(48)]
    c = {"algo": "sha256", "block_size": 16, "seed": "0", "tokens": toks}
    hs = vllm_block_hashes(c)[1]
    ev = run(["--algo", "sha256", "--block-size", "16", "--seed", "0", "--kv-events"] + [str(t) for t in toks])
    pk = run(["--algo", "sha256", "--block-size", "16", "--seed", "0", "--group-id", "258"] + [str(t) for t in toks])
    report("--kv-events prints int.from_bytes(hash,'big') & (2^64-1)",
           ev[:2] == (0, "".join(f"{int.from_bytes(h, 'big') & (2**64 - 1)}\n" for h in hs)), ev[1][:200])
    report("--group-id prints hash + 4 big-endian bytes",
           pk[:2] == (0, "".join((h + (258).to_bytes(4, "big")).hex() + "\n" for h in hs)), pk[1][:200])

    # multimodal and layout options through argv
    toks = list(range(100, 124))
    c = {"algo": "sha256_cbor", "block_size": 4, "seed": "0", "tokens": toks,
         "mm": [["a:b", 2, 5], ["img", 9, 0], ["img2", 9, 3]], "mm_keys": "id-offset",
         "layout_key": ["fp8_e4m3", "e4m3fn", "sha256:1,2"]}
    want = "".join(h.hex() + "\n" for h in vllm_block_hashes(c)[1])
    got = run(["--algo", "sha256_cbor", "--block-size", "4", "--seed", "0", "--mm", "a:b:2:5",
               "--mm", "img:9:0", "--mm", "img2:9:3", "--layout-key", "fp8_e4m3,e4m3fn,sha256:1,2"]
              + [str(t) for t in toks])
    report("--mm and --layout-key options vs Python", got[:2] == (0, want), f"{got} want {want!r}")

    # trailing partial block prints nothing
    got = run(["--algo", "sha256", "--block-size", "16", "--seed", "0"] + [str(t) for t in range(15)])
    report("a partial block prints nothing", got[:2] == (0, ""), str(got))


def check_random_none_hash():
    outs = []
    ok = True
    for algo in ALGOS:
        rc, out, err = run(["--algo", algo, "--none-hash"])
        outs.append(out)
        ok &= rc == 0 and len(out.strip()) == 64 and "warning" in err.lower() and "PYTHONHASHSEED" in err
    rc, out, err = run(["--algo", "sha256", "--block-size", "2", "1", "2"])
    ok &= rc == 0 and len(out.strip()) == 64 and "warning" in err.lower()
    report("no seed: random 32-byte NONE_HASH for every algorithm, warning on stderr",
           ok and len(set(outs)) == 4, f"{outs}")


def check_errors():
    base = ["--algo", "sha256", "--block-size", "16", "--seed", "0"]
    cases = [
        (["--algo", "md5", "--block-size", "16", "1"], "md5"),
        (["--algo", "sha256", "--block-size", "0", "1"], "block-size"),
        (["--algo", "sha256", "--block-size", "-3", "1"], "block-size"),
        (["--algo", "sha256", "--block-size", "x", "1"], "block-size"),
        (["--algo", "sha256", "--seed", "0", "1", "2"], "block-size"),
        (["--block-size", "16", "--seed", "0", "1"], "algo"),
        (["--algo"], "algo"),
        (base + ["1", "-1"], "-1"),
        (base + ["1", "2.5"], "2.5"),
        (base + ["abc"], "abc"),
        (base + ["9223372036854775808"], "9223372036854775808"),
        (base + ["99999999999999999999999999"], "99999999999999999999999999"),
        (base + ["0x10"], "0x10"),
        (base + ["+5"], "+5"),
        (base + ["--frobnicate", "1"], "--frobnicate"),
        (base + ["--group-id", "4294967296", "1"], "group-id"),
        (base + ["--mm", "nocolon", "1"], "--mm"),
        (base + ["--mm-keys", "other", "1"], "mm-keys"),
        (base + ["--layout-key", "a,b", "1"], "layout-key"),
        (base + ["--none-hash-hex", "abc", "1"], "none-hash-hex"),
        (["--algo", "sha256", "--block-size", "16", "1"] , "PYTHONHASHSEED"),
    ]
    bad = []
    for args, needle in cases:
        env = {"PYTHONHASHSEED": "banana"} if needle == "PYTHONHASHSEED" else None
        rc, out, err = run(args, env=env)
        if rc != 2 or out != "" or needle not in err:
            bad.append(f"{args}: rc {rc}, stdout {out[:60]!r}, stderr {err.strip()[:120]!r}")
    # bad token on stdin, even after many good ones
    rc, out, err = run(base, stdin=(" ".join(["7"] * 100) + " 12x\n").encode())
    if rc != 2 or out != "" or "12x" not in err:
        bad.append(f"stdin bad token: rc {rc} {out[:40]!r} {err[:100]!r}")
    rc, out, err = run(base, stdin=b"1 2 -3\n")
    if rc != 2 or out != "" or "-3" not in err:
        bad.append(f"stdin negative token: rc {rc} {err[:100]!r}")
    # a bad batch line after good ones: nothing at all on stdout
    good = json.dumps({"algo": "sha256", "block_size": 1, "seed": "0", "tokens": [1]})
    for line, needle in ((json.dumps({"algo": "sha256", "block_size": 1, "seed": "0", "tokens": [-1]}), "negative"),
                         (json.dumps({"algo": "sha256", "block_size": 1, "seed": "0", "tokens": [2**63]}), "line 2"),
                         (json.dumps({"algo": "nope", "block_size": 1, "seed": "0", "tokens": [1]}), "algo"),
                         (json.dumps({"algo": "sha256", "block_size": 0, "seed": "0", "tokens": [1]}), "block_size"),
                         (json.dumps({"algo": "sha256", "block_size": 1, "seed": "0", "tokens": [1], "x": 1}), "\"x\""),
                         ("{not json", "line 2")):
        rc, out, err = run(["--batch"], stdin=(good + "\n" + line + "\n").encode())
        if rc != 2 or out != "" or needle not in err:
            bad.append(f"batch {line[:50]}: rc {rc} {out[:40]!r} {err[:100]!r}")
    report(f"{len(cases) + 8} bad inputs: exit 2, message names the argument, nothing on stdout",
           not bad, " | ".join(bad[:3]))
    rc, out, err = run(["--help"])
    report("--help documents the options with examples",
           rc == 0 and all(k in out for k in ("--algo", "--block-size", "--seed", "--lora", "--cache-salt",
                                                "--none-hash", "PYTHONHASHSEED", "--batch", "Examples")),
           out[:100])


def check_comparison_can_fail(got, cases):
    """The comparison itself must see one corrupted byte."""
    if not got:
        report("comparison detects one corrupted byte", False, "no batch output to corrupt")
        return
    i = next(i for i, g in enumerate(got) if g["hashes"])
    g = json.loads(json.dumps(got[i]))
    h = g["hashes"][0]
    g["hashes"][0] = h[:-2] + ("%02x" % (int(h[-2:], 16) ^ 1))
    report("comparison detects one corrupted byte", g != expected_json(cases[i]) and got[i] == expected_json(cases[i]))


def main():
    t0 = time.time()
    if not os.access(BIN, os.X_OK):
        report("kvfp8 binary present", False, f"{BIN} is not executable")
        return 1
    r = random.Random(int(os.environ.get("KVFP8_HASH_SEED", "20250917")))
    check_vectors()
    got, cases, _ = check_random(r, 3000)
    check_comparison_can_fail(got, cases)
    for algo in ALGOS:
        compare_batch(f"250 random requests {algo}", [rand_case(r, algo) for _ in range(250)])
    check_random_per_feature(r)
    check_frames(r)
    check_argv_forms(r)
    check_random_none_hash()
    check_errors()
    print(f"# py_hash_vs_python: {time.time() - t0:.1f} s", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
