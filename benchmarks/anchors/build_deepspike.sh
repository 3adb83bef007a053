#!/usr/bin/env bash
# Compile the authors' engine (a checkout of the public petered/DeepSpike) and distspike's driver for it.
#   benchmarks/anchors/build_deepspike.sh DEEPSPIKE_CHECKOUT [OUT_DIR]
# OUT_DIR defaults to DEEPSPIKE_CHECKOUT/distspike-build. Needs a JDK (javac 11 or newer), nothing else.
# benchmarks/bench_inprocess.py --deepspike OUT_DIR then runs it beside distspike, and
# benchmarks/anchors/anchor_rows.py --build OUT_DIR trains it under distspike's protocol; by hand:
#   taskset -c 0 java -cp OUT_DIR/classes nl.uva.deepspike.mlp.DeepSpikeDriver data=DIR weights=FILE rule=sgd
set -euo pipefail
src=${1:?usage: build_deepspike.sh DEEPSPIKE_CHECKOUT [OUT_DIR]}
out=${2:-$src/distspike-build}
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$src/src/main/java/nl/uva/deepspike" ] || { echo "build_deepspike.sh: $src is not a DeepSpike checkout" >&2; exit 2; }
mkdir -p "$out/classes"
find "$src/src/main/java" -name '*.java' > "$out/sources.txt"
ls "$here"/*.java >> "$out/sources.txt"  # DeepSpikeDriver (speed), DeepSpikeTrainer (anchor_rows.py)
# one engine file imports a JDK-internal class it never uses; exporting that package lets it compile
javac -nowarn -encoding UTF-8 --add-exports java.xml/com.sun.org.apache.xpath.internal.operations=ALL-UNNAMED \
      -d "$out/classes" @"$out/sources.txt"
echo "$out"
