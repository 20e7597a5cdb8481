#!/usr/bin/env bash
# ctest's brief fuzz run: run_fuzz.sh <target> <seed corpus dir> <seconds> <libfuzzer: 0|1>.
# libFuzzer: mutate from the seeds for <seconds> in a scratch corpus (the repo is never written),
# crashes and leaks fail the test, the reproducer is kept in $QSIGN_FUZZ_ARTIFACTS (default
# the build dir's fuzz-artifacts/). Without libFuzzer: the seeds once.
set -euo pipefail
target=$1 seeds=$2 seconds=$3 libfuzzer=$4
if [ "$libfuzzer" != 1 ]; then
  exec "$target" "$seeds"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
artifacts=${QSIGN_FUZZ_ARTIFACTS:-$(dirname "$target")/fuzz-artifacts}
mkdir -p "$artifacts"
exec "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$(basename "$target")-" "$scratch" "$seeds"
