#!/bin/sh
# Installs (as root) or names (otherwise) the Debian 12 packages a job needs.
# Usage: scripts/deps.sh build|test|coverage|fuzz
# Each check looks for the thing itself (a header, a program, a Python module),
# so a machine that has it from elsewhere is left alone.
set -u
job=${1:-build}
missing=""
need() { # need PACKAGE TEST-COMMAND...
    pkg=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
have_header() { # have_header HEADER: the C compiler can include it
    printf '#include <%s>\nint main(void){return 0;}\n' "$1" |
        ${CC:-cc} -x c - -fsyntax-only 2>/dev/null
}
have_cmocka() {
    printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <cmocka.h>\nint main(void){return 0;}\n' |
        ${CC:-cc} -x c - -fsyntax-only 2>/dev/null
}

need make command -v make
need gcc command -v ${CC:-cc}
need libssl-dev have_header openssl/sha.h
need libxxhash-dev have_header xxhash.h
need libjansson-dev have_header jansson.h
# the tool links the conformance suites, which are cmocka tests (kvfp8 conform)
need libcmocka-dev have_cmocka
case $job in
test|coverage|fuzz)
    need python3 test -x /usr/bin/python3
    need python3-cbor2 /usr/bin/python3 -c 'import cbor2'
    need python3-xxhash /usr/bin/python3 -c 'import xxhash'
    ;;
esac
case $job in
coverage) need lcov command -v lcov ;;
fuzz)
    need clang command -v clang
    need libclang-rt-14-dev sh -c 'echo "int LLVMFuzzerTestOneInput(const char*d,long n){return 0;}" | clang -x c - -fsanitize=fuzzer -o /dev/null'
    need zip command -v zip
    need unzip command -v unzip
    ;;
esac

[ -z "$missing" ] && exit 0
echo "kvfp8: missing Debian packages for '$job':$missing" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "kvfp8: installing them with apt-get (running as root)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || { echo "kvfp8: apt-get update failed" >&2; exit 1; }
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2 ||
        { echo "kvfp8: apt-get install failed for:$missing" >&2; exit 1; }
    exit 0
fi
echo "kvfp8: not root, so nothing was installed. Run:" >&2
echo "    sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
