#!/usr/bin/env bash
# Regenerates tests/python_hl7/expected/FILE.jsonl: python-hl7's decoded values (extract.py)
# for every valid corpus file, so a Rust test can compare without Python.
#
# Usage: tests/python_hl7/record.sh [CORPUS_DIR]    (default ../shared/corpus/hl7 from the repo root)
# Needs python-hl7 0.4.5 exactly: pip install hl7==0.4.5 (extract.py refuses other versions).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
corpus="${1:-$root/../shared/corpus/hl7}"
python="${PYTHON:-python3}"

names="$("$python" "$here/compare.py" "$corpus" --list-valid)"
mkdir -p "$here/expected"
# Drop recordings of files that are no longer valid corpus files.
for old in "$here"/expected/*.jsonl; do
    [ -e "$old" ] || continue
    base="$(basename "$old" .jsonl)"
    grep -qxF "$base" <<<"$names" || rm -f "$old"
done
count=0
while IFS= read -r name; do
    [ -n "$name" ] || continue
    "$python" "$here/extract.py" "$corpus/$name" >"$here/expected/$name.jsonl.tmp"
    mv "$here/expected/$name.jsonl.tmp" "$here/expected/$name.jsonl"
    count=$((count + 1))
done <<<"$names"
echo "recorded $count files in tests/python_hl7/expected/"
