#!/usr/bin/env bash
# Compile the authors' engine (a checkout of the public petered/DeepSpike) and distspike's driver for it.
#   benchmarks/anchors/build_deepspike.sh DEEPSPIKE_CHECKOUT [OUT_DIR]
# OUT_DIR defaults to DEEPSPIKE_CHECKOUT/distspike-build. Needs a JDK (javac 11 or newer), nothing else.
# benchmarks/bench_inprocess.py --deepspike OUT_DIR then runs it beside distspike, and
# benchmarks/anchors/anchor_rows.py --build OUT_DIR trains it under distspike's protocol; by hand:
#   taskset -c 0 java -cp OUT_DIR/classes nl.uva.deepspike.mlp.DeepSpikeDriver data=DIR weights=FILE rule=sgd
#   build_deepspike.sh --exact CHECKOUT OUT_DIR builds a probe instead: a copy of the checkout with
#   deepspike_exact.patch applied (ties to the lower unit, float64 herding potentials), not the authors' engine.
set -euo pipefail
exact=0
if [ "${1:-}" = "--exact" ]; then exact=1; shift; fi
src=${1:?usage: build_deepspike.sh [--exact] DEEPSPIKE_CHECKOUT [OUT_DIR]}
out=${2:-$src/distspike-build}
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$src/src/main/java/nl/uva/deepspike" ] || { echo "build_deepspike.sh: $src is not a DeepSpike checkout" >&2; exit 2; }
mkdir -p "$out/classes"
if [ "$exact" = 1 ]; then
  rm -rf "$out/patched-src" && mkdir -p "$out/patched-src" && cp -r "$src/src" "$out/patched-src/"
  patch -s -p1 -d "$out/patched-src" < "$here/deepspike_exact.patch"
  src="$out/patched-src"
fi
find "$src/src/main/java" -name '*.java' > "$out/sources.txt"
ls "$here"/*.java >> "$out/sources.txt"  # DeepSpikeDriver (speed), DeepSpikeTrainer (anchor_rows.py)
# one engine file imports a JDK-internal class it never uses; exporting that package lets it compile
javac -nowarn -encoding UTF-8 --add-exports java.xml/com.sun.org.apache.xpath.internal.operations=ALL-UNNAMED \
      -d "$out/classes" @"$out/sources.txt"
echo "$out"
