#!/usr/bin/env bash
# Data-parallel training speed (issue: data-parallel training): ResNet-20,
# global batch 128, ours (bench/dp_train.c: NAME_set_allreduce with
# MPI_Allreduce, under mpirun) beside PyTorch DistributedDataParallel (gloo,
# bench/ddp_train.py), at every RANKSxTHREADS in CONFIGS (default
# "1x1 2x1 1x2": on a 2-core machine, one rank alone, two ranks of one
# thread, one rank of two threads). Prints one markdown row per run, with the
# time per step inside the all-reduce hook and the scaling efficiency
# against 1 rank (images/s ÷ (ranks × images/s of 1x1), threads alike).
#
#   bash bench/dp_bench.sh [CONFIGS] [SECONDS]     # needs mpicc/mpirun and .venv
set -euo pipefail
cd "$(dirname "$0")/.."
configs=${1:-"1x1 2x1 1x2"}
seconds=${2:-10}
py=${BENCH_VENV:-.venv}/bin/python
tool=${RESNET_COMPILE:-.build/release/resnet-compile}
[ -x "$tool" ] || tool=.build/debug/resnet-compile
work=$(mktemp -d "${TMPDIR:-/tmp}/dp_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$tool" -o "$work/gen" >/dev/null
mpicc -std=c11 -O3 -march=native -fopenmp -I"$work/gen" -DNET=resnet20 -DUNET=RESNET20 '-DNET_HEADER="resnet20.h"' \
    bench/dp_train.c "$work/gen/resnet20.c" -o "$work/dp_train" -lm
echo "| ranks × threads | ours: images/s | ours: ms/step (median, fastest) | ours: all-reduce ms/step (calls) | ours: scaling | PyTorch DDP: images/s | PyTorch: ms/step | PyTorch: scaling | ours ÷ PyTorch |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
field() { sed -n "s/.* $1 \([^ ]*\).*/\1/p" <<<"$2"; }
base_ours=""; base_torch=""
for c in $configs; do
    r=${c%x*}; t=${c#*x}
    ours=$(OMP_NUM_THREADS=$t mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$r" "$work/dp_train" 128 "$seconds")
    torch=$(OMP_NUM_THREADS=$t "$py" bench/ddp_train.py --ranks "$r" --threads "$t" --batch 128 --seconds "$seconds")
    oi=$(field images_per_s "$ours"); ti=$(field images_per_s "$torch")
    [ -n "$base_ours" ] || { base_ours=$oi; base_torch=$ti; }
    eff() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f%%", 100 * a / (b * n) }'; }
    echo "| $r × $t | $oi | $(field median_ms "$ours") ($(field fastest_ms "$ours")) | $(field allreduce_ms_per_step "$ours") ($(field calls_per_step "$ours")) | $(eff "$oi" "$base_ours" $((r * t))) | ${ti:-–} | $(field median_ms "$torch") | $( [ -n "$ti" ] && eff "$ti" "$base_torch" $((r * t)) || echo –) | $( [ -n "$ti" ] && awk -v a="$oi" -v b="$ti" 'BEGIN { printf "%.2f×", a / b }' || echo –) |"
    echo "<!-- ours: $ours; PyTorch: $torch -->"
done
