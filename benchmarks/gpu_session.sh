#!/usr/bin/env bash
# GPU checks and GPU runs on a CUDA machine, in stages, each bounded in time so that a stage
# that hangs or fails does not cost the others:
#
#   bash benchmarks/gpu_session.sh setup tests bench      # the suite on CUDA, then the training benchmark
#   bash benchmarks/gpu_session.sh setup supp11           # 8,000 neurons at full size (100,000 frames)
#   bash benchmarks/gpu_session.sh setup supp13           # the transmitters experiment at full size
#
# Outputs go to $OUT (default results/gpu): logs, benchmark JSON lines, and per experiment a
# tarball of its reproduce folder without the dataset (and without checkpoints over 15 MB).
# `setup` installs this checkout without dependencies into the machine's Python, plus any
# wheels found in .whl/ (for a machine that cannot reach a package index).
# MINUTES sets the training budget of the experiment stages (default 6).
set -u
OUT=${OUT:-results/gpu}
MINUTES=${MINUTES:-6}
WORK=${WORK:-/tmp/circuitgnn-work}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1

pack() {  # pack EXPERIMENT: the experiment's folder without its dataset, into $OUT
    local exp=$1
    local big=()
    for f in "$WORK/$exp"/run/*.pt "$WORK/$exp"/run/*.npz; do
        [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 15000000 ] && big+=(--exclude "run/$(basename "$f")")
    done
    tar -czf "$OUT/$exp.tgz" -C "$WORK/$exp" --exclude data "${big[@]}" .
}

for stage in "$@"; do
    echo "=== $stage $(date -u +%H:%M:%S)"
    case $stage in
        setup)
            if ls .whl/*.whl >/dev/null 2>&1; then
                python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
            fi
            python3 -m pip install -q --no-index --no-deps --no-build-isolation . || exit 1
            nvidia-smi -L
            python3 -c "import torch, circuitgnn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
            ;;
        tests)
            timeout 300 python3 -m pytest -q -p no:cacheprovider -n 6 tests 2>&1 | tee "$OUT/tests.log" | tail -40
            ;;
        bench)
            timeout 330 python3 benchmarks/bench_train.py --data "$WORK/fig2" --run "$WORK/bench_fig2" \
                --minutes 3 --log-every 5000 --record "$OUT/train.jsonl" 2>&1 | tee "$OUT/bench.log" | grep -v "it/s" | tail -40
            ;;
        supp11|supp13|supp14)
            exp=$(python3 -c "import sys; from circuitgnn.reproduce.manifest import load_manifest; print([e.id for e in load_manifest().experiments if e.id.startswith(sys.argv[1] + '_')][0])" "$stage")
            timeout $(( ${MINUTES%.*} * 60 + 240 )) python3 -m circuitgnn.cli reproduce "$exp" --work "$WORK" --results "$WORK/results" \
                --minutes "$MINUTES" --quiet 2>&1 | tee "$OUT/$exp.log" | tail -30
            [ "$stage" = supp13 ] && python3 -m circuitgnn.cli symbolic "$WORK/$exp/run" 2>&1 | tee "$OUT/$exp.symbolic.txt" | tail -30
            pack "$exp"
            ;;
        *)
            echo "unknown stage $stage"; exit 2
            ;;
    esac
done
echo "=== end $(date -u +%H:%M:%S)"
