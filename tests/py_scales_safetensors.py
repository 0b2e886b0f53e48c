"""KV-scale artifacts written independently of kvfp8, read back through `kvfp8 scales`.

Only the standard library (struct, json, hashlib): a safetensors writer built from
the format's description (8-byte little-endian header length, compact JSON header
padded with spaces to a multiple of 8, little-endian data, tensors ordered by dtype
then name as the reference implementation lays them out), BF16 as the top 16 bits
of the float32 rounded to nearest even with integer arithmetic, F16 through
struct's 'e' format.  Checks the values kvfp8 loads, the vLLM rules, the
fingerprint's documented bytes, that kvfp8's writer produces the same bytes as this
one, the calibration rounding, and that malformed artifacts exit 2 with nothing on
stdout and the file and field named on stderr.

Prints cmocka-style lines that scripts/run-tests.sh counts.
"""
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

from pytally import check, finish  # tests/ is sys.path[0]

BIN = os.environ.get("KVFP8_BIN", "build/bin/kvfp8")




def run(args):
    p = subprocess.run([BIN] + args, capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# ---- numbers -----------------------------------------------------------------------

def f32(x):
    """x rounded to float32 (nearest even), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_bits(x):
    """BF16 of a float32 value: the top half of its bits, rounded to nearest even."""
    b = f32_bits(x)
    assert (b >> 23) & 0xFF != 0xFF, "finite values only"
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF


def bf16_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def f16_value(bits):
    return struct.unpack("<e", struct.pack("<H", bits))[0]


# ---- the format -----------------------------------------------------------------------

# The reference implementation's Dtype enum, in increasing alignment order; tensors
# are laid out widest first, then by name.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
               "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
               "F64", "I64", "U64"]


def encode(dtype, values):
    if dtype == "F32":
        return b"".join(struct.pack("<f", v) for v in values)
    if dtype == "F16":
        return b"".join(struct.pack("<H", f16_bits(v)) for v in values)
    if dtype == "BF16":
        return b"".join(struct.pack("<H", bf16_bits(v)) for v in values)
    raise ValueError(dtype)


def safetensors_bytes(tensors, metadata=None):
    """tensors: {name: (dtype, shape, raw bytes)}."""
    order = sorted(tensors, key=lambda n: (-DTYPE_ORDER.index(tensors[n][0]), n.encode()))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write_checkpoint(folder, config, tensors, metadata=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes(tensors, metadata))


def config(layers, heads, kv_heads, strategy="tensor", quant_method="compressed-tensors", scheme=True):
    c = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": layers, "num_attention_heads": heads,
         "num_key_value_heads": kv_heads, "hidden_size": heads * 64, "torch_dtype": "bfloat16"}
    q = {"quant_method": quant_method}
    if scheme:
        q.update({"format": "float-quantized", "quantization_status": "compressed", "config_groups": {},
                  "ignore": ["lm_head"], "version": "0.10.2",
                  "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": strategy, "dynamic": False,
                                      "symmetric": True, "group_size": None, "observer": "minmax"}})
    c["quantization_config"] = q
    return c


def calibrated(amax, dtype):
    """compressed-tensors' scale: amax / 448 in float32, rounded to the dtype, 0 -> eps."""
    q = f32(amax / 448.0)
    if dtype == "BF16":
        v = bf16_value(bf16_bits(q))
        return v if v != 0 else 2.0 ** -7
    if dtype == "F16":
        v = f16_value(f16_bits(q))
        return v if v != 0 else 2.0 ** -10
    return q if q != 0 else 2.0 ** -23


def fingerprint(layers, per_layer, strategy, k, v):
    """docs/scales.md: "kvfp8-scales-v1" | u32le layers | u32le per_layer | u8 strategy |
    per layer: k float32 values then v float32 values."""
    m = hashlib.sha256()
    m.update(b"kvfp8-scales-v1" + struct.pack("<IIB", layers, per_layer, 1 if strategy == "attn_head" else 0))
    for layer in range(layers):
        for arr in (k, v):
            for x in arr[layer]:
                m.update(struct.pack("<f", x))
    return m.hexdigest()


def show(folder, *options):
    rc, out, err = run(["scales", "show", folder, "--json", *options])
    if rc != 0:
        return None, f"rc={rc} {err}"
    return json.loads(out), err


rng = random.Random(20260122)
tmp = tempfile.mkdtemp(prefix="kvfp8-py-scales-")
try:
    # ---- llm-compressor artifacts, every dtype and both strategies ------------------------
    for dtype in ("BF16", "F16", "F32"):
        for strategy in ("tensor", "attn_head"):
            layers, heads, kv = 4, 8, 2
            per = kv if strategy == "attn_head" else 1
            shape = (kv, 1, 1) if strategy == "attn_head" else (1,)
            amax_k = [[rng.uniform(0.5, 60.0) for _ in range(per)] for _ in range(layers)]
            amax_v = [[rng.uniform(0.01, 8.0) for _ in range(per)] for _ in range(layers)]
            want_k = [[calibrated(a, dtype) for a in row] for row in amax_k]
            want_v = [[calibrated(a, dtype) for a in row] for row in amax_v]
            tensors = {}
            for layer in range(layers):
                tensors[f"model.layers.{layer}.self_attn.k_scale"] = (dtype, shape, encode(dtype, want_k[layer]))
                tensors[f"model.layers.{layer}.self_attn.v_scale"] = (dtype, shape, encode(dtype, want_v[layer]))
                # The weights that sit next to the scales in a real checkpoint.
                tensors[f"model.layers.{layer}.self_attn.k_proj.weight"] = ("F8_E4M3", (2, 4), bytes(range(8)))
            tensors["model.embed_tokens.weight"] = ("BF16", (4, 4), bytes(32))
            folder = os.path.join(tmp, f"ct-{dtype}-{strategy}")
            write_checkpoint(folder, config(layers, heads, kv, strategy), tensors, {"format": "pt"})
            name = f"llm_compressor_{dtype.lower()}_{strategy}"
            got, err = show(folder)
            if got is None:
                check(name, False, err)
                continue
            same = all(got["layers"][l]["k_scale"] == want_k[l] and got["layers"][l]["v_scale"] == want_v[l]
                       for l in range(layers))
            check(name + "_values", same, f"{got['layers']} want k={want_k} v={want_v}")
            check(name + "_facts", got["rules"] == "llm-compressor" and got["kv_cache_dtype"] == "fp8"
                  and got["dtype"] == dtype and got["strategy"] == strategy and got["values_per_layer"] == per
                  and got["num_layers"] == layers and got["num_kv_heads"] == kv and got["warnings"] == []
                  and all(x["k_source"] == "loaded" and x["v_source"] == "loaded" for x in got["layers"]),
                  json.dumps(got)[:400])
            check(name + "_layer_float_is_max", all(got["layers"][l]["k_float"] == max(want_k[l])
                                                    and got["layers"][l]["v_float"] == max(want_v[l])
                                                    for l in range(layers)), json.dumps(got["layers"])[:300])
            fp = fingerprint(layers, per, strategy, want_k, want_v)
            check(name + "_fingerprint", got["fingerprint"] == fp, f"{got['fingerprint']} != {fp}")
            if dtype == "BF16":
                # FNUZ hardware changes nothing under these rules.
                got2, err = show(folder, "--fnuz")
                check(name + "_fnuz_not_doubled",
                      got2 is not None and got2["fingerprint"] == fp and not got2["fnuz_doubled"], err)

    # ---- kvfp8's writer against this one ----------------------------------------------------
    for dtype, flag in (("BF16", "bf16"), ("F16", "f16"), ("F32", "f32")):
        for strategy in ("tensor", "attn_head"):
            layers, kv = 3, 4
            per = kv if strategy == "attn_head" else 1
            k = [[f32(rng.uniform(0.001, 0.5)) for _ in range(per)] for _ in range(layers)]
            v = [[f32(rng.uniform(0.001, 0.5)) for _ in range(per)] for _ in range(layers)]
            folder = os.path.join(tmp, f"written-{flag}-{strategy}")
            rc, out, err = run(["scales", "write", folder, "--layers", str(layers), "--heads", "8", "--kv-heads",
                                str(kv), "--head-dim", "64", "--dtype", flag, "--strategy", strategy,
                                "--k", ",".join(repr(x) for row in k for x in row),
                                "--v", ",".join(repr(x) for row in v for x in row)])
            name = f"writer_{flag}_{strategy}"
            if rc != 0:
                check(name, False, f"rc={rc} {err}")
                continue
            shape = (kv, 1, 1) if strategy == "attn_head" else (1,)
            tensors = {}
            for layer in range(layers):
                tensors[f"model.layers.{layer}.self_attn.k_scale"] = (dtype, shape, encode(dtype, k[layer]))
                tensors[f"model.layers.{layer}.self_attn.v_scale"] = (dtype, shape, encode(dtype, v[layer]))
            want = safetensors_bytes(tensors, {"format": "pt"})
            with open(os.path.join(folder, "model.safetensors"), "rb") as f:
                have = f.read()
            check(name + "_same_bytes", have == want, f"{have[:160]!r} vs {want[:160]!r}")
            with open(os.path.join(folder, "config.json")) as f:
                cfg = json.load(f)
            scheme = cfg["quantization_config"]["kv_cache_scheme"]
            check(name + "_config", cfg["num_hidden_layers"] == layers and cfg["num_key_value_heads"] == kv
                  and cfg["quantization_config"]["quant_method"] == "compressed-tensors"
                  and scheme["strategy"] == strategy and scheme["num_bits"] == 8 and scheme["type"] == "float"
                  and scheme["symmetric"] is True and cfg["head_dim"] == 64, json.dumps(cfg)[:300])
            rounded = {"BF16": lambda x: bf16_value(bf16_bits(x)), "F16": lambda x: f16_value(f16_bits(x)),
                       "F32": lambda x: x}[dtype]
            fp = fingerprint(layers, per, strategy, [[rounded(x) for x in r] for r in k],
                             [[rounded(x) for x in r] for r in v])
            check(name + "_prints_fingerprint", out.strip() == fp, f"{out.strip()} != {fp}")

    # ---- the fp8-checkpoint rules --------------------------------------------------------------
    folder = os.path.join(tmp, "fp8-rules")
    t = {
        "model.layers.0.self_attn.k_scale": ("BF16", (), encode("BF16", [0.0234375])),
        "model.layers.0.self_attn.v_scale": ("BF16", (), encode("BF16", [0.01171875])),
        "model.layers.2.self_attn.k_proj.output_scale": ("F32", (1,), encode("F32", [0.5])),
        "model.layers.3.self_attn.kv_scale": ("F16", (), encode("F16", [0.375])),
    }
    write_checkpoint(folder, config(4, 8, 8, quant_method="fp8", scheme=False), t)
    got, err = show(folder, "--kv-cache-dtype", "fp8")
    if got is None:
        check("fp8_checkpoint_rules", False, err)
    else:
        L = got["layers"]
        check("fp8_checkpoint_both_loaded", L[0]["k_scale"] == [0.0234375] and L[0]["v_scale"] == [0.01171875]
              and L[0]["k_source"] == "loaded", json.dumps(L[0]))
        check("fp8_checkpoint_both_missing_is_one", L[1]["k_scale"] == [1.0] and L[1]["v_scale"] == [1.0]
              and L[1]["k_source"] == "default-1.0", json.dumps(L[1]))
        check("fp8_checkpoint_one_missing_is_max", L[2]["k_scale"] == [0.5] and L[2]["v_scale"] == [0.5]
              and L[2]["v_source"] == "max-of-one", json.dumps(L[2]))
        check("fp8_checkpoint_kv_scale_duplicated", L[3]["k_scale"] == [0.375] and L[3]["v_scale"] == [0.375],
              json.dumps(L[3]))
        check("fp8_checkpoint_vllm_warnings",
              any(w.startswith("Using KV cache scaling factor 1.0 for fp8_e4m3.") for w in got["warnings"])
              and any(w.startswith("DEPRECATED. Found kv_scale in the checkpoint.") for w in got["warnings"])
              and "Using KV cache scaling factor 1.0" in err, json.dumps(got["warnings"]))
    got, err = show(folder, "--kv-cache-dtype", "fp8", "--fnuz")
    check("fp8_checkpoint_fnuz_doubles", got is not None and got["layers"][0]["k_scale"] == [0.046875]
          and got["layers"][1]["k_scale"] == [1.0] and got["layers"][2]["v_scale"] == [1.0] and got["fnuz_doubled"],
          err if got is None else json.dumps(got["layers"]))
    rc, out, err = run(["scales", "show", folder, "--kv-cache-dtype", "fp8_e5m2"])
    check("fp8_checkpoint_e5m2_refused", rc == 2 and out == ""
          and "fp8_e5m2 kv-cache is not supported with fp8 checkpoints." in err, f"rc={rc} {err}")

    # ---- calibration rounding ---------------------------------------------------------------------
    for dtype, flag, width in (("BF16", "bf16", 4), ("F16", "f16", 4), ("F32", "f32", 8)):
        amaxes = [0.0, 448.0, 1.0, 2.0 ** -24, 2.0 ** -133 if dtype != "F16" else 2.0 ** -20]
        amaxes += [bf16_value(rng.randrange(0x0001, 0x477F)) for _ in range(300)]  # positive BF16 values up to 65280
        rc, out, err = run(["scales", "round", "--dtype", flag] + [repr(a) for a in amaxes])
        lines = out.split("\n")[:-1]
        bad = []
        for a, line in zip(amaxes, lines):
            want = calibrated(a, dtype)
            wbits = {"BF16": bf16_bits, "F16": f16_bits, "F32": f32_bits}[dtype](want)
            bits, value = line.split()
            if int(bits, 16) != wbits or f32(float(value)) != want:
                bad.append((a, line, f"{wbits:0{width}x}", want))
        check(f"round_amax_{flag}", rc == 0 and len(lines) == len(amaxes) and not bad, f"rc={rc} {err} {bad[:5]}")

    # ---- malformed artifacts: exit 2, nothing on stdout, file and field named -----------------
    def bad_case(name, tensors=None, raw=None, cfg=None, needles=()):
        folder = os.path.join(tmp, "bad-" + name)
        write_checkpoint(folder, cfg or config(1, 8, 2), tensors or {})
        path = os.path.join(folder, "model.safetensors")
        if raw is not None:
            with open(path, "wb") as f:
                f.write(raw)
        rc, out, err = run(["scales", "show", folder])
        check("malformed_" + name, rc == 2 and out == "" and all(n.replace("@", folder) in err for n in needles),
              f"rc={rc} out={out!r} err={err!r}")

    good = {"model.layers.0.self_attn.k_scale": ("BF16", (1,), encode("BF16", [0.5])),
            "model.layers.0.self_attn.v_scale": ("BF16", (1,), encode("BF16", [0.5]))}
    whole = safetensors_bytes(good)
    bad_case("header_length_beyond_file", raw=whole[:20],
             needles=("@/model.safetensors", "header length"))
    bad_case("data_not_covered", raw=whole + b"\0\0",
             needles=("@/model.safetensors", "data_offsets", "belong to no tensor"))
    nan = dict(good)
    nan["model.layers.0.self_attn.v_scale"] = ("BF16", (1,), struct.pack("<H", 0x7FC0))
    bad_case("nan_scale", tensors=nan,
             needles=("@/model.safetensors", "tensor 'model.layers.0.self_attn.v_scale': value", "NaN"))
    zero = dict(good)
    zero["model.layers.0.self_attn.k_scale"] = ("F32", (1,), struct.pack("<f", 0.0))
    bad_case("zero_scale", tensors=zero, needles=("@/model.safetensors", "k_scale': value", "is zero"))
    heads = dict(good)
    heads["model.layers.0.self_attn.k_scale"] = ("BF16", (2, 1, 1), encode("BF16", [0.5, 0.5]))
    bad_case("shape_vs_strategy", tensors=heads, needles=("@/model.safetensors", "k_scale': shape", "strategy 'tensor'"))
    past = dict(good)
    past["model.layers.1.self_attn.k_scale"] = ("BF16", (1,), encode("BF16", [0.5]))
    bad_case("layer_past_model", tensors=past,
             needles=("@/model.safetensors", "model.layers.1.self_attn.k_scale': layer", "num_hidden_layers 1"))
    c = config(1, 8, 2)
    c["quantization_config"]["kv_cache_scheme"]["symmetric"] = False
    bad_case("asymmetric_scheme", tensors=good, cfg=c,
             needles=("@/config.json", "quantization_config.kv_cache_scheme.symmetric"))
    c = config(1, 8, 2)
    c["quantization_config"]["kv_cache_scheme"]["num_bits"] = 4
    bad_case("four_bit_scheme", tensors=good, cfg=c, needles=("@/config.json", "kv_cache_scheme.num_bits"))
    c = config(1, 8, 2)
    del c["num_hidden_layers"]
    bad_case("config_without_layers", tensors=good, cfg=c, needles=("@/config.json", "num_hidden_layers", "missing"))
    rc, out, err = run(["scales", "show", os.path.join(tmp, "no-such-folder")])
    check("missing_folder", rc == 2 and out == "" and "config.json" in err, f"rc={rc} {err}")
    rc, out, err = run(["scales", "show", tmp, "--rules", "vllm"])
    check("bad_option", rc == 2 and out == "" and "--rules" in err, f"rc={rc} {err}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

finish("py_scales_safetensors")
