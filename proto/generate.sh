#!/usr/bin/env bash
# Generates static protobuf code (ES module + .d.ts) into proto/gen/ from the .proto contract.
# Code imports proto/gen/atlas.js (no .proto loading at run time), so `tsc` fails whenever the
# schema and the code disagree.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p gen
tmp=$(mktemp -d gen/.tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# -r: a root of our own, so another generated bundle in the process cannot clash with ours.
# Only what the pipeline uses: create/encode/decode (no reflection, JSON conversion or services).
npx --no-install pbjs -t static-module -w es6 -r atlas -d \
  --no-service --no-verify --no-convert --no-delimited --no-typeurl \
  -o "$tmp/atlas.js" topology.proto blockchain_metadata.proto
# The bus contract and the vendored Hermes messages it carries: a root of their own, because
# hermes/blockchain_metadata.proto reuses our package and message name with more fields.
npx --no-install pbjs -t static-module -w es6 -r bus -d \
  --no-service --no-verify --no-convert --no-delimited --no-typeurl \
  -o "$tmp/bus.js" bus.proto

# pbts types u64 fields with long.js's class, imported with `import = require` from `long`, which is
# protobufjs's dependency, not ours: where it does not resolve, skipLibCheck silently turns those
# fields into `any`. protobufjs's own Long interface ({low, high, unsigned}) describes the same
# run-time values and needs nothing else.
long_import='import Long = require("long");'
for bundle in atlas bus; do
  grep -qxF "$long_import" "$tmp/$bundle.d.ts" || {
    echo "generate.sh: pbts output changed, the Long fix-up no longer applies" >&2
    exit 1
  }
  sed -i "s|^${long_import}\$|import type { Long } from \"protobufjs/minimal.js\";|" "$tmp/$bundle.d.ts"
done

mv "$tmp/atlas.js" "$tmp/atlas.d.ts" "$tmp/bus.js" "$tmp/bus.d.ts" gen/
