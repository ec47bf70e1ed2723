#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each (default 300 s; pass another
# number of seconds). Needs cargo-fuzz (`cargo install cargo-fuzz`); on a
# stable toolchain RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags it uses.
# New crashes land in fuzz/artifacts/<target>/: fix them, then copy them to
# fuzz/regressions/<target>/ so that `cargo test` replays them for good.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-300}"
for target in server_dispatch client_decode; do
    mkdir -p "corpus/$target"
    echo "==> fuzzing $target for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "regressions/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1
done
