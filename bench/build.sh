#!/usr/bin/env bash
# What an axum team's build pays for keygate: the layer alone (`--no-default-features`) beside
# the full build (the default features), in one run. For each: the crates it depends on
# (`cargo tree -e normal`, each name and version once; with build dependencies too), then a
# clean `cargo build` of the library (debug, as a team's first build is), each set in a target
# directory of its own, the two in turn ROUNDS times. Prints every round and the medians.
#
#   bench/build.sh
#   ROUNDS=1 bench/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A flags=([layer]="--no-default-features" [full]="")
crates() { cargo tree -e "$1" ${flags[$2]} --prefix none 2> /dev/null | sed 's/ (\*)//' | sort -u | wc -l; }
for set in layer full; do
  echo "$set: $(crates normal "$set") crates ($(crates normal,build "$set") with build dependencies)"
done

# Fetched once, so that no round pays for downloads.
cargo fetch --quiet
for round in $(seq "$ROUNDS"); do
  for set in layer full; do
    rm -rf "$work/$set"
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$work/$set" cargo build --quiet --lib ${flags[$set]}
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $round $set: $(printf '%.1f' "$seconds") s"
    echo "$seconds" >> "$work/$set.times"
  done
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
layer=$(median "$work/layer.times")
full=$(median "$work/full.times")
printf 'median clean build: layer %.1f s, full %.1f s, layer / full %.2f\n' "$layer" "$full" "$(echo "$layer / $full" | bc -l)"
