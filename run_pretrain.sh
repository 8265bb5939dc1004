#!/usr/bin/env bash
# Pretrain Kaleido-BERT on one node (all visible GPUs, MirroredStrategy).
#
#   ./run_pretrain.sh CONFIG DATA_DIR MODEL_DIR [BERT_DIR] [--set key=value ...]
#   ./run_pretrain.sh kaleido_bert/pretrain data/kaleido/train runs/kaleido \
#       uncased_L-12_H-768_A-12
#
# Rerunning the same command resumes from the last checkpoint. Switches:
#   ./run_pretrain.sh ... --set train.mixed_precision=true      float16 compute
#   TF_XLA_FLAGS=--tf_xla_auto_jit=2 ./run_pretrain.sh ...      XLA auto-clustering
#   CUDA_VISIBLE_DEVICES=0,1,2,3 ./run_pretrain.sh ...          a subset of the GPUs
# For several nodes, set TF_CONFIG on each (MultiWorkerMirroredStrategy is used
# automatically when it names more than one worker).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
config=$1 data=$2 model_dir=$3
shift 3
init=()
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  init=(--init-from "$1")
  shift
fi
exec kaleido-tf pretrain --config "$config" --data "$data" --model-dir "$model_dir" "${init[@]}" "$@"
