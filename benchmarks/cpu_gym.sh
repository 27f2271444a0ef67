#!/usr/bin/env bash
# The CPU-scale table (issue 16): BC, TD3+BC, IQL, AWAC, ReBRAC with their default (D4RL gym)
# hyperparameters on the generated suites' medium and medium-replay levels, 3 seeds in one
# program per cell, 10,000 updates, evaluation every 2,500 updates (10 episodes), checkpoints
# every 2,500 updates. Rerunning resumes: finished cells are kept, interrupted ones continue from
# their last checkpoint. Then the report (IQM / CIs) over everything finished.
#
#   bash benchmarks/cpu_gym.sh [ENV ...]        # default: halfcheetah hopper walker2d
#   CPU_GYM_WORKERS=4 bash benchmarks/cpu_gym.sh   # trials at once (default 2)
#
# The suites come from (see benchmarks/results/cpu-gym/README.md):
#   offrl datasets make ENV --levels random,medium,medium-replay,expert --budget 60000 --size 50000 \
#       --seed 0 --data-dir /work/suites/data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${OFFRL_SUITES_DIR:-/work/suites/data}
OUT=benchmarks/results/cpu-gym
# One XLA thread per trial process: on a shared, oversubscribed CPU this keeps throughput fair.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
envs=("$@"); [ ${#envs[@]} -eq 0 ] && envs=(halfcheetah hopper walker2d)
for env in "${envs[@]}"; do
  if ! offrl datasets list --data-dir "$DATA_DIR" | grep -q "$env-medium-replay-v0"; then
    echo "skipping $env: its suite is not in $DATA_DIR yet"; continue
  fi
  nice -n 10 offrl bench --algos bc,td3bc,iql,awac,rebrac \
    --datasets "$env-medium-v0,$env-medium-replay-v0" --seeds 3 --steps 10000 --eval-every 2500 \
    --eval-episodes 10 --checkpoint-every 2500 --data-dir "$DATA_DIR" --out "$OUT/$env" --workers "${CPU_GYM_WORKERS:-2}" --no-progress || true
done
nice -n 10 offrl report "$OUT" --out "$OUT" --format md,html --bands none
