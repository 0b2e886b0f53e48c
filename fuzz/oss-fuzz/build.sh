#!/bin/bash -eu
# OSS-Fuzz / ClusterFuzzLite build script: the conventions of
# https://google.github.io/oss-fuzz/getting-started/new-project-guide/ — it uses $CC,
# $CFLAGS, $LIB_FUZZING_ENGINE, $SRC and $OUT, and leaves in $OUT one binary per target
# with its seed corpus (fuzz_<name>_seed_corpus.zip) and dictionary (fuzz_<name>.dict).
set -eu  # also when run as `bash build.sh`, which ignores the flags on the #! line
cd "${SRC:-$(dirname "$0")/../..}/kvfp8" 2>/dev/null || cd "$(dirname "$0")/../.."
OSS_FUZZ_MODE=1 sh fuzz/build.sh
for target in fuzz/fuzz_*.c; do
    name=$(basename "$target" .c)
    short=${name#fuzz_}
    if [ -d "fuzz/corpus/$short" ]; then
        rm -f "$OUT/${name}_seed_corpus.zip"
        (cd "fuzz/corpus/$short" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
    fi
    if [ -f "fuzz/dict/$short.dict" ]; then
        cp "fuzz/dict/$short.dict" "$OUT/$name.dict"
    fi
done
