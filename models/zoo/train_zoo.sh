#!/usr/bin/env bash
# Retrain the shipped zoo models: the exact commands used for the files in models/zoo/.
#   bash models/zoo/train_zoo.sh DATA_DIR RUNS_DIR [deepglobe|inria|both]
# DATA_DIR is the shared sample data (deepglobe/, deepglobe_256/, inria/, joplin/); RUNS_DIR
# receives the runs.
# The shipped files were trained on 2-core CPUs without ImageNet weights (none can be
# downloaded here): deepglobe-landcover from random initialisation in bf16 mixed precision
# (AMD EPYC with AVX-512 BF16), inria-buildings in fp32 (AMD EPYC with AVX2 only), its
# backbones starting from the shipped deepglobe-landcover's (the zoo file, not a retrained one).
set -eu
DATA=${1:?DATA_DIR}; RUNS=${2:?RUNS_DIR}; WHICH=${3:-both}
HERE=$(cd "$(dirname "$0")" && pwd)
COMMON=(--mode g2l --backbone resnet18 --pyramid-channels 64 --segmentation-channels 32
        --focal-gamma 3 --precision bf16 --loader-workers 0 --accelerator cpu
        --color-jitter 0.2 --crop-jitter 0.3 --balance 0.5)

deepglobe() {
  # Stage 1, the global branch, on the 166 train ids of the paper's split among the 256 px
  # DeepGlobe copies (4.78 m: what the global branch sees of a DeepGlobe image); checkpoint
  # chosen on half of their crossvali ids, the other half (with 180902, 19627, 2774) held out.
  local g=$RUNS/deepglobe-global out=$RUNS/deepglobe-landcover
  glgeo train --dataset deepglobe --root "$DATA/deepglobe_256" --gsd 4.78125 \
    --split-file "$DATA/deepglobe/splits" --holdout-share 0.5 --holdout-scenes 180902,19627,2774 \
    --out "$g" --stage 1 "${COMMON[@]}" --global-size 256 --patch-size 256 --batch-size 8 \
    --epochs 100 --lr 1e-3
  # Stage 2, the local branch and the aggregation, on six full-resolution train scenes read
  # at 2 m; checkpoint chosen on the seventh (855); the four crossvali scenes held out.
  echo '{"train": ["104113", "172307", "266", "3484", "482365", "6399"], "val": ["855"],
    "test": ["180902", "19627", "2774", "794214"]}' > "$RUNS/deepglobe-fullres-split.json"
  glgeo train --dataset deepglobe --root "$DATA/deepglobe" --split-file "$RUNS/deepglobe-fullres-split.json" \
    --init "$g/stage1/best.pt" --out "$out" --stage 2 "${COMMON[@]}" --scale 0.25 \
    --global-size 256 --patch-size 256 --batch-size 2 --sub-batch 9 --epochs 60 --lr 5e-4
  # Then both stages fine-tuned with mosaics (--mosaic 0.5: half the samples are a window of
  # a 2 x 2 mosaic of four scenes), so the views cut across scenes as glgeo segment's
  # context windows cut across a large scene; same splits, same checkpoint choice. (The
  # shipped file's run started from the previous zoo file, this model.pt in float16.)
  local gm=$RUNS/deepglobe-global-mosaic outm=$RUNS/deepglobe-landcover-mosaic
  glgeo train --dataset deepglobe --root "$DATA/deepglobe_256" --gsd 4.78125 \
    --split-file "$DATA/deepglobe/splits" --holdout-share 0.5 --holdout-scenes 180902,19627,2774 \
    --init "$out/model.pt" --out "$gm" --stage 1 "${COMMON[@]}" --mosaic 0.5 --global-size 256 --patch-size 256 \
    --batch-size 8 --epochs 30 --lr 3e-4
  glgeo train --dataset deepglobe --root "$DATA/deepglobe" --split-file "$RUNS/deepglobe-fullres-split.json" \
    --init "$gm/stage1/best.pt" --out "$outm" --stage 2 "${COMMON[@]}" --mosaic 0.5 --scale 0.25 \
    --global-size 256 --patch-size 256 --batch-size 2 --sub-batch 9 --epochs 30 --lr 2.5e-4
  # Then stage 2 once more, on a set that adds the 256 px copies of the stage-1 train ids
  # (upsampled to 2448 px) to the six full-resolution scenes (each under COPIES names), with a
  # class-weighted loss: on the six scenes alone the aggregation learned barren land from
  # one scene and never predicted it elsewhere. Checkpoint chosen on 855 and the stage-1
  # validation ids (upsampled); the held-out scenes stay out (prepare_landcover.py).
  local gb=$RUNS/deepglobe-global-balanced lc=$RUNS/deepglobe-stage2-data outb=$RUNS/deepglobe-landcover-balanced
  glgeo train --dataset deepglobe --root "$DATA/deepglobe_256" --gsd 4.78125 \
    --split-file "$DATA/deepglobe/splits" --holdout-share 0.5 --holdout-scenes 180902,19627,2774 \
    --init "$outm/model.pt" --out "$gb" --stage 1 "${COMMON[@]}" --mosaic 0.5 --loss-balance 0.5 \
    --global-size 256 --patch-size 256 --batch-size 8 --epochs 30 --lr 3e-4
  python "$HERE/prepare_landcover.py" "$DATA" "$lc" "$gb/split.json" 24
  glgeo train --dataset deepglobe --root "$lc" --split-file "$lc/split.json" \
    --init "$gb/stage1/best.pt" --out "$outb" --stage 2 "${COMMON[@]}" --mosaic 0.5 --loss-balance 0.5 --scale 0.25 \
    --global-size 256 --patch-size 256 --batch-size 2 --sub-batch 9 --epochs 12 --limit-train-batches 15 --lr 2.5e-4
  # Last, the global branch once more with cut consistency (--cut-consistency: it also learns
  # from random cuts of its views, half of them straddling a 3 x 3 mosaic of the batch's
  # views, and is asked for the same classes where view and cut overlap), so a place keeps
  # its class wherever a scene or a context window is cut; then stage 2 again on the same
  # set. Same splits and checkpoint choice. (The shipped file's run started from the
  # previous zoo file, $outb/model.pt in float16.)
  local gc=$RUNS/deepglobe-global-cut outc=$RUNS/deepglobe-landcover-cut
  glgeo train --dataset deepglobe --root "$DATA/deepglobe_256" --gsd 4.78125 \
    --split-file "$DATA/deepglobe/splits" --holdout-share 0.5 --holdout-scenes 180902,19627,2774 \
    --init "$outb/model.pt" --out "$gc" --stage 1 "${COMMON[@]}" --mosaic 0.5 --loss-balance 0.5 --cut-consistency 10 \
    --global-size 256 --patch-size 256 --batch-size 8 --epochs 30 --lr 3e-4
  glgeo train --dataset deepglobe --root "$lc" --split-file "$lc/split.json" \
    --init "$gc/stage1/best.pt" --out "$outc" --stage 2 "${COMMON[@]}" --mosaic 0.5 --loss-balance 0.5 --scale 0.25 \
    --global-size 256 --patch-size 256 --batch-size 2 --sub-batch 9 --epochs 12 --limit-train-batches 15 --lr 2.5e-4
  # the shipped file: python models/zoo/make_card.py deepglobe-landcover "$outc/model.pt" ... (docs/train.md)
}

