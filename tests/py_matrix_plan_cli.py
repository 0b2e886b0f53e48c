"""The fault layer's command line, exactly as outside checks use it: kvfp8 matrix,
kvfp8 plan, kvfp8 verify, kvfp8 faults, KVFP8_FAULTS and kvfp8 run --platform.

Exit statuses and JSON shapes are the documented ones (docs/faults.md); the W7900
text is vLLM's, quoted in vLLM #13147.  Prints cmocka-style lines that
scripts/run-tests.sh counts.  Under KVFP8_QUICK (the sanitizer and coverage builds)
the matrices run with --quick (a smaller model and prompt) except the acceptance
command itself.
"""
import json
import os
import subprocess
import sys
import tempfile

from pytally import check, finish  # tests/ is sys.path[0]

BIN = os.environ.get("KVFP8_BIN", "build/bin/kvfp8")
QUICK = bool(os.environ.get("KVFP8_QUICK"))
W7900 = "w7900-rocm6.3-vllm0.7.2"
W7900_TEXT = "type fp8e4nv not supported in this architecture. The supported fp8 dtypes are ('fp8e5',)"


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    e.pop("KVFP8_FAULTS", None)
    if env:
        e.update(env)
    p = subprocess.run([BIN] + args, capture_output=True, env=e, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")




def usage_error(name, args, needle):
    rc, out, err = run(args)
    check(name, rc == 2 and out == "" and needle in err, f"rc={rc} out={out[:200]!r} err={err[:300]!r}")


quick = ["--quick"] if QUICK else []
# the acceptance command runs as written (KVFP8_QUICK: on the small model); the other matrices on the small model

# --- the acceptance command ------------------------------------------------------------
rc, out, err = run(["matrix", "--platform", W7900] + quick)
check("matrix_w7900_reports_interaction", rc == 1 and "classification: interaction" in out, f"rc={rc} {out[-800:]} {err}")
row4 = [l for l in out.splitlines() if l.startswith("| 4 | fp8 | on |")]
check("matrix_w7900_test4_dies_on_request_2",
      len(row4) == 1 and "| crash |" in row4[0] and "DIED" in row4[0] and "on request 2 at attn/prefix_prefill" in row4[0]
      and W7900_TEXT in row4[0] and "SIGABRT" in row4[0], f"{row4}")
check("matrix_w7900_tests_1_to_3_serve",
      all(any(l.startswith(f"| {t} |") and "| ok |" in l for l in out.splitlines()) for t in (1, 2, 3)), out[:1500])
check("matrix_w7900_cites_13147", "vllm#13147" in out and "https://github.com/vllm-project/vllm/issues/13147" in out, out[-1500:])

# --- JSON shapes ------------------------------------------------------------------------------
rc, out, err = run(["matrix", "--platform", W7900, "--json", "--quick"])
try:
    m = json.loads(out)
except ValueError:
    m = {}
check("matrix_json_is_one_object", rc == 1 and isinstance(m, dict) and err == "", f"rc={rc} {out[:300]} {err}")
cells = m.get("cells", [])
shape_ok = (m.get("platform") == W7900 and m.get("classification") == "interaction" and len(cells) == 4
            and all(set(["kv_cache_dtype", "enable_prefix_caching", "outcome", "failed_request", "error"]) <= set(c)
                    for c in cells)
            and [(c["kv_cache_dtype"], c["enable_prefix_caching"]) for c in cells]
            == [("auto", False), ("fp8", False), ("auto", True), ("fp8", True)]
            and all(isinstance(c["enable_prefix_caching"], bool) and isinstance(c["error"], str) for c in cells))
check("matrix_json_shape", shape_ok, json.dumps(m)[:1200])
if len(cells) == 4:
    check("matrix_json_cells_1_to_3_ok",
          all(c["outcome"] == "ok" and c["failed_request"] is None and c["error"] == "" for c in cells[:3]), cells[:3])
    c4 = cells[3]
    check("matrix_json_cell_4_crash", c4["outcome"] == "crash" and c4["failed_request"] == 2 and c4["error"] == W7900_TEXT
          and c4.get("signal") == 6 and c4.get("site") == "attn/prefix_prefill", c4)
check("matrix_json_issues", "vllm#13147" in m.get("issues", []), m.get("issues"))

rc, out, err = run(["matrix", "--platform", "sm_90", "--json", "--quick"])
try:
    m = json.loads(out)
except ValueError:
    m = {}
check("matrix_sm90_clean", rc == 0 and m.get("classification") == "clean" and m.get("platform") == "h100-sm90-vllm0.7.2"
      and all(c["outcome"] == "ok" and c["failed_request"] is None for c in m.get("cells", [])) and m.get("issues") == [],
      f"rc={rc} {out[:600]}")

rc, out, err = run(["matrix", "--platform", "sm_80", "--chunked-prefill", "16", "--json", "--quick"])
m = json.loads(out) if out.startswith("{") else {}
check("matrix_sm80_chunked_is_dtype_specific", rc == 1 and m.get("classification") == "dtype-specific"
      and m["cells"][1]["failed_request"] == 1
      and m["cells"][1]["error"] == "fp8e4nv data type is not supported on CUDA arch < 89" and "vllm#7714" in m["issues"],
      out[:1200])

# a platform file: a stack whose prefix-prefill path cannot read bf16
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults", "data", "platforms.json")) as f:
    doc = json.load(f)
prof = [p for p in doc["profiles"] if p["id"] == "h100-sm90-vllm0.7.2"][0]
prof["id"], prof["aliases"] = "no-bf16-prefix", []
prof["paths"]["prefix_prefill"]["native"] = ["fp8e4nv"]
prof["paths"]["prefix_prefill"]["unsupported"] = {"failure": "error", "message": "cannot read {encoding}", "source": "test"}
tmp = tempfile.mkdtemp()
short = os.path.join(tmp, "prompts.txt")  # a short prompt twice: the two-request test, quickly
with open(short, "w") as f:
    f.write("Question: boiling point of water?\nQuestion: boiling point of water?\n")
pfile = os.path.join(tmp, "p.json")
with open(pfile, "w") as f:
    json.dump({"schema": "kvfp8-platforms/1", "profiles": [prof]}, f)
rc, out, err = run(["matrix", "--platform-file", pfile, "--json", "--quick"])
m = json.loads(out) if out.startswith("{") else {}
check("matrix_platform_file_prefix_specific", rc == 1 and m.get("classification") == "prefix-specific"
      and m["cells"][2]["outcome"] == "error" and m["cells"][2]["error"] == "cannot read bf16", out[:800] + err)

usage_error("matrix_needs_platform", ["matrix"], "--platform is required")
usage_error("matrix_unknown_platform", ["matrix", "--platform", "gfx9999"], "unknown platform 'gfx9999' (w7900-rocm6.3")
usage_error("matrix_bad_max_tokens", ["matrix", "--platform", "sm_90", "--max-tokens", "0"], "--max-tokens: '0'")
usage_error("matrix_bad_fp8_dtype", ["matrix", "--platform", "sm_90", "--fp8-dtype", "auto"], "--fp8-dtype")
with open(os.path.join(tmp, "bad.json"), "w") as f:
    f.write('{"schema": "kvfp8-platforms/1", "profiles": [{"id": "x"}]}')
usage_error("matrix_bad_platform_file", ["matrix", "--platform-file", os.path.join(tmp, "bad.json")],
            "profiles[0].status: missing")

# --- plan ------------------------------------------------------------------------------------
PLAN_KEYS = {"platform", "workload", "kv_cache_dtype", "enable_prefix_caching", "reasons", "issues"}
rc, out, err = run(["plan", "--platform", W7900, "--workload", "memory-bound", "--json"])
p = json.loads(out) if out.startswith("{") else {}
check("plan_w7900_memory_bound", rc == 0 and PLAN_KEYS <= set(p) and p["platform"] == W7900
      and p["workload"] == "memory-bound" and p["kv_cache_dtype"] == "fp8" and p["enable_prefix_caching"] is False
      and all(isinstance(r, str) for r in p["reasons"]) and "vllm#13147" in p["issues"]
      and p["kv_bytes_per_token"] == 65536 and p["capacity_tokens"] == 262144, out[:1500])
check("plan_w7900_e5m2_refused_by_decode", any("refused by the cache_write and decode paths" in r
                                               and "Unsupported data type of kv cache: fp8_e5m2" in r
                                               for r in p.get("reasons", [])), p.get("reasons"))
rc, out, err = run(["plan", "--platform", W7900, "--workload", "prefix-heavy", "--json"])
p = json.loads(out) if out.startswith("{") else {}
check("plan_w7900_prefix_heavy", rc == 0 and p.get("kv_cache_dtype") == "auto" and p.get("enable_prefix_caching") is True
      and "vllm#13147" in p.get("issues", []), out[:800])
rc, out, err = run(["plan", "--platform", "sm_90", "--workload", "auto", "--model", "80,8,128", "--kv-budget", "80GiB",
                    "--json"])
p = json.loads(out) if out.startswith("{") else {}
check("plan_sm90_keeps_both", rc == 0 and p.get("kv_cache_dtype") == "fp8" and p.get("enable_prefix_caching") is True
      and p.get("kv_bytes_per_token") == 2 * 80 * 8 * 128 and p.get("capacity_tokens") == 80 * 2**30 // (16 * 163840) * 16,
      out[:800])
for wl, want in (("memory-bound", ("fp8", False)), ("prefix-heavy", ("auto", True))):
    # one on the tiny model and the seed's prompt, as an operator runs it; the other smaller
    rc, out, err = run(["plan", "--platform", W7900, "--workload", wl, "--verify"]
                       + (quick if wl == "memory-bound" else ["--quick"]))
    check(f"plan_w7900_{wl}_verifies", rc == 0 and "verify: PASS" in out and "[FAIL]" not in out
          and f"kv_cache_dtype={want[0]}, enable_prefix_caching={'true' if want[1] else 'false'}" in out, out[-1600:] + err)
usage_error("plan_needs_workload", ["plan", "--platform", W7900], "--workload is required")
usage_error("plan_bad_workload", ["plan", "--platform", W7900, "--workload", "fast"], "unknown workload 'fast'")
usage_error("plan_bad_model", ["plan", "--platform", W7900, "--workload", "auto", "--model", "32,8"], "--model: '32,8'")
usage_error("plan_bad_budget", ["plan", "--platform", W7900, "--workload", "auto", "--kv-budget", "lots"], "--kv-budget")

# --- verify ------------------------------------------------------------------------------------
log = os.path.join(tmp, "run.log")
rc, out, err = run(["run", "--kv-cache-dtype", "fp8", "--enable-prefix-caching", "--calculate-kv-scales",
                    "--max-tokens", "3", "--seed", "0", "--log", log, "--prompt-file", short])
rc, out, err = run(["verify", "--log", log])
check("verify_log_passes", rc == 0 and out.count("[pass]") == 6 and "verify: PASS" in out, out + err)
rc, out, err = run(["verify", "--log", log, "--json"])
v = json.loads(out) if out.startswith("{") else {}
check("verify_log_json", rc == 0 and v.get("passed") is True and len(v.get("items", [])) == 6
      and all(i["state"] == "pass" for i in v["items"]), out[:600])
rc, out, err = run(["verify", "--platform", W7900, "--kv-cache-dtype", "fp8", "--enable-prefix-caching", "--quick"])
check("verify_w7900_both_fails", rc == 1 and "[FAIL] 4." in out and W7900_TEXT in out, out + err)
usage_error("verify_needs_something", ["verify"], "give --log FILE")
usage_error("verify_not_both", ["verify", "--log", log, "--kv-cache-dtype", "fp8"], "not both")
usage_error("verify_missing_log", ["verify", "--log", os.path.join(tmp, "nope.log")], "nope.log")

# --- faults --------------------------------------------------------------------------------------
rc, out, err = run(["faults", "list"])
sites = ["engine/startup", "scales/load", "hash/compute", "pool/alloc", "cache/write", "cache/read", "attn/prefill",
         "attn/prefix_prefill", "attn/decode"]
check("faults_list_prints_every_site", rc == 0 and all(f"\n{s} " in "\n" + out for s in sites), out[:600])
rc, out, err = run(["faults", "list", "--json"])
f = json.loads(out) if out.startswith("{") else {}
check("faults_list_json", rc == 0 and [s["name"] for s in f.get("sites", [])] == sites
      and len(f.get("actions", [])) == 10, out[:400])
rc, out, err = run(["faults", "parse", "seed=3;attn = nan @ nth:2"])
check("faults_parse_canonical", rc == 0 and out == "seed=3; attn=nan@nth:2\n", repr(out) + err)
usage_error("faults_parse_bad", ["faults", "parse", "attn=melt"], "unknown action 'melt'")
usage_error("faults_unknown_sub", ["faults", "frobnicate"], "unknown subcommand")
rc, out, err = run(["faults", "platforms"])
check("faults_platforms_lists_ids", rc == 0 and W7900 in out and "h100-sm90-vllm0.7.2" in out, out[:400])
rc, out, err = run(["faults", "platforms", "--platform", "w7900", "--json"])
f = json.loads(out) if out.startswith("{") else {}
pp = f.get("profiles", [{}])[0].get("paths", {}).get("prefix_prefill", {})
check("faults_platform_json", rc == 0 and pp.get("native") == ["bf16", "fp16", "fp8e5"]
      and pp.get("unsupported", {}).get("failure") == "crash", out[:600])
rc, out, err = run(["faults", "issues", "--json"])
f = json.loads(out) if out.startswith("{") else {}
ids = [i["id"] for i in f.get("issues", [])]
check("faults_issues_catalog", rc == 0 and all(i in ids for i in ("vllm#13147", "vllm#7714", "vllm#26431", "vllm#45562",
                                                                  "sglang#18818", "vllm#21640", "tensorrt-llm#2699")), ids)
if not QUICK:
    rc, out, err = run(["faults", "sweep", "--quick"])
    check("faults_sweep_no_silent_output", rc == 0 and "silent wrong output: 0;" in out and "sweep: PASS" in out,
          out[-1200:] + err[-400:])

# --- KVFP8_FAULTS and run --platform --------------------------------------------------------------------
base = ["run", "--kv-cache-dtype", "fp8", "--enable-prefix-caching", "--max-tokens", "2", "--seed", "0",
        "--prompt-file", short]
rc, out, err = run(base, env={"KVFP8_FAULTS": "pool/alloc=error@nth:1"})
check("env_faults_arm", rc == 1 and "request 1: FAILED: injected fault: error at pool/alloc (call 1" in out
      and "fault injection armed: seed=0; pool/alloc=error@nth:1" in err, out + err[-500:])
rc, out, err = run(base, env={"KVFP8_FAULTS": "cache/write=fnuz-as-fn@nth:1"})
check("env_faults_canary", rc == 1 and "every value x2: E4M3FNUZ bytes read as E4M3FN" in out, out + err[-300:])
rc, out, err = run(base, env={"KVFP8_FAULTS": "pool/alloc=melt"})
check("env_faults_bad_spec", rc == 1 and "startup: FAILED: KVFP8_FAULTS: item 1 'pool/alloc=melt': unknown action" in out,
      out + err[-300:])
rc, out, err = run(base + ["--platform", W7900])
check("run_platform_w7900_crashes_on_request_2",
      rc == 1 and "request 1: prompt" in out and f"request 2: CRASHED (the worker dies at attn/prefix_prefill): "
      f"ValueError: {W7900_TEXT}" in out, out + err[-300:])
rc, out, err = run(["run", "--kv-cache-dtype", "fp8", "--max-tokens", "2", "--seed", "0", "--platform", W7900,
                    "--prompt-file", short])
check("run_platform_w7900_fp8_alone_serves", rc == 0 and "request 2: prompt" in out, out + err[-300:])
usage_error("run_unknown_platform", base + ["--platform", "gfx9999"], "--platform: unknown platform")

finish("py_matrix_plan_cli")
