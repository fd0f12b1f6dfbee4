#!/usr/bin/env bash
# GPU checks and GPU runs on a CUDA machine, in stages, each bounded in time so that a stage
# that hangs or fails does not cost the others:
#
#   bash benchmarks/gpu_session.sh setup tests bench      # the suite on CUDA, then the training benchmark
#   bash benchmarks/gpu_session.sh setup compile fast     # the step with torch.compile, then Fig. 2 in 30 s of training
#   bash benchmarks/gpu_session.sh setup supp11           # 8,000 neurons at full size (100,000 frames)
#   bash benchmarks/gpu_session.sh setup supp13           # the transmitters experiment at full size
#   bash benchmarks/gpu_session.sh setup supp14           # transmitters and receptors (psi* on all pairs)
#
# Outputs go to $OUT (default results/gpu): logs, benchmark JSON lines, and per experiment a
# tarball of its reproduce folder without the dataset (and without checkpoints over 15 MB).
# `setup` puts this checkout's src/ on PYTHONPATH, with any wheels found in .whl/ unpacked to
# /tmp/site (for a machine that cannot reach a package index: pydantic is not on the H200 image).
# MINUTES sets the training budget of the experiment stages (default 6); each stage is stopped at
# 1.5 x MINUTES + 6 min, which leaves room for simulating and evaluating (supp11 at MINUTES=4 took 6.8).
set -u -o pipefail
OUT=${OUT:-results/gpu}
MINUTES=${MINUTES:-6}
WORK=${WORK:-/tmp/circuitgnn-work}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1

pack() {  # pack EXPERIMENT: the experiment's folder without its dataset, into $OUT
    local exp=$1
    local big=(--exclude run/rollout.npz)  # rewritten by `circuitgnn evaluate`
    for f in "$WORK/$exp"/run/*.pt "$WORK/$exp"/run/*.npz; do
        [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 15000000 ] && big+=(--exclude "run/$(basename "$f")")
    done
    tar -czf "$OUT/$exp.tgz" -C "$WORK/$exp" --exclude data "${big[@]}" .
}

run_stage() {
    local stage=$1
    case $stage in
        setup)
            if ls .whl/*.whl >/dev/null 2>&1; then
                python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
            fi
            export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
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
        compile)
            timeout 300 python3 benchmarks/bench_compile.py --data "$WORK/fig2" --record "$OUT/compile.jsonl" 2>&1 | tee "$OUT/compile.log" | tail -20
            timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_trainer.py -k compile 2>&1 | tail -5
            ;;
        fast)
            timeout 200 python3 benchmarks/bench_train.py --data "$WORK/fig2" --run "$WORK/fast" --skip-edge --warm-start \
                --minutes 0.5 --log-every 1000 --compile "${COMPILE:-reduce-overhead}" --record "$OUT/train.jsonl" 2>&1 \
                | tee "$OUT/fast_${COMPILE:-reduce-overhead}.log" | grep -v "it/s" | tail -40
            ;;
        supp11|supp13|supp14)
            exp=$(python3 -c "import sys; from circuitgnn.reproduce.manifest import load_manifest; print([e.id for e in load_manifest().experiments if e.id.startswith(sys.argv[1] + '_')][0])" "$stage")
            limit=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 90 + 360))" "$MINUTES")
            timeout "$limit" python3 -m circuitgnn.cli reproduce "$exp" --work "$WORK" --results "$WORK/results" \
                --minutes "$MINUTES" --quiet 2>&1 | tee "$OUT/$exp.log" | tail -30
            local rc=$?
            if [ "$stage" = supp13 ]; then
                python3 -m circuitgnn.cli symbolic "$WORK/$exp/run" 2>&1 | tee "$OUT/$exp.symbolic.txt" | tail -30
            fi
            pack "$exp"
            return $rc
            ;;
        *)
            echo "unknown stage $stage"; return 2
            ;;
    esac
}

failed=()
for stage in "$@"; do
    echo "=== $stage $(date -u +%H:%M:%S)"
    run_stage "$stage" || failed+=("$stage")
    [ "$stage" = setup ] && [ ${#failed[@]} -gt 0 ] && break
done
echo "=== end $(date -u +%H:%M:%S)${failed[*]:+, failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
