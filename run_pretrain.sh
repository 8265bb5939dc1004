#!/usr/bin/env bash
# Pretrain Kaleido-BERT on one node (all visible GPUs, MirroredStrategy) or on several.
#
#   ./run_pretrain.sh [--workers H1:P1,H2:P2,... --index I] CONFIG DATA_DIR MODEL_DIR \
#       [BERT_DIR] [--set key=value ...]
#   ./run_pretrain.sh kaleido_bert/pretrain data/kaleido/train runs/kaleido \
#       uncased_L-12_H-768_A-12
#
# Rerunning the same command resumes from the last checkpoint; SIGTERM saves a
# checkpoint and exits with status 143 (requeue and rerun the same command).
# Switches:
#   ./run_pretrain.sh ... --set train.mixed_precision=true      float16 compute
#   ./run_pretrain.sh ... --set train.jit_compile=true          XLA-compiled step
#   CUDA_VISIBLE_DEVICES=0,1,2,3 ./run_pretrain.sh ...          a subset of the GPUs
# Two nodes (MultiWorkerMirroredStrategy): the same command on each, with its index;
# DATA_DIR and MODEL_DIR on a file system both nodes read (only index 0 writes):
#   node1$ ./run_pretrain.sh --workers node1:12345,node2:12345 --index 0 \
#            kaleido_bert/pretrain /shared/data/train /shared/runs/kaleido BERT_DIR
#   node2$ ./run_pretrain.sh --workers node1:12345,node2:12345 --index 1 \
#            kaleido_bert/pretrain /shared/data/train /shared/runs/kaleido BERT_DIR
# (--workers/--index only set TF_CONFIG; setting TF_CONFIG yourself does the same.)
set -euo pipefail
workers="" index=""
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --index) index=$2; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ] || { [ -n "$workers" ] && [ -z "$index" ]; }; then
  sed -n '2,21p' "$0" >&2
  exit 2
fi
if [ -n "$workers" ]; then
  hosts=\"${workers//,/\",\"}\"
  export TF_CONFIG="{\"cluster\": {\"worker\": [$hosts]}, \"task\": {\"type\": \"worker\", \"index\": $index}}"
fi
config=$1 data=$2 model_dir=$3
shift 3
init=()
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  init=(--init-from "$1")
  shift
fi
exec kaleido-tf pretrain --config "$config" --data "$data" --model-dir "$model_dir" "${init[@]}" "$@"
