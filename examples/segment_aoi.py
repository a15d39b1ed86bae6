"""Segment only an area of interest of a real scene, and draw it (docs/img/aoi.png).

The area is a polygon drawn in WGS84 longitudes and latitudes (as areas of interest
usually come, e.g. from a web map), over a 0.6 m orthophoto tile of Joplin, Missouri in
NAD83 / UTM 15N from the sample data. ``glgeo segment --aoi`` reprojects it to the scene's
CRS; only pixels inside are segmented, the rest of the class raster is nodata, and the
patches with no pixel inside are never computed (here the default model reads the tile at
2 m, about 307 px, so its four patches all touch the area; a finer model or a smaller
area skips some: the summary says how many).

    python examples/segment_aoi.py --out-dir /tmp/aoi               # zoo model deepglobe-landcover
    python examples/segment_aoi.py --out-dir /tmp/aoi --png docs/img/aoi.png
    # the same from the command line:
    glgeo segment tile_337-9136.tif -o landcover.tif --aoi area.geojson

The figure shows the scene, the class raster inside the area (scheme colours, half
transparent) and the area's outline; it needs matplotlib and Pillow.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: A quadrilateral over the middle of tile_337-9136.tif, in WGS84 (longitude, latitude).
AREA = [(-94.49900, 37.07700), (-94.49520, 37.07610), (-94.49560, 37.07290), (-94.49850, 37.07250)]


def write_area(path: Path) -> Path:
    """The area of interest as a GeoJSON polygon in WGS84."""
    ring = [list(p) for p in AREA] + [list(AREA[0])]
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "area of interest"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }
    path.write_text(json.dumps(collection))
    return path


def render(scene: Path, classes: Path, area: Path, png: Path) -> Path:
    """Scene, classes inside the area (half transparent) and the area's outline, as a PNG."""
    import geopandas as gpd
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import rasterio
    from matplotlib.patches import Patch

    from glgeo.styles import scheme_from_tags

    with rasterio.open(scene) as src:
        rgb = src.read([1, 2, 3], out_shape=(3, 512, 512))
        bounds, crs = src.bounds, src.crs
    with rasterio.open(classes) as src:
        ids = src.read(1, out_shape=(512, 512))
        scheme = scheme_from_tags(src.tags())
    colours = np.zeros((256, 4))
    for c in scheme.classes:
        colours[c.id] = [*(v / 255 for v in c.color), 0.55]
    extent = (bounds.left, bounds.right, bounds.bottom, bounds.top)
    fig, ax = plt.subplots(figsize=(6.0, 5.4), dpi=90)
    ax.imshow(np.moveaxis(rgb, 0, -1), extent=extent)
    ax.imshow(colours[ids], extent=extent, interpolation="nearest")
    gpd.read_file(area).to_crs(crs).boundary.plot(ax=ax, color="black", linewidth=1.5)
    present = [c for c in scheme.classes if (ids == c.id).any()]
    ax.legend(handles=[Patch(color=colours[c.id][:3], label=c.name) for c in present] + [
        Patch(facecolor="none", edgecolor="black", label="area of interest (WGS84)")], loc="lower left", fontsize=8)
    ax.set_title(f"glgeo segment --aoi: {scene.name}", fontsize=10)
    ax.set_xlabel(f"easting, m ({crs.to_string()})", fontsize=8)
    ax.set_ylabel("northing, m", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    # a 128-colour palette keeps the figure small enough for the repository
    from PIL import Image

    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=128).save(png, optimize=True)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("GLGEO_SAMPLE_DATA", DEFAULT_DATA))
    parser.add_argument("--scene", type=Path, default=data / "joplin" / "tile_337-9136.tif")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--model", default="deepglobe-landcover", help="zoo name or checkpoint file")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--png", type=Path, default=None, help="also draw the result here (needs matplotlib)")
    args = parser.parse_args(argv)

    import glgeo
    from glgeo.areas import format_class_areas
    from glgeo.errors import GlgeoError
    from glgeo.inference import InferenceSettings

    if not args.scene.exists():
        print(f"scene {args.scene} not found: pass --scene or set GLGEO_SAMPLE_DATA", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    area = write_area(args.out_dir / "area.geojson")
    out = args.out_dir / f"{args.scene.stem}_aoi.tif"
    try:
        summary = glgeo.segment(args.scene, out, model=args.model, aoi=area, overwrite=True,
                                settings=InferenceSettings(device=args.device))
    except GlgeoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stats = summary.stats
    print(f"{out}: {stats.computed} of {stats.patches} patches computed ({stats.skipped_nodata} outside the area), "
          f"{summary.nodata_pixels:,} px outside left as nodata")
    for line in format_class_areas(summary.classes, summary.area_unit):
        print(line)
    if args.png is not None:
        print(f"figure: {render(args.scene, out, area, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
