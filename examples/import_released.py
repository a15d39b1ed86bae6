"""Convert the GLNet authors' released DeepGlobe checkpoints and segment a scene with them.

Usage:
    python examples/import_released.py GLOBAL.pth G2L.pth [L2G.pth] SCENE.tif OUT.tif

The released files are the ``.pth`` files of the authors' repository (global model,
global-to-local model and, for G<->L, local-to-global model). The converted glgeo checkpoint
is written beside OUT.tif as ``glnet-deepglobe.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from glgeo.models import import_released, save_checkpoint
from glgeo.models.checkpoint import InputScaling
from glgeo.schemes import get_scheme


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(__doc__)
        return 2
    *released, scene, out = argv
    global_pth, g2l_pth, l2g_pth = (released + [None])[:3]
    scheme = get_scheme("deepglobe")
    model = import_released(global_pth, g2l_pth, l2g_pth, scheme)
    checkpoint = Path(out).with_name("glnet-deepglobe.pt")
    save_checkpoint(checkpoint, model, scheme, InputScaling(0, 255), global_size=508, patch_size=508, focal_gamma=3.0)
    print(f"converted {model.config.mode} GLNet -> {checkpoint}")

    import glgeo

    summary = glgeo.segment(scene, out, model=str(checkpoint), overwrite=True)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
