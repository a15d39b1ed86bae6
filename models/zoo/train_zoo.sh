#!/usr/bin/env bash
# Retrain the shipped zoo models: the exact commands used for the files in models/zoo/.
#   bash models/zoo/train_zoo.sh DATA_DIR RUNS_DIR [deepglobe|inria|both]
# DATA_DIR is the shared sample data (deepglobe/, inria/); RUNS_DIR receives the runs.
# The shipped files were trained on a 2-core CPU (AMD EPYC with AVX-512 BF16), from random
# initialisation (no ImageNet weights can be downloaded here), bf16 mixed precision.
set -eu
DATA=${1:?DATA_DIR}; RUNS=${2:?RUNS_DIR}; WHICH=${3:-both}
HERE=$(cd "$(dirname "$0")" && pwd)
COMMON=(--mode g2l --backbone resnet18 --pyramid-channels 64 --segmentation-channels 32
        --focal-gamma 3 --precision bf16 --loader-workers 1)

deepglobe() {
  # Train on the six shared train ids, validate on the four crossvali ids (paper's lists).
  # Scenes read at a quarter of their resolution (2 m): on six scenes and a CPU this learns
  # far more than full resolution in the same time (docs/train.md); glgeo segment reads
  # scenes at 2 m by itself. All three stages; the zoo ships stage2/best.pt as a G->L model
  # (make_card.py --mode g2l); model.pt is the bidirectional one (68 MB).
  local out=$RUNS/deepglobe-landcover
  glgeo train --dataset deepglobe --root "$DATA/deepglobe" --split-file "$DATA/deepglobe/splits" \
    --out "$out" "${COMMON[@]/g2l/bidirectional}" --accelerator cpu \
    --scale 0.25 --global-size 256 --patch-size 256 --batch-size 3 --sub-batch 9 \
    --epochs 150,40,40 --lr 1e-3,5e-4,5e-4
}

inria() {
  # Austin crop: columns 0-699 train, 700-999 validate (prepare_inria_crop.py).
  local out=$RUNS/inria-buildings data=$RUNS/inria-data
  python "$HERE/prepare_inria_crop.py" "$DATA" "$data"
  glgeo train --dataset folder --scheme inria --root "$data" --split-file "$data/split.json" \
    --out "$out" --stage 1 "${COMMON[@]}" --global-size 256 --patch-size 256 --batch-size 1 \
    --epochs 150 --lr 1e-3
  glgeo train --dataset folder --scheme inria --root "$data" --split-file "$data/split.json" \
    --out "$out" --stage 2 "${COMMON[@]}" --global-size 256 --patch-size 256 --batch-size 1 --sub-batch 8 \
    --epochs 100 --lr 5e-4
}

case $WHICH in
  deepglobe) deepglobe ;;
  inria) inria ;;
  both) deepglobe > "$RUNS/deepglobe.log" 2>&1 & inria > "$RUNS/inria.log" 2>&1 & wait ;;
esac
