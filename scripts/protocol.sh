#!/usr/bin/env bash
# The papers' protocol on the real data of ../shared, 3 seeds, both papers' presets and ours, with the baselines:
# one ablate.py sweep per dataset (REINFORCE sampler; U-Net and unsupervised-AE baselines trained
# on the same split in each evaluation). Writes <out>/<dataset>/methods.md (method x metric, mean
# ± std over seeds, published numbers beside) and summary.md. Re-running resumes.
#
#   bash scripts/protocol.sh                         # paper settings: 256 px, 2000 updates
#   IMAGE_SIZE=128 UPDATES=400 WORKERS=2 bash scripts/protocol.sh    # the CPU run of the closing note
#
# Environment: SHARED (default ../shared beside the checkout), OUT (sweeps/protocol), IMAGE_SIZE,
# UPDATES, SEEDS ("0 1 2"), PRESETS ("chu2020 noghredeh2025 ours"), AGENTS ("reinforce"), WORKERS (1),
# DATASETS ("bottle crackforest"), EXTRA (more ablate.py flags, e.g. "--unet-steps 300").
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
OUT=${OUT:-sweeps/protocol}
IMAGE_SIZE=${IMAGE_SIZE:-256}
UPDATES=${UPDATES:-2000}
SEEDS=${SEEDS:-0 1 2}
PRESETS=${PRESETS:-chu2020 noghredeh2025 ours}
AGENTS=${AGENTS:-reinforce}
WORKERS=${WORKERS:-1}
DATASETS=${DATASETS:-bottle crackforest}
common=(--agents $AGENTS --presets $PRESETS --seeds $SEEDS --image-size "$IMAGE_SIZE"
        --updates "$UPDATES" --workers "$WORKERS" --overlays 8 ${EXTRA:-})
for ds in $DATASETS; do
  start=$(date +%s)
  case "$ds" in
    crackforest)
      python ablate.py --dataset crackforest --data-root "$SHARED/datasets/crackforest" \
        --categories crackforest --include-unannotated --out "$OUT/crackforest" "${common[@]}" ;;
    *)  # an MVTec AD category
      python ablate.py --dataset mvtec --data-root "$SHARED/datasets/mvtec_ad" \
        --categories "$ds" --out "$OUT/$ds" "${common[@]}" ;;
  esac
  echo "$ds: $(( $(date +%s) - start )) s wall on $(python -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")')" \
    | tee -a "$OUT/wall_times.txt"
done
