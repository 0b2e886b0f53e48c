#!/bin/bash -eu
# ClusterFuzzLite runs this with the OSS-Fuzz environment; the build is shared.
exec bash "$SRC/kvfp8/fuzz/oss-fuzz/build.sh"