inria() {
  # The Austin crop and the Joplin tiles cut at 0.6 m (prepare_buildings.py): train on
  # Austin rows 0-499 columns 0-699 and three quarters of tile_337-9136; the recipe checked
  # on Austin columns 700-999 of those rows and the fourth quarter; Austin rows 500-699 and
  # tile_1361-9136 held out (the card reports on them); tile_337-10160 not used (its
  # footprints miss its largest buildings). The backbones start from deepglobe-landcover's.
  # Shipped file: fp32 on a 2-core AVX2 CPU.
  local data=$RUNS/buildings-data g=$RUNS/buildings-global l=$RUNS/buildings-g2l
  local rg=$RUNS/buildings-refit-global out=$RUNS/inria-buildings
  local flags=(--dataset folder --scheme inria --root "$data"
               --mode g2l --backbone resnet18 --pyramid-channels 64 --segmentation-channels 32 --focal-gamma 3
               --precision fp32 --loader-workers 0 --accelerator cpu --color-jitter 0.2 --crop-jitter 0.3
               --balance 0.5 --loss-balance 0.5 --global-size 256 --patch-size 256 --batch-size 1 --sub-batch 9)
  python "$HERE/prepare_buildings.py" "$DATA" "$data"
  # 1. the recipe, validated: its best checkpoint against the previous model on the val part
  glgeo train "${flags[@]}" --split-file "$data/split.json" --out "$g" --backbone-weights deepglobe-landcover \
    --stage 1 --epochs 60 --lr 1e-3
  glgeo train "${flags[@]}" --split-file "$data/split.json" --out "$l" --init "$g/stage1/best.pt" \
    --stage 2 --epochs 110 --lr 3e-4
  # 2. the same recipe on train + val (split_refit.json: no validation, the last epoch kept)
  glgeo train "${flags[@]}" --split-file "$data/split_refit.json" --out "$rg" --backbone-weights deepglobe-landcover \
    --stage 1 --epochs 60 --lr 1e-3
  glgeo train "${flags[@]}" --split-file "$data/split_refit.json" --out "$out" --init "$rg/stage1/best.pt" \
    --stage 2 --epochs 110 --lr 3e-4
  # the shipped file: python models/zoo/make_card.py inria-buildings "$out/model.pt" ... (docs/train.md)
}

pin() {
  # One core and one thread per run: two runs of two threads each on two cores stall each
  # other (a stage-1 step took 3.5-4 s that way against 1 s on a core of its own, here).
  export OMP_NUM_THREADS=1
  if command -v taskset >/dev/null; then taskset -pc "$1" "$BASHPID" >/dev/null; fi
}

case $WHICH in
  deepglobe) deepglobe ;;
  inria) inria ;;
  both) (pin 0; deepglobe) > "$RUNS/deepglobe.log" 2>&1 & (pin 1; inria) > "$RUNS/inria.log" 2>&1 & wait ;;
esac
