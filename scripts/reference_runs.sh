#!/usr/bin/env bash
# Regenerate the committed reference results: run records of the runnable strategies on the
# offline scenarios (Fashion-MNIST from /usr/share/datasets/fashion-mnist) with seeds 0, 1, 2,
# then results/LEADERBOARD.md from them. Settings are reduced (subsampled data, 1 epoch) so the
# whole set finishes in about 10 minutes on 2 CPU cores; every record carries its config and
# its deviations, and the leaderboard marks them, so nobody mistakes these for reproductions.
#
# usage: scripts/reference_runs.sh [extra Hydra overrides for every run]
#   env: RESULTS (default: results)   CLBENCH (default: clbench)   SEEDS (default: 0,1,2)
#        REDUCED (the per-run settings; default: 500 train / 200 test images per class, 1 epoch)
# Edit PLAN to add strategies: one line per scenario, "scenario strategy,strategy,... [overrides]".
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=${RESULTS:-results}
CLBENCH=${CLBENCH:-clbench}
SEEDS=${SEEDS:-0,1,2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

REDUCED=${REDUCED:-"scenario.train_per_class=500 scenario.test_per_class=200 strategy.epochs=1"}
PLAN=(
  "split_fmnist naive,joint,er $REDUCED"
  "split_fmnist_ti naive,joint,er $REDUCED"
)
COMMON=(logger=none progress=false device=cpu "results_dir=$RESULTS")

for line in "${PLAN[@]}"; do
  read -r scenario strategies overrides <<<"$line"
  # Fresh records for what is rerun (older ones would only show up as superseded).
  for strategy in ${strategies//,/ }; do
    rm -f "$RESULTS/runs/$scenario/$strategy/"*.json
  done
  echo "== $scenario: $strategies, seeds $SEEDS" >&2
  # shellcheck disable=SC2086  # $overrides is a list of key=value words
  "$CLBENCH" run -m "scenario=$scenario" "strategy=$strategies" "seed=$SEEDS" "${COMMON[@]}" $overrides "$@"
done
rm -rf "$RESULTS/sweeps"  # Hydra's per-job folders of the sweeps above; the records are what counts

"$CLBENCH" leaderboard "$RESULTS" --format md --out "$RESULTS/LEADERBOARD.md"
echo "wrote $RESULTS/LEADERBOARD.md (HTML: $CLBENCH leaderboard $RESULTS --format html --out leaderboard.html)" >&2
