#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and keeps what it finds.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Environment:
#   FUZZ_TARGETS    targets to run (default: all of `cargo fuzz list`)
#   FUZZ_JOBS       targets run side by side (default: number of cores)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 10)
#   FUZZ_MAX_LEN    largest input libFuzzer generates, in bytes (default 8192)
#   FUZZ_SANITIZER  none (default; the runtime forbids unsafe code) or address
#
# Each working corpus, fuzz/corpus/<target>/ (git-ignored, kept between runs), is seeded
# from ../shared/corpus/hl7 (next to the repository, when present), the test fixtures,
# fuzz/seeds/<target>/ and runtime/tests/fuzz_regressions/. Every crash, hang or
# out-of-memory input is copied to runtime/tests/fuzz_regressions/<target>-<kind>-<hash>.bin,
# which `cargo test` replays; the script then exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
timeout="${FUZZ_TIMEOUT:-10}"
max_len="${FUZZ_MAX_LEN:-8192}"
sanitizer="${FUZZ_SANITIZER:-none}"
regressions="$root/runtime/tests/fuzz_regressions"
loader_regressions="$root/compiler/tests/loader_regressions"
shared="$root/../shared/corpus/hl7"

# cargo-fuzz passes -Z flags to rustc; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Release build with debug assertions (so integer overflow panics too).
build_flags=(--release --debug-assertions --sanitizer "$sanitizer")
cargo fuzz build "${build_flags[@]}"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
mkdir -p logs

# Seed files for one target: the shared corpus and fixtures for the message parsers, the
# target's own seeds, the hand-written regression seeds that suit it and everything earlier
# runs of this target found.
seed_files() {
    local target="$1"
    case "$target" in
        parse_message | parse_batch)
            if [ -d "$shared" ]; then
                find "$shared" -maxdepth 1 -type f ! -name SOURCES.md
            fi
            find "$root/runtime/tests/fixtures" -type f -name '*.hl7'
            find "$regressions" -maxdepth 1 -type f -name 'seed-*.hl7'
            ;;
        path) find "$regressions" -maxdepth 1 -type f -name 'seed-path_*' ;;
        escape) find "$regressions" -maxdepth 1 -type f -name 'seed-escape_*' ;;
        spec_loader)
            find "$root/specs" -maxdepth 1 -type f -name '*.yaml'
            if [ -d "$root/compiler/tests/specs/broken" ]; then
                find "$root/compiler/tests/specs/broken" -type f -name '*.yaml'
            fi
            find "$loader_regressions" -maxdepth 1 -type f
            ;;
    esac
    if [ -d "seeds/$target" ]; then
        find "seeds/$target" -type f
    fi
    find "$regressions" -maxdepth 1 -type f -name "$target-*"
}

# Copies the seeds into the working corpus. Files longer than FUZZ_MAX_LEN are left out: they
# would only be truncated, and the regression test replays them whole anyway.
seed_corpus() {
    local target="$1" file
    mkdir -p "corpus/$target"
    while IFS= read -r file; do
        if [ "$(wc -c <"$file")" -le "$max_len" ]; then
            cp "$file" "corpus/$target/seed-$(sha1sum "$file" | cut -c1-16)"
        fi
    done < <(seed_files "$target")
}

dict_for() {
    case "$1" in
        path) echo "path.dict" ;;
        spec_loader) echo "yaml.dict" ;;
        *) echo "hl7.dict" ;;
    esac
}

run_target() {
    local target="$1"
    local log="logs/$target.log"
    mkdir -p "artifacts/$target"
    seed_corpus "$target"
    # A non-zero exit is expected when libFuzzer finds something; artifacts decide.
    cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" \
        -timeout="$timeout" \
        -max_len="$max_len" \
        -rss_limit_mb=2048 \
        -dict="$(dict_for "$target")" \
        -print_final_stats=1 \
        >"$log" 2>&1 || true
}

echo "fuzzing ${targets[*]} for ${seconds}s each, $jobs at a time"
# Old artifacts were already collected by a previous run.
for target in "${targets[@]}"; do
    rm -rf "artifacts/$target"
done

running=0
for target in "${targets[@]}"; do
    run_target "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

found=0
for target in "${targets[@]}"; do
    log="logs/$target.log"
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n1 || true)"
    speed="$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n1 || true)"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -n1 || true)"
    echo "$target: ${runs:-?} executions, ${speed:-?} exec/s, ${cov:-cov: ?} (log: fuzz/$log)"
    for artifact in "artifacts/$target"/*; do
        [ -f "$artifact" ] || continue
        base="$(basename "$artifact")"
        kind="${base%%-*}" # crash, timeout, oom, leak, slow-unit
        hash="$(sha1sum "$artifact" | cut -c1-12)"
        if [ "$target" = spec_loader ]; then
            dest="$loader_regressions/$target-$kind-$hash.yaml"
        else
            dest="$regressions/$target-$kind-$hash.bin"
        fi
        cp "$artifact" "$dest"
        echo "  FOUND $kind: ${dest#"$root"/}"
        found=$((found + 1))
    done
    if [ -z "$runs" ] && ! compgen -G "artifacts/$target/*" >/dev/null; then
        echo "  $target stopped without final stats or an artifact; see fuzz/$log"
        found=$((found + 1))
    fi
done

if [ "$found" -gt 0 ]; then
    echo "$found finding(s): replay with cargo test -p hl7gw-runtime --test fuzz_regressions and cargo test -p hl7gw --test loader_regressions"
    exit 1
fi
echo "no findings"
