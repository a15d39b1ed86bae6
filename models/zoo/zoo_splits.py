"""Record in each zoo card the scenes its model trained on and chose checkpoints on.

``glgeo train`` records its split in every checkpoint, and ``glgeo evaluate`` flags scores
on those scenes as no validation. The shipped zoo files were trained before it did, so
their cards carry the split instead (``"split"``: dataset kind, train and val scene names),
rebuilt here from the commands of ``train_zoo.sh``:

* ``deepglobe-landcover``: the stage-1 runs' split of ``deepglobe_256`` (the paper's split
  file, half the crossvali ids held out with 180902, 19627 and 2774) and the stage-2 runs'
  six full-resolution train scenes and 855 (their checkpoint choice); the upsampled copies
  of the later stage-2 runs carry the same ids.
* ``inria-buildings``: ``split_refit.json`` of ``prepare_buildings.py`` (train and val parts
  trained on together; no checkpoint choice).

``make_card.py`` writes the split of a checkpoint that records one; this script is for the
files that do not. Usage: python models/zoo/zoo_splits.py DATA_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glgeo.datasets import open_dataset
from glgeo.splits import make_split

ZOO = Path(__file__).parent
FULL_RESOLUTION = {"train": ["104113", "172307", "266", "3484", "482365", "6399"], "val": ["855"]}
BUILDINGS_TRAIN = ["austin_train", "joplin_337-9136_0_0", "joplin_337-9136_512_0", "joplin_337-9136_0_512",
                   "austin_val", "joplin_337-9136_512_512"]


def landcover_split(data: Path) -> dict:
    copies = open_dataset("deepglobe", data / "deepglobe_256")
    split = make_split("deepglobe", copies.names, split_file=data / "deepglobe" / "splits", holdout_share=0.5,
                       holdout_scenes=("180902", "19627", "2774"))
    return {"kind": "deepglobe", "train": sorted(set(split.train) | set(FULL_RESOLUTION["train"])),
            "val": sorted(set(split.val) | set(FULL_RESOLUTION["val"]))}


def main(data_dir: str) -> None:
    data = Path(data_dir)
    splits = {"deepglobe-landcover": landcover_split(data),
              "inria-buildings": {"kind": "folder", "train": BUILDINGS_TRAIN, "val": []}}
    for name, split in splits.items():
        path = ZOO / f"{name}.json"
        card = json.loads(path.read_text())
        card["split"] = split
        path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"{name}: {len(split['train'])} train, {len(split['val'])} val scenes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python models/zoo/zoo_splits.py DATA_DIR")
    main(sys.argv[1])
