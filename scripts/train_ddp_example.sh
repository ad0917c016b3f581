#!/usr/bin/env bash
# Multi-GPU ReID training with torchrun + DistributedDataParallel (one process per GPU).
#
#   scripts/train_ddp_example.sh NUM_GPUS DATA_ROOT [extra `mot-reid train` arguments...]
#   e.g. scripts/train_ddp_example.sh 4 ~/data/Market-1501-v15.09.15 --output runs/reid/market_4gpu
#
# torchrun starts NUM_GPUS copies of `python -m mot_reid.cli train ...` and sets RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the training loop reads them (mot_reid/reid/distributed.py):
# each process binds to GPU LOCAL_RANK, joins an NCCL process group, and trains on
# data.ids_per_batch / NUM_GPUS whole identities x data.images_per_id images of every global PK batch
# (so the recipe's batch, and its learning rate, mean the same on any number of GPUs; ids_per_batch
# must be a multiple of NUM_GPUS, with at least 2 identities per GPU). BatchNorm layers, the BNNeck
# included, become SyncBatchNorm. Rank 0 alone logs, evaluates and writes checkpoints; `--resume`
# works the same as on one GPU (every rank loads the checkpoint).
#
# Several machines: run the same command on every node with
#   torchrun --nnodes=N --nproc_per_node=G --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
#            --rdzv_id=reid_run -m mot_reid.cli train ...
# The installed console script works as well: torchrun --nproc_per_node=G "$(command -v mot-reid)" train ...
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 NUM_GPUS DATA_ROOT [mot-reid train arguments...]" >&2
    exit 2
fi
gpus=$1
data=$2
shift 2

# One OpenMP thread per process: the GPU does the work, and N processes x all cores oversubscribe the CPU.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec torchrun --standalone --nproc_per_node="$gpus" -m mot_reid.cli train \
    --config softmax_triplet_with_center --data "$data" "$@"
