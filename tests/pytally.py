"""The pass/fail tally of kvfp8's Python test scripts (tests/py_*.py).

One line per check in cmocka's form ([       OK ] / [  FAILED  ]), then the summary
line `NAME: N passed, M failed` that `make test` adds up, and exit status 1 if any
check failed."""
import sys

results = {"ok": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        results["ok"] += 1
        print(f"[       OK ] {name}")
    else:
        results["failed"] += 1
        print(f"[  FAILED  ] {name}: {detail}")
    sys.stdout.flush()
    return cond


def finish(suite):
    print(f"{suite}: {results['ok']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)
