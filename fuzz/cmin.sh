#!/bin/sh
# Minimises what the fuzzer found for TARGET (fuzz/corpus/TARGET) against the committed corpus
# (tests/fixtures/fuzz/TARGET/corpus) with libFuzzer's merge, as `cargo fuzz cmin` does, and
# adds the inputs that reach new edges there as cmin-<sha1>. Edges only (-use_counters=0):
# inputs that only hit a known edge a new number of times stay in fuzz/corpus, for the next
# run, and out of the repository (a 45-minute hub_response run found 1,765 of those against 97
# with new edges). Inputs over MAX_BYTES (default 8192) are left out to keep the fixtures
# small. Build the target first (`cargo +nightly fuzz build TARGET`; CARGO_TARGET_DIR as for
# the build).
#   fuzz/cmin.sh TARGET [MAX_BYTES]
set -eu
target=$1
max=${2:-8192}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
bin=${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-gnu/release/$target
fixtures=../tests/fixtures/fuzz/$target/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/merged" "$work/found"
cp "$fixtures"/* "$work/merged/"
find "corpus/$target" -type f -size -"$((max + 1))"c -exec cp {} "$work/found/" \;
nice -n 19 "$bin" -merge=1 -use_counters=0 -timeout=1 -rss_limit_mb=1024 -malloc_limit_mb=1024 \
  "$work/merged" "$work/found" 2>"$work/log" || { tail -n 20 "$work/log"; exit 1; }
added=0
for f in "$work/merged"/*; do
  name=$(basename "$f")
  [ -e "$fixtures/$name" ] && continue
  cp "$f" "$fixtures/cmin-$name"
  added=$((added + 1))
done
echo "$target: $added inputs added to $fixtures ($(du -sh "$fixtures" | cut -f1))"
