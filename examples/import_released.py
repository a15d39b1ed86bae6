"""Convert the GLNet authors' released DeepGlobe checkpoints and segment a scene with them.

Usage:
    python examples/import_released.py GLOBAL.pth G2L.pth SCENE.tif OUT.tif            # G->L
    python examples/import_released.py GLOBAL.pth --l2g L2G.pth SCENE.tif OUT.tif      # G<->L

The released files are the ``.pth`` files of the authors' repository (global model,
global-to-local model, local-to-global model). The converted glgeo checkpoint is written
beside OUT.tif as ``glnet-deepglobe.pt``, as ``glgeo import-glnet`` writes it (the same
footprint, 2448 px, and resolution, 50 cm); neither it nor OUT.tif may exist yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

from glgeo.errors import GlgeoError
from glgeo.models import import_released, save_released
from glgeo.schemes import get_scheme


def main(argv: list[str]) -> int:
    if len(argv) == 4:
        global_pth, g2l_pth, scene, out = argv
        l2g_pth = None
    elif len(argv) == 5 and argv[1] == "--l2g":
        global_pth, _, l2g_pth, scene, out = argv
        g2l_pth = None
    else:
        print(__doc__)
        return 2
    checkpoint = Path(out).with_name("glnet-deepglobe.pt")
    try:
        for target in (checkpoint, Path(out)):  # before the conversion, so a rerun is refused up front
            if target.exists():
                raise GlgeoError(f"{target} exists; remove it or choose another OUT")
        scheme = get_scheme("deepglobe")
        model = import_released(global_pth, g2l_pth, l2g_pth, scheme)
        sources = {"global": global_pth, **({"l2g": l2g_pth} if l2g_pth else {"g2l": g2l_pth})}
        save_released(checkpoint, model, scheme, sources=sources)
        print(f"converted {model.config.mode} GLNet -> {checkpoint}")

        import glgeo

        summary = glgeo.segment(scene, out, model=str(checkpoint))
    except GlgeoError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
