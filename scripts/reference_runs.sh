#!/usr/bin/env bash
# Regenerate the committed reference results: run records of the runnable strategies on the
# offline scenarios (Fashion-MNIST from /usr/share/datasets/fashion-mnist) with seeds 0, 1, 2,
# then results/reference/LEADERBOARD.md from them (apart from a user's own runs, which go to
# results/runs/... by default and never enter the reference set). Settings are reduced
# (subsampled data, 1 epoch) so the whole set finishes in about 10 minutes on 2 CPU cores;
# every record carries its config and its deviations, and the leaderboard marks them, so
# nobody mistakes these for reproductions.
#
# usage: scripts/reference_runs.sh [extra Hydra overrides for every run]
#   env: RESULTS (default: results/reference)   CLBENCH (default: clbench)   SEEDS (default: 0,1,2)
#        ONLY (a regex: rerun only the plan lines matching it, e.g. ONLY=clr)
# Edit PLAN to add strategies: one line per scenario, "scenario strategy,strategy,... [overrides]".
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=${RESULTS:-results/reference}
CLBENCH=${CLBENCH:-clbench}
SEEDS=${SEEDS:-0,1,2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

# Reduced settings (the record and the leaderboard mark each as a deviation from the paper):
DATA="scenario.train_per_class=500 scenario.test_per_class=200"
BASE="$DATA strategy.epochs=2 strategy.optimizer=adam strategy.lr=0.001 strategy.batch_size=32"
CLR="$DATA strategy.epochs=10 strategy.lr_step=4 strategy.patience=4"
DKVB="$DATA strategy.epochs=5 strategy.num_codebooks=64 strategy.pairs_per_codebook=512 strategy.encoder=identity"
PROBE="$DATA strategy.epochs=100 strategy.encoder=identity"
PLAN=(
  "split_fmnist naive,joint,er $BASE"
  "split_fmnist_ti naive,joint,er $BASE"
  "split_fmnist_ti clr $CLR"
  "split_fmnist dkvb $DKVB"
  "split_fmnist linear_probe,mlp_probe $PROBE"
  "split_fmnist_stream naive,er scenario.train_per_class=500 scenario.test_per_class=200 strategy.optimizer=adam strategy.lr=0.001 strategy.batch_size=32 scenario.repeats=2"
  "mlfmnist naive,er strategy.epochs=2 strategy.optimizer=adam strategy.lr=0.001 strategy.batch_size=32 scenario.train_mosaics=1500 scenario.test_mosaics=500"
)
if [ -n "${ONLY:-}" ]; then  # e.g. ONLY=clr: rerun just the plan lines that mention it
  mapfile -t PLAN < <(printf '%s\n' "${PLAN[@]}" | grep -E -- "${ONLY}")
fi
COMMON=(logger=none progress=false device=cpu "results_dir=$RESULTS")

for line in "${PLAN[@]}"; do
  read -r scenario strategies overrides <<<"$line"
  # Fresh records for what is rerun (older ones would only show up as superseded).
  for strategy in ${strategies//,/ }; do
    rm -f "$RESULTS/runs/$scenario/$strategy/"*.json
  done
  for strategy in ${strategies//,/ }; do
    # One sweep per strategy: Hydra composes a sweep's base config with the non-swept
    # overrides, which must fit the strategy (a strategy list would compose them on the default).
    echo "== $scenario: $strategy, seeds $SEEDS" >&2
    # shellcheck disable=SC2086  # $overrides is a list of key=value words
    "$CLBENCH" run -m "scenario=$scenario" "strategy=$strategy" "seed=$SEEDS" "${COMMON[@]}" $overrides "$@"
  done
done
rm -rf "$RESULTS/sweeps"  # Hydra's per-job folders of the sweeps above; the records are what counts

"$CLBENCH" leaderboard "$RESULTS" --format md --out "$RESULTS/LEADERBOARD.md"
echo "wrote $RESULTS/LEADERBOARD.md (HTML: $CLBENCH leaderboard $RESULTS --format html --out leaderboard.html)" >&2
