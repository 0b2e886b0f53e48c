"""`kvfp8 conform`, the conformance runner, from the outside.

Runs the tool against ref, cpu, the example plugin and the deliberately broken
plugin, and checks what a CI system relies on: exit statuses, the JSONL results
(one line per test, streamed), --resume after the runner is killed mid-run (no
test lost, none run twice, a torn last line cut off), --shard K/N partitioning the
list exactly, --filter, waivers (a reason is required), the JUnit XML (parsed with
xml.etree), report.html (present, self-contained: no http(s) reference, no
script), the must-pass list covering every test the suites define, and the cuda
backend reported NOT_SUPPORTED where its library is absent.
Prints cmocka-style lines that scripts/run-tests.sh counts.
KVFP8_QUICK=1 (sanitizer and coverage builds) runs subsets of the suites.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from pytally import check, results  # tests/ is sys.path[0]

BIN = os.environ.get("KVFP8_BIN", "build/bin/kvfp8")
BUILD = os.environ.get("KVFP8_BUILD", os.path.dirname(os.path.dirname(BIN)) or "build")
PLUGINS = os.path.join(BUILD, "plugins")
QUICK = bool(os.environ.get("KVFP8_QUICK"))
tmp = tempfile.mkdtemp(prefix="kvfp8-conform-test-")

RESULT_CODES = {"PASS", "FAIL", "NOT_SUPPORTED", "WAIVED", "CRASH", "TIMEOUT"}
# under sanitizers, a few tests of every suite instead of all of them
QUICK_FILTERS = ["api.*", "fp8_decode.*", "fp8_encode.e4m3fn_bf16", "cache_write.auto_bf16",
                 "cache_write.fp8_e4m3fn", "attention.decode_e4m3fn_d64_bs16_gqa",
                 "property.gqa_head_mapping", "block_hash.sha256", "perf.fp8_decode"]



def conform(args, timeout=600):
    p = subprocess.run([BIN, "conform"] + args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def quick(args):
    if not QUICK:
        return args
    out = list(args)
    for f in QUICK_FILTERS:
        out += ["--filter", f]
    return out


def read_jsonl(path):
    header, tests = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            (header if o["type"] == "run" else tests).append(o)
    return header, tests


def listed(args=()):
    rc, out, err = conform(["--list"] + list(args))
    return rc, out.split(), err


def check_report(name, report, n_tests):
    """JUnit XML parses with one testcase per test; report.html is self-contained."""
    try:
        root = ET.parse(os.path.join(report, "junit.xml")).getroot()
        cases = root.findall(".//testcase")
        check(f"{name}_junit_parses", root.tag == "testsuites" and len(cases) == n_tests,
              f"{root.tag} with {len(cases)} testcases, expected {n_tests}")
    except (ET.ParseError, OSError) as e:
        check(f"{name}_junit_parses", False, str(e))
        return None
    html_path = os.path.join(report, "report.html")
    html = open(html_path, encoding="utf-8").read() if os.path.exists(html_path) else ""
    check(f"{name}_report_html_self_contained",
          html.startswith("<!DOCTYPE html>") and "<svg" in html and "http://" not in html
          and "https://" not in html and "<script" not in html.lower() and "<link" not in html.lower(),
          f"{len(html)} bytes")
    bad_svg = []
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        try:
            ET.fromstring(svg)
        except ET.ParseError as e:
            bad_svg.append(str(e))
    check(f"{name}_report_charts_well_formed", not bad_svg, bad_svg[:2])
    return root, html


def all_ids():
    rc, out, err = conform(["--describe"])
    rows = [line.split("\t") for line in out.splitlines()]
    return rc, rows


# --- the lists cover every test ----------------------------------------------------------
rc, rows = all_ids()
unlisted = [r[0] for r in rows if r[2] == "unlisted"]
check("every_test_is_in_a_list", rc == 0 and len(rows) > 40 and not unlisted, f"rc={rc} unlisted={unlisted}")
check("levels_are_known", all(r[1] in {"EXACT", "BOUNDED", "PROPERTY", "API", "PERF"} for r in rows),
      {r[1] for r in rows})
full = [r[0] for r in rows if r[2] != "unlisted"]
mustpass = {r[0] for r in rows if r[2] == "mustpass"}

# --- filter, shard ------------------------------------------------------------------------
rc, ids, err = listed()
check("list_is_the_two_lists", rc == 0 and sorted(ids) == sorted(full), f"rc={rc} {len(ids)} vs {len(full)}")
rc, enc, err = listed(["--filter", "fp8_encode.*"])
check("filter_glob", rc == 0 and enc and all(i.startswith("fp8_encode.") for i in enc) and len(enc) == 12,
      f"rc={rc} {enc}")
rc, two, err = listed(["--filter", "api.*", "--filter", "property.*"])
check("filter_repeated_is_a_union", rc == 0 and len(two) == 8 and {i.split(".")[0] for i in two} == {"api", "property"},
      two)
for n in (1, 2, 3, 7):
    shards = [listed(["--shard", f"{k}/{n}"])[1] for k in range(1, n + 1)]
    flat = [i for s in shards for i in s]
    sizes = [len(s) for s in shards]
    check(f"shard_partitions_exactly_{n}", sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
          and max(sizes) - min(sizes) <= 1, f"sizes {sizes}")
shards = [listed(["--filter", "attention.*", "--shard", f"{k}/2"])[1] for k in (1, 2)]
check("shard_after_filter", sorted(shards[0] + shards[1]) == sorted(i for i in ids if i.startswith("attention."))
      and not set(shards[0]) & set(shards[1]), shards)

for bad, args in [("no_match", ["--filter", "nothing.here*"]), ("shard_zero", ["--shard", "0/3"]),
                  ("shard_k_above_n", ["--shard", "4/3"]), ("shard_text", ["--shard", "a/b"]),
                  ("timeout_negative", ["--timeout", "-1"]), ("unknown_option", ["--frobnicate"]),
                  ("missing_value", ["--backend"]), ("unknown_backend", ["--backend", "nosuch"]),
                  ("missing_plugin", ["--backend", "./no/such/libkvfp8_x.so"]),
                  ("missing_mustpass", ["--mustpass", os.path.join(tmp, "none.txt")])]:
    rc, out, err = conform(args + ["--results", os.path.join(tmp, "bad.jsonl")])
    check(f"bad_input_{bad}", rc == 2 and out == "" and err.strip(), f"rc={rc} out={out[:200]!r} err={err[:200]!r}")

# --- ref, killed mid-run, then resumed -------------------------------------------------------
report = os.path.join(tmp, "ref")
results_path = os.path.join(report, "results.jsonl")
args = quick(["--backend", "ref", "--report", report])
proc = subprocess.Popen([BIN, "conform"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
want_lines = 4 if QUICK else 12
deadline = time.time() + 300
done_before = 0
while time.time() < deadline and proc.poll() is None:
    try:
        done_before = sum(1 for line in open(results_path) if '"type":"test"' in line)
    except OSError:
        done_before = 0
    if done_before >= want_lines:
        break
    time.sleep(0.05)
killed = proc.poll() is None
if killed:
    proc.send_signal(signal.SIGKILL)
proc.wait()
check("runner_killed_mid_run", killed and done_before >= want_lines, f"killed={killed} lines={done_before}")
kept = read_jsonl(results_path)[1]  # what the killed run finished (the child it was waiting for is lost)
with open(results_path, "a") as f:
    f.write('{"type":"test","id":"api.unknown_op_decl')  # a write torn by the kill
rc, out, err = conform(args + ["--resume"])
check("resume_exit_0", rc == 0, f"rc={rc} {out[-1500:]} {err[-500:]}")
check("resume_keeps_what_was_done", f"({len(kept)} tests already in" in out, f"{len(kept)} kept; {out[-300:]}")
check("resume_runs_only_the_rest", not any(f" {t['id']} " in out for t in kept), "a finished test ran again")
header, tests = read_jsonl(results_path)
ids_run = [t["id"] for t in tests]
selected = listed(quick([]))[1]
check("resume_no_test_lost_or_run_twice", sorted(ids_run) == sorted(selected) and len(ids_run) == len(set(ids_run)),
      f"{len(ids_run)} lines for {len(selected)} tests; twice: {sorted({i for i in ids_run if ids_run.count(i) > 1})}")
check("resume_header_marked", len(header) == 2 and header[1].get("resumed") is True and header[0]["backend"] == "ref",
      header)
fields = {"id", "suite", "test", "level", "mustpass", "result", "seconds", "failures", "detail", "metrics"}
check("jsonl_fields", all(fields <= set(t) and t["result"] in RESULT_CODES for t in tests),
      [sorted(fields - set(t)) for t in tests][:3])
check("ref_must_pass_all_pass", all(t["result"] == "PASS" for t in tests if t["id"] in mustpass),
      [(t["id"], t["result"]) for t in tests if t["result"] != "PASS"][:5])
bounded = [t for t in tests if t["level"] == "BOUNDED"]
check("bounded_tests_record_ratio", bounded and all("max_ratio" in t["metrics"] and len(t.get("histogram", [])) == 11
                                                    for t in bounded), bounded[:1])
check_report("ref", report, len(selected))
rc, out2, err = conform(args + ["--resume"])
check("resume_of_a_finished_run_runs_nothing", rc == 0 and f"({len(selected)} tests already in" in out2, out2[-400:])
rc, out3, err = conform(["--backend", "cpu", "--resume", "--results", results_path])
check("resume_refuses_another_backend", rc == 2 and out3 == "" and "another run" in err, f"rc={rc} {err}")

# --- cpu: everything, including device timing for the bandwidth chart ---------------------------
report = os.path.join(tmp, "cpu")
rc, out, err = conform(quick(["--backend", "cpu", "--report", report]))
check("cpu_exit_0", rc == 0, f"rc={rc} {out[-1500:]} {err[-300:]}")
header, tests = read_jsonl(os.path.join(report, "results.jsonl"))
check("cpu_all_pass", tests and all(t["result"] == "PASS" for t in tests),
      [(t["id"], t["result"], t.get("reason")) for t in tests if t["result"] != "PASS"][:5])
perf = [t for t in tests if t["suite"] == "perf"]
check("cpu_reports_bandwidth", perf and all(t["metrics"].get("bytes_per_second", 0) > 0
                                             and t["metrics"].get("copy_bytes_per_second", 0) > 0 for t in perf),
      perf[:1])
worst = max((t["metrics"].get("max_ratio", 0) for t in tests), default=0)
check("cpu_attention_well_inside_bound", 0 < worst < 0.5, worst)
got = check_report("cpu", report, len(tests))
if got:
    check("cpu_report_has_bandwidth_chart", "GB/s" in got[1] and "copy ceiling" in got[1])
check("summary_table_printed", "suite" in out and "total" in out and "CONFORMANT" in out, out[-600:])

# --- the example plugin: passes, optional features it lacks are NOT_SUPPORTED ------------------
example = os.path.join(PLUGINS, "libkvfp8_example.so")
report = os.path.join(tmp, "example")
rc, out, err = conform(quick(["--backend", example, "--report", report]))
check("example_plugin_exit_0", rc == 0, f"rc={rc} {out[-1500:]} {err[-300:]}")
header, tests = read_jsonl(os.path.join(report, "results.jsonl"))
ns = [t for t in tests if t["result"] == "NOT_SUPPORTED"]
check("example_plugin_declines_only_optional", ns and all(not t["mustpass"] for t in ns)
      and all(t["result"] in ("PASS", "NOT_SUPPORTED") for t in tests), [(t["id"], t["result"]) for t in tests][:8])
check("example_plugin_named", header[0]["backend"] == "example" and header[0]["backend_name"] == "example", header[0])
check_report("example", report, len(tests))

# --- the broken plugin: FAIL, CRASH, TIMEOUT reported, the run goes on ---------------------------
broken = os.path.join(PLUGINS, "libkvfp8_broken.so")
report = os.path.join(tmp, "broken")
bargs = ["--backend", broken, "--report", report, "--timeout", "2"]
if QUICK:
    bargs += ["--filter", "api.*", "--filter", "fp8_encode.e5m2_bf16", "--filter", "fp8_encode.e4m3fn_bf16",
              "--filter", "cache_write.auto_f32", "--filter", "fp8_decode.e5m2", "--filter", "fp8_decode.e4m3fn",
              "--filter", "property.gqa_head_mapping"]
t0 = time.time()
rc, out, err = conform(bargs)
elapsed = time.time() - t0
header, tests = read_jsonl(os.path.join(report, "results.jsonl"))
by_id = {t["id"]: t for t in tests}
check("broken_exit_1", rc == 1, f"rc={rc} {err[-300:]}")
check("broken_every_test_reported", sorted(by_id) == sorted(listed(bargs[4:] if QUICK else [])[1]),
      f"{len(by_id)} results")
fail = by_id.get("fp8_encode.e5m2_bf16", {})
lines = fail.get("failures", [])
check("broken_fail", fail.get("result") == "FAIL" and lines
      and all(" => " in line and ", expected " in line and "e5m2/" in line for line in lines),
      (fail.get("result"), lines[:2]))
check("broken_fail_line_names_inputs", lines and "bf16 0x7f" in lines[0] and "scale" in lines[0], lines[:1])
check("broken_fail_counts_all_cases", fail.get("failures_total", 0) > len(lines), fail.get("failures_total"))
crash = by_id.get("cache_write.auto_f32", {})
# (under UBSan the null store is caught before it faults: a sanitizer finding, still a CRASH)
check("broken_crash", crash.get("result") == "CRASH" and ("signal 11" in crash.get("reason", "")
                                                          or "sanitizer" in crash.get("reason", "")),
      (crash.get("result"), crash.get("reason")))
hang = by_id.get("fp8_decode.e5m2", {})
check("broken_timeout", hang.get("result") == "TIMEOUT" and 1.9 < hang.get("seconds", 0) < 10,
      (hang.get("result"), hang.get("seconds")))
check("broken_unaffected_tests_pass", by_id.get("fp8_decode.e4m3fn", {}).get("result") == "PASS"
      and by_id.get("fp8_encode.e4m3fn_bf16", {}).get("result") == "PASS", "")
check("broken_run_not_held_up", elapsed < 120, elapsed)
root_html = check_report("broken", report, len(tests))
if root_html:
    root, html = root_html
    kinds = {(c.find("failure") is not None, c.find("error") is not None) for c in root.iter("testcase")}
    check("broken_junit_failure_and_error", (True, False) in kinds and (False, True) in kinds, kinds)
    check("broken_report_shows_failure_lines", "expected 0x" in html and "TIMEOUT" in html and "CRASH" in html)

# --- waivers: only with a reason; a waived must-pass failure no longer fails the run --------------
wfile = os.path.join(tmp, "waivers.txt")
with open(wfile, "w") as f:
    f.write("# known defects of the broken plugin\n"
            "fp8_encode.e5m2_* NaN encoded as Inf, vendor bug 1234\n"
            "fp8_decode.e5m2   decode hangs on e5m2, vendor bug 1235\n"
            "cache_write.auto_f32 stray pointer with 32-slot blocks\n")
wargs = ["--backend", broken, "--timeout", "2", "--waivers", wfile, "--results", os.path.join(tmp, "w.jsonl"),
         "--filter", "fp8_encode.e5m2_bf16", "--filter", "fp8_decode.e5m2", "--filter", "cache_write.auto_f32",
         "--filter", "fp8_decode.e4m3fn"]
rc, out, err = conform(wargs)
header, tests = read_jsonl(os.path.join(tmp, "w.jsonl"))
by_id = {t["id"]: t for t in tests}
check("waived_run_exit_0", rc == 0, f"rc={rc} {out[-800:]}")
check("waived_results", all(by_id[i]["result"] == "WAIVED" for i in
                            ("fp8_encode.e5m2_bf16", "fp8_decode.e5m2", "cache_write.auto_f32"))
      and by_id["fp8_decode.e4m3fn"]["result"] == "PASS", {i: t["result"] for i, t in by_id.items()})
check("waiver_keeps_reason_and_original", by_id["fp8_decode.e5m2"].get("original_result") == "TIMEOUT"
      and "bug 1235" in by_id["fp8_decode.e5m2"].get("waiver", ""), by_id["fp8_decode.e5m2"])
with open(wfile, "w") as f:
    f.write("fp8_encode.e5m2_bf16 a reason\ncache_write.auto_f32\n")
rc, out, err = conform(wargs)
check("waiver_without_reason_is_an_error", rc == 2 and out == "" and ":2:" in err and "reason" in err, err)

# --- cuda without its library: NOT_SUPPORTED for every test, never a pass ------------------------
env = dict(os.environ, KVFP8_CUDA_BACKEND=os.path.join(tmp, "no", "libkvfp8_cuda.so"))
p = subprocess.run([BIN, "conform", "--backend", "cuda", "--filter", "api.*", "--filter", "attention.decode_e5m2*",
                    "--results", os.path.join(tmp, "cuda.jsonl")], capture_output=True, env=env)
header, tests = read_jsonl(os.path.join(tmp, "cuda.jsonl"))
check("cuda_absent_not_supported", p.returncode == 1 and tests and all(
    t["result"] == "NOT_SUPPORTED" and "cuda backend not available" in t["reason"] for t in tests),
      (p.returncode, [t["result"] for t in tests]))
p = subprocess.run([BIN, "conform", "--list-backends"], capture_output=True, env=env)
rows = dict(line.split("\t")[:2] for line in p.stdout.decode().splitlines())
check("list_backends", p.returncode == 0 and rows.get("ref") == "available" and rows.get("cpu") == "available"
      and rows.get("cuda") == "not available", rows)

print(f"conform runner checks: {results['ok']} ok, {results['failed']} failed (work files in {tmp})")
sys.exit(1 if results["failed"] else 0)
