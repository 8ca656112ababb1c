#!/usr/bin/env bash
# Everything a session lent a GPU should measure, in one call of the device tool (under 10 min on
# an H100/H200), most important first, each step under its own time limit so that one slow step
# cannot eat the rest. Results land in $OUT (the device tool brings them back); copy them into
# bench/results/ and docs/gpu.md afterwards.
#
#   here, once:  git worktree add --detach runs/bench-grpo-step/code-612cd7c 612cd7c   # the code as of issue 21
#   device tool: run(command="bash bench/gpu_session.sh", carry=["runs/bench-grpo-step/code-612cd7c"], timeout_s=590)
#   dry run on a CPU (tiny shape, a minute or two):
#                OUT=/tmp/gpu-dry DEVICE=cpu SHAPE=tiny BIG=tiny bash bench/gpu_session.sh
#
# The device machine has torch, transformers, safetensors, numpy, pyyaml and tqdm installed, so
# grporec runs from the checkout (PYTHONPATH) without a pip install.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
OUT=${OUT:?set OUT to the folder results go to}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-qwen2.5-0.5b}
BIG=${BIG:-qwen2.5-1.5b}
OLD=${OLD:-612cd7c}
PY=${PY:-python3}
mkdir -p "$OUT"
LOG="$OUT/session.log"
started=$(date +%s)

step() {  # step NAME LIMIT_S CMD...: one measurement, its output in the log, its status in one line
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "=== $name (limit ${limit}s, at +$((t0 - started))s)" | tee -a "$LOG"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc $rc in $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}

{ date; uname -a; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
} >>"$LOG" 2>&1

# 1. correctness on CUDA (the bf16 item-set rule has never run on a GPU)
step test_gpu 90 $PY -m pytest -q -x -p no:cacheprovider tests/test_gpu.py tests/test_decode.py -k "cuda or bf16"

# 2. issue 21's headline: the GRPO step, old code and this, side by side (speed-up, MFU per phase, memory)
if [ -d "runs/bench-grpo-step/code-$OLD" ]; then
  step grpo_step_compare 220 $PY bench/grpo_step.py --shape "$SHAPE" --device "$DEVICE" --compare "$OLD" --rounds 2 \
    --workdir runs/bench-grpo-step --out "$OUT/grpo_step_${SHAPE}_compare.json"
else
  echo "=== grpo_step_compare skipped: runs/bench-grpo-step/code-$OLD was not carried" | tee -a "$LOG"
  step grpo_step 150 $PY bench/grpo_step.py --shape "$SHAPE" --device "$DEVICE" --out "$OUT/grpo_step_${SHAPE}.json"
fi

# 2b. issue 35: where the policy phase's time goes (host against device time per phase, the top operations),
#     at micro-batches of 16 and of the whole batch (64)
for m in 16 64; do
  step "grpo_step_profile_micro$m" 60 $PY bench/grpo_step.py --shape "$SHAPE" --device "$DEVICE" --micro "$m" --steps 2 \
    --profile --workdir runs/bench-grpo-step/shared --out "$OUT/grpo_step_${SHAPE}_profile_micro$m.json"
done

# 2c. issue 35: train.micro_batch_prompts=0, the largest micro-batch that fits (from the 64-prompt decode batch),
#     for the larger shape, where 64 prompts may not fit: the size it settles on, its step time and peak memory
step grpo_step_big_auto 90 $PY bench/grpo_step.py --shape "$BIG" --device "$DEVICE" --micro 0 --steps 2 \
  --out "$OUT/grpo_step_${BIG}_auto.json"

# 3. issue 22's memory table, GPU rows (full vs LoRA x checkpointing x G = 16, 8, 32; memory.py writes its
#    JSON after every setting, so a step stopped at its limit still brings back the rows it finished)
step memory 140 $PY bench/memory.py --shape "$SHAPE" --device "$DEVICE" --groups 16 8 32 --out "$OUT/memory_${SHAPE}_${DEVICE}.json"

# 4. the larger shape: the new code's step alone (its MFU and memory), then its memory rows at G = 16
step grpo_step_big 70 $PY bench/grpo_step.py --shape "$BIG" --device "$DEVICE" --out "$OUT/grpo_step_${BIG}.json"
step memory_big 50 $PY bench/memory.py --shape "$BIG" --device "$DEVICE" --groups 16 --out "$OUT/memory_${BIG}_${DEVICE}.json"

echo "=== done in $(( $(date +%s) - started ))s" | tee -a "$LOG"
