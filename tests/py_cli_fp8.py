"""The `kvfp8 fp8` command line, exactly as outside checks use it.

Expected codes are the published facts of docs/fp8.md (OFP8 spec, NVIDIA's
documented behaviour), written here by hand, not read back from the tool.
Prints cmocka-style lines that scripts/run-tests.sh counts.
"""
import os
import struct
import subprocess
import sys

from pytally import check, finish  # tests/ is sys.path[0]

BIN = os.environ.get("KVFP8_BIN", "build/bin/kvfp8")


def run(args, stdin=b""):
    p = subprocess.run([BIN] + args, input=stdin, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")




def encode_text(args, values):
    rc, out, err = run(["fp8", "encode"] + args + values)
    return rc, out.decode().split(), err


# --- encode, text ------------------------------------------------------------------
rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia"],
                             ["448", "464", "465", "-1e30", "inf", "nan", "-nan", "0x1p-9", "0x1p-10",
                              "0x1.8p-10", "1.0", "-0.0"])
want = "7e 7e 7e fe 7e 7f 7f 01 00 01 38 80".split()
check("encode_published_sanity_values", rc == 0 and codes == want, f"rc={rc} got {codes} want {want} {err}")

rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "nonsat", "--profile", "hip"], ["450", "464", "447"])
check("encode_hip_overflow_before_rounding", codes == ["7f", "7f", "7e"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "nonsat", "--profile", "torch"], ["450", "464", "-465"])
check("encode_torch_rounds_then_overflows", codes == ["7e", "7e", "ff"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e5m2", "--mode", "nonsat", "--profile", "mldtypes"], ["nan", "-nan", "61440"])
check("encode_mldtypes_e5m2_nan_and_inf", codes == ["7e", "fe", "7c"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e4m3fnuz", "--mode", "nonsat", "--profile", "torch"], ["-0.0", "248", "1"])
check("encode_fnuz_no_negative_zero", codes == ["00", "80", "40"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--scale", "0.5"], ["100", "300"])
# 100 / 0.5 = 200 -> 0x74 (200 = 1.5625 * 2^7: exponent 14, mantissa 100); 600 saturates
check("encode_scaled", codes == ["74", "7e"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--from", "f16", "--bits"],
                             ["3c00", "7c00", "fe00", "0001"])
check("encode_f16_bits", codes == ["38", "7e", "7f", "00"], f"{codes} {err}")
rc, codes, err = encode_text(["--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--from", "bf16"],
                             ["1", "448", "-3"])
check("encode_from_bf16", codes == ["38", "7e", "c4"], f"{codes} {err}")
rc, out, err = run(["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--", "-2"])
check("encode_negative_value_after_double_dash", rc == 0 and out == b"c0\n", f"{rc} {out} {err}")

# --- encode, raw --------------------------------------------------------------------
vals = [448.0, 465.0, -1e30, float("inf"), 1.0, -0.0, 2 ** -9, 2 ** -10]
raw = b"".join(struct.pack("<f", v) for v in vals)
rc, out, err = run(["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--raw"], raw)
check("encode_raw_f32", rc == 0 and out == bytes([0x7E, 0x7E, 0xFE, 0x7E, 0x38, 0x80, 0x01, 0x00]), f"{rc} {out.hex()} {err}")
for impl in ["ref", "portable", "avx2", "avx512", "auto"]:
    rc, out2, err = run(["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--raw",
                         "--impl", impl], raw)
    if rc == 2 and "unsupported" in err.lower() or "lacks" in err:
        print(f"[  SKIPPED ] encode_raw_impl_{impl}: {err.strip()}")
        continue
    check(f"encode_raw_impl_{impl}", rc == 0 and out2 == out, f"{rc} {out2.hex()} {err}")
raw16 = struct.pack("<4H", 0x3C00, 0x7C00, 0xBC00, 0x0400)
rc, out, err = run(["fp8", "encode", "--format", "e5m2", "--mode", "sat", "--profile", "nvidia", "--from", "f16", "--raw"], raw16)
check("encode_raw_f16", rc == 0 and out == bytes([0x3C, 0x7B, 0xBC, 0x04]), f"{rc} {out.hex()} {err}")
rc, out, err = run(["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia", "--raw"], b"")
check("encode_raw_empty_input", rc == 0 and out == b"", f"{rc} {out} {err}")

# --- decode ------------------------------------------------------------------------
rc, out, err = run(["fp8", "decode", "--format", "e4m3fn", "7e", "80", "01", "38", "08"])
check("decode_text", rc == 0 and out.decode().split() == ["448", "-0", "0.001953125", "1", "0.015625"], f"{out} {err}")
rc, out, err = run(["fp8", "decode", "--format", "e4m3fnuz", "7f", "80", "ff"])
toks = out.decode().split()
check("decode_fnuz", rc == 0 and toks[0] == "240" and "nan" in toks[1] and toks[2] == "-240", f"{toks} {err}")
rc, out, err = run(["fp8", "decode", "--format", "e5m2", "--raw"], bytes([0x3C, 0x7C, 0xFC, 0x01]))
got = struct.unpack("<4f", out) if len(out) == 16 else None
check("decode_raw", rc == 0 and got == (1.0, float("inf"), float("-inf"), 2 ** -16), f"{got} {err}")
rc, out, err = run(["fp8", "decode", "--format", "e4m3fn", "--scale", "2", "38"])
check("decode_scaled", rc == 0 and out == b"2\n", f"{out} {err}")

# --- table -------------------------------------------------------------------------
rc, out, err = run(["fp8", "table", "--format", "e4m3fn"])
rows = [l for l in out.decode().splitlines() if not l.startswith("#")]
check("table_has_256_rows", rc == 0 and len(rows) == 256 and rows[0x38].split("\t")[:2] == ["38", "1"]
      and rows[0x7e].split("\t")[:2] == ["7e", "448"], f"{len(rows)} {rows[:2]} {err}")
rc, out, err = run(["fp8", "table", "--format", "e4m3fnuz", "--profile", "nvidia"])
check("table_profile_without_format_is_error", rc == 2 and out == b"" and "nvidia" in err, f"{rc} {err}")

# --- bad input: message names the argument, exit 2, nothing on stdout ---------------
E = ["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "nvidia"]
bad = [
    ("unknown_format", ["fp8", "encode", "--format", "e4m3", "--mode", "sat", "--profile", "nvidia", "1"], b"", "--format"),
    ("unknown_profile", ["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "amd", "1"], b"", "--profile"),
    ("unknown_mode", ["fp8", "encode", "--format", "e4m3fn", "--mode", "satfinite", "--profile", "nvidia", "1"], b"", "--mode"),
    ("missing_mode", ["fp8", "encode", "--format", "e4m3fn", "--profile", "nvidia", "1"], b"", "--mode"),
    ("unparsable_value", E + ["1", "abc"], b"", "abc"),
    ("zero_scale", E + ["--scale", "0", "1"], b"", "--scale"),
    ("negative_scale", E + ["--scale", "-1", "1"], b"", "--scale"),
    ("nan_scale", E + ["--scale", "nan", "1"], b"", "--scale"),
    ("raw_length_not_multiple", E + ["--raw"], b"\x00\x00\x80", "multiple"),
    ("raw_f16_odd_length", E + ["--from", "f16", "--raw"], b"\x00", "multiple"),
    ("profile_lacks_mode", ["fp8", "encode", "--format", "e4m3fn", "--mode", "sat", "--profile", "torch", "1"], b"", "sat"),
    ("profile_lacks_format", ["fp8", "encode", "--format", "e5m2fnuz", "--mode", "sat", "--profile", "ocp", "1"], b"", "e5m2fnuz"),
    ("bad_hex_decode", ["fp8", "decode", "--format", "e4m3fn", "7e", "100"], b"", "100"),
    ("decode_unknown_format", ["fp8", "decode", "--format", "fp8", "7e"], b"", "--format"),
    ("bad_bits", E + ["--bits", "0x1ffffffff"], b"", "0x1ffffffff"),
    ("unknown_option", E + ["--frobnicate", "1"], b"", "--frobnicate"),
    ("unknown_subcommand", ["fp8", "convert"], b"", "convert"),
    ("unknown_command", ["fp9"], b"", "fp9"),
]
for name, args, stdin, must_name in bad:
    rc, out, err = run(args, stdin)
    check(f"bad_input_{name}", rc == 2 and out == b"" and must_name in err,
          f"rc={rc} stdout={out!r} stderr={err!r}")

# a bad value after good ones must not leave the good ones on stdout
rc, out, err = run(E + ["1", "2", "x"])
check("bad_input_no_partial_output", rc == 2 and out == b"", f"{rc} {out!r}")

# --- help --------------------------------------------------------------------------
for args in (["--help"], ["fp8", "--help"], ["fp8", "encode", "--help"]):
    rc, out, err = run(args)
    check("help_" + "_".join(a.strip("-") for a in args), rc == 0 and b"usage" in out and len(out) > 400, f"{rc} {err}")

# --- the generated difference table in docs/ is current ------------------------------
rc, out, err = run(["fp8", "differences"])
try:
    with open("docs/fp8-differences.md", "rb") as f:
        doc = f.read()
except OSError as e:
    doc = str(e).encode()
check("docs_fp8_differences_is_current", rc == 0 and out == doc,
      "docs/fp8-differences.md differs from `kvfp8 fp8 differences`; run `make docs`")

finish("cli_fp8")
