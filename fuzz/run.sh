#!/bin/sh
# Runs one fuzz target for SECONDS (default 3600) with the project's limits: an input taking
# more than a second, more than 1 GB of RSS or a single allocation over 1 GB is a crash.
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
# New inputs go to fuzz/corpus/TARGET (ignored by git); the committed corpus
# tests/fixtures/fuzz/TARGET/corpus is read as seeds. Crashes land in fuzz/artifacts/TARGET.
# Needs the nightly toolchain and cargo-fuzz (README, "Reliability").
set -eu
target=$1
secs=${2:-3600}
[ $# -ge 2 ] && shift 2 || shift 1
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
case $target in
  safetensors|safetensors_index|config) dict=dicts/json.dict ;;
  pytorch|pickle) dict=dicts/pickle.dict ;;
  gguf) dict=dicts/gguf.dict ;;
  hub_response) dict=dicts/hub_response.dict ;;
  *) dict= ;;
esac
mkdir -p "corpus/$target"
exec nice -n 19 cargo +nightly fuzz run "$target" "corpus/$target" \
  "../tests/fixtures/fuzz/$target/corpus" -- \
  -timeout=1 -rss_limit_mb=1024 -malloc_limit_mb=1024 -max_total_time="$secs" \
  -print_final_stats=1 ${dict:+-dict=$dict} "$@"
