#!/usr/bin/env bash
# Staged Office recipes ($CONFIGS, space-separated; default $CONFIG or configs/office-tiny.yaml) for 3 seeds each with
# their baselines and blends, on a GPU lent to a session, in one call of the device tool. Every config's recipe and
# SASRec runs go at once (--jobs 6 a config; the small models leave the GPU mostly idle, so the runs barely slow each
# other). ../shared does not travel: copy the data into an ignored folder and carry it.
#
#   here, once:  mkdir -p .carry && cp -r ../shared/data/minionerec .carry/ && echo /.carry/ >> .git/info/exclude
#   device tool: run(command="bash bench/gpu_recipe.sh", carry=[".carry"], timeout_s=600)
#   the larger models (issue 34): run(command='CONFIGS="configs/office-4x.yaml configs/office-16x.yaml" bash bench/gpu_recipe.sh',
#                carry=[".carry"], timeout_s=600), then the same call again on the still-warm machine: each stage resumes
#                from its last checkpoint under runs/gpu-recipe/<config name> (kept while the machine stays warm).
#   dry run on a CPU: OUT=/tmp/gpu-recipe LIMIT=120 EXTRA="sft.train.max_steps=4 sft.train.eval_steps=2
#                     train.max_steps=2 eval.max_rows=40 sft.valid_max_rows=40 sasrec.epochs=1" bash bench/gpu_recipe.sh
#
# Measured on an H200 (2026-12-04, docs/results.md "The last-item recipe"): stage 1 took 200 s a seed with 6 runs
# sharing the GPU, stage 2 ran ~11 steps/s; a whole seed is ~11 minutes, more than one call. The MPS daemon is
# started (MPS=0: not) in case time-slicing between the processes was the cost; PROBE=1 first runs
# bench/experiments/sft_nan_probe.py (which attention path gives SFT its NaN gradients there). EXTRA="key=value ..." is passed
# to every stage after its own overrides (so it wins in all of them); a shorter stage 2 alone needs a config edit.
# RECIPE_ARGS (default --no-blend-counts) goes to bench/quality.py.
#
# Results come back in $OUT: recipe_<config name>.json when a config's runs all finished, its log <config name>.log,
# and always a tarball of every config's seeds' stage records, per-row ranks, logs and training metrics (no
# weights), refreshed every 20 s, so a run stopped at its limit still brings back the stages it finished
# (unpack it and collect: python bench/quality.py --recipe --config C --collect output_dir=<unpacked>/<config name>).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
OUT=${OUT:?set OUT to the folder results go to}
LIMIT=${LIMIT:-540}          # seconds for the recipe runs (the device call's limit is 600), counted from the start
JOBS=${JOBS:-6}
WORK=${WORK:-runs/gpu-recipe}
DATA=${DATA:-.carry/minionerec/Amazon}
mkdir -p "$OUT" "$WORK"
{ date; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null; nproc
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/session.log" 2>&1
CONFIGS=${CONFIGS:-${CONFIG:-configs/office-tiny.yaml}}
RECIPE_ARGS=${RECIPE_ARGS:---no-blend-counts}   # the blend rows the recipe benchmarks report (counts-only rows skipped)
# Each config's runs go to $WORK/<config name> (its own derived data, so runs at once never race on the same files).
pack() { tar -czf "$OUT/.recipe_runs.tgz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.distcp' \
           --exclude='checkpoints' --exclude='best' --exclude='predictions.json' -C "$WORK" . 2>/dev/null \
         && mv "$OUT/.recipe_runs.tgz" "$OUT/recipe_runs.tgz"; }
# Several processes on one GPU time-slice it unless the MPS daemon lets their kernels run side by side; start it
# where it exists (root on the device machine), and say which it was.
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
  nvidia-cuda-mps-control -d >>"$OUT/session.log" 2>&1 && echo "MPS daemon started" >>"$OUT/session.log"
fi
# Optional first: which attention path gives SFT its NaN gradients on the GPU (bench/experiments/sft_nan_probe.py, ~2 min)
if [ "${PROBE:-0}" = 1 ]; then
  timeout "${PROBE_LIMIT:-150}" python3 bench/experiments/sft_nan_probe.py --steps "${PROBE_STEPS:-300}" --out "$OUT/sft_nan_probe.json" \
    data.info_file="$DATA/info/Office_Products_5_2016-10-2018-11.txt" data.index_file="$DATA/index/Office_Products.index.json" \
    data.item_file="$DATA/index/Office_Products.item.json" data.test_file="$DATA/test/Office_Products_5_2016-10-2018-11.csv" \
    data.derive_from="$DATA/valid/Office_Products_5_2016-10-2018-11.csv" data.train_file="$WORK/probe/data/train.csv" \
    data.valid_file="$WORK/probe/data/valid-holdout.csv" >>"$OUT/session.log" 2>&1
  echo "probe rc $? at +${SECONDS}s" >>"$OUT/session.log"
fi
( while sleep 20; do pack; done ) & packer=$!
pids=()
for config in $CONFIGS; do   # every config's 3 seeds at once, each config $JOBS processes
  name=$(basename "$config" .yaml); work="$WORK/$name"
  timeout "$(( LIMIT - SECONDS ))" python3 bench/quality.py --recipe --config "$config" --seeds 0 1 2 --jobs "$JOBS" \
    $RECIPE_ARGS --out "$OUT/recipe_$name.json" output_dir="$work" \
    data.info_file="$DATA/info/Office_Products_5_2016-10-2018-11.txt" data.index_file="$DATA/index/Office_Products.index.json" \
    data.item_file="$DATA/index/Office_Products.item.json" data.test_file="$DATA/test/Office_Products_5_2016-10-2018-11.csv" \
    data.derive_from="$DATA/valid/Office_Products_5_2016-10-2018-11.csv" data.train_file="$work/data/train.csv" \
    data.valid_file="$work/data/valid-holdout.csv" ${EXTRA:-} >"$OUT/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
echo "recipes done at $(date) (+${SECONDS}s)" >>"$OUT/session.log"
kill $packer 2>/dev/null; pack

# With time left before TOTAL (the device call's limit, less a margin), issue 35's first GPU questions, most
# important first: do the CUDA tests pass, and does the 0.5B GRPO step's policy phase fall at 64 prompts a
# micro-batch (host-bound) against 16?
TOTAL=${TOTAL:-575}
left() { echo $(( TOTAL - SECONDS )); }
tail_step() {  # tail_step NAME WANT_S CMD...: run when WANT_S seconds are left, under the time that is left
  local name=$1 want=$2; shift 2
  if [ "$(left)" -lt "$want" ]; then echo "=== $name skipped: $(left)s left" >>"$OUT/session.log"; return; fi
  echo "=== $name (at +${SECONDS}s)" >>"$OUT/session.log"
  timeout "$(left)" "$@" >>"$OUT/session.log" 2>&1; echo "=== $name: rc $?" >>"$OUT/session.log"
}
if [ "${DEVICE:-cuda}" = cuda ]; then
  tail_step test_gpu 60 python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py tests/test_decode.py -k "cuda or bf16"
  tail_step step_micro64 50 python3 bench/grpo_step.py --shape qwen2.5-0.5b --device cuda --micro 64 --steps 3 \
    --workdir "$WORK/step" --out "$OUT/grpo_step_qwen05_micro64.json"
  tail_step step_micro16 50 python3 bench/grpo_step.py --shape qwen2.5-0.5b --device cuda --micro 16 --steps 3 \
    --workdir "$WORK/step" --out "$OUT/grpo_step_qwen05_micro16.json"
fi
echo "=== done at +${SECONDS}s" >>"$OUT/session.log"
