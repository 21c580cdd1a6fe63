#!/usr/bin/env bash
# Submits a sweep to Slurm: an array of `pipeline run extract --shard auto` tasks (at most
# THROTTLE running at once), then one job that runs aggregate, test and report once every task
# has succeeded (--dependency=afterok). Prints the two job ids.
#
#   deploy/slurm/submit.sh PIPELINE_FILE OUT [SHARDS] [THROTTLE]
#
#   PIPELINE_FILE  the pipeline file (a path every node can read)
#   OUT            the dataset: a directory every node shares (or an object-store URL where
#                  this build's --out accepts one)
#   SHARDS         array tasks (default 16); `pipeline plan --shards N` shows the split
#   THROTTLE       tasks running at once (default 4): the `%` of --array
#
# Environment:
#   PIPELINE_BIN   the pipeline binary every node can run (default: `pipeline` on PATH here)
#   EXTRACT_ARGS   more arguments for the extract tasks, e.g. "--remote --precision f32"
#   SBATCH_ARGS    more sbatch arguments for both jobs, e.g. "--partition=cpu --account=me"
#   TASK_ARGS      more sbatch arguments for the array tasks only (default: --cpus-per-task=4)
#   FINISH_STAGES  the stages of the follow-up job (default "aggregate test report")
#   LOG_DIR        where the jobs' logs go (default: OUT/logs, or ./logs for a URL)
#   HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_ENDPOINT are passed through to the jobs.
#
# Rerunning: a task that failed or was killed loses at most its unit in progress. Submit
# the same command again: done units are skipped, so the array only computes what is
# missing. (Requeueing one task, `scontrol requeue JOBID_K`, also works: it keeps its
# array index and count. Submitting `--array=K` alone does not: a one-task array is shard
# 0/1, which is every unit.)
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
pipeline_file=$(realpath "$1")
out=$2
shards=${3:-16}
throttle=${4:-4}
bin=${PIPELINE_BIN:-$(command -v pipeline || true)}
[ -n "$bin" ] && [ -x "$bin" ] || { echo "submit.sh: set PIPELINE_BIN to the pipeline binary" >&2; exit 2; }
bin=$(realpath "$bin")
case "$out" in
    *://*) log_dir=${LOG_DIR:-$PWD/logs} ;;
    *) mkdir -p "$out"; out=$(realpath "$out"); log_dir=${LOG_DIR:-$out/logs} ;;
esac
mkdir -p "$log_dir"
here=$(dirname "$(realpath "$0")")

export PIPELINE_BIN=$bin PIPELINE_FILE=$pipeline_file PIPELINE_OUT=$out EXTRACT_ARGS=${EXTRACT_ARGS:-} FINISH_STAGES=${FINISH_STAGES:-aggregate test report}
# shellcheck disable=SC2086
array=$(sbatch --parsable --export=ALL --array="0-$((shards - 1))%${throttle}" \
    --job-name=attn-extract --output="$log_dir/extract-%A_%a.out" \
    ${TASK_ARGS:---cpus-per-task=4} ${SBATCH_ARGS:-} "$here/extract.sbatch")
array=${array%%;*}
# shellcheck disable=SC2086
finish=$(sbatch --parsable --export=ALL --dependency="afterok:${array}" --kill-on-invalid-dep=yes \
    --job-name=attn-finish --output="$log_dir/finish-%j.out" \
    ${SBATCH_ARGS:-} "$here/finish.sbatch")
finish=${finish%%;*}
echo "extract array: $array ($shards tasks, at most $throttle at once); aggregate/test/report: $finish"
echo "logs: $log_dir; progress: pipeline plan --pipeline $pipeline_file --out $out"
