#!/usr/bin/env bash
# Compiler speed: time from an evaluated model file to written C, for the
# deepest zoo networks (the part after swiftc has built and run the model
# file). Prints the compiler's own timing (-v) over 5 runs, then the whole
# command's wall time including the model-file evaluation.
#
#   bash bench/compile_speed.sh          (builds the release compiler first)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >/dev/null
tool=.build/release/resnet-compile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/zoo.swift" <<'SWIFT'
import ResNetDSL
let a = try ResNet.imagenet(depth: 152)
let b = try ResNet.cifar(depth: 1202)
SWIFT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for net in resnet152 resnet1202; do
  for i in 1 2 3 4 5; do
    "$tool" "$work/zoo.swift" --network "$net" -o "$work/out" -v 2>&1 | grep 'compiled'
  done
  start=$(date +%s.%N)
  "$tool" "$work/zoo.swift" --network "$net" -o "$work/out" >/dev/null
  end=$(date +%s.%N)
  echo "$net: whole command incl. evaluating the model file: $(echo "$end - $start" | bc) s"
  echo "$net: C lines $(wc -l < "$work/out/$net.c"), gcc -O2 build: $( { /usr/bin/time -f %e gcc -std=c11 -O2 -fopenmp -c "$work/out/$net.c" -o "$work/out/$net.o"; } 2>&1 ) s"
done
