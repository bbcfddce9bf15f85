#!/bin/sh
# Wraps the fixture sequences into payloads for the fuzzer's corpus.
set -e
cd "$(dirname "$0")"
mkdir -p corpus/pulser
for f in ../tests/fixtures/*.json; do
  n=$(basename "$f" .json)
  printf '{"sequence": %s, "runs": 5, "seed": 1, "variables": {"omega_max": 1.0}, "outputs": ["counts","probabilities","occupation"]}' "$(cat "$f")" > "corpus/pulser/$n.json"
done
