"""GLNet r50 at the machine's limit: glgeo's defaults against the released code's way.

For each mode (G -> L and bidirectional) and each scene (one 2448 x 2448 DeepGlobe sample
image and a ~25 MP GeoTIFF tiled from the real samples), two configurations run in the
same benchmark, each in a fresh Python process so its peak resident memory is its own:

* ``reference``: the way the released code computes: one global image for the whole
  scene (``footprint=0``), patch logits upsampled nearest and summed, fp32, NCHW tensors,
  BatchNorms not folded, batches of 6 patches, no read-ahead (reading and the network take turns), the bidirectional pass-1
  results kept in memory (the released code keeps the whole local features there; the
  reference keeps their ``n_classes``-channel share of the aggregation), and the shared
  heads' convs run on the concatenated, upsampled global crops (glgeo's low-resolution ext
  path switched off);
* ``glgeo``: ``InferenceSettings()`` as it is, nothing tuned here;
* ``glgeo-bf16`` (CPU): the defaults with ``precision="bf16"``;
* ``one-window`` (not run unless named): the defaults with ``footprint=0``: the whole scene
  is one window with one global image, as the released code and glgeo before December 2026
  saw it (fewer patches on a scene larger than the checkpoint's footprint, a coarser view),
  glgeo's blend, upsampling and precision otherwise;
* ``recompute`` (bidirectional only): the defaults, but pass 2 runs the local branch again
  instead of reading pass 1's kept shares (``l2g_reuse="recompute"``), to measure both;
* ``compile`` (not run unless named): the defaults with ``compile=True``; its time
  includes compiling (on CPUs ``repeat`` is 1).

Printed per run: seconds, images/s (DeepGlobe) or MP/s, peak RSS (and on CUDA peak GPU
memory), the time split (read waited on, network, blend, write, other) and the share of the
network, then the pixel agreement of each class raster with the reference's. Then the
agreement of fp32 and bf16 (CPU; on CUDA the ``auto`` precision), glgeo's defaults
otherwise, over the DeepGlobe samples: the rule for the default precision is the fastest
one that keeps at least 99 %.

Weights: random weights with the released initialisation (heads ~N(0, 0.01)) give nearly
tied logits, which makes any precision comparison meaningless, so the checkpoints are
released-format state dicts of fan-in scaled random tensors (decisive logits), converted
with :func:`glgeo.models.checkpoint.import_released` exactly as a user with the authors'
files would. Speed and memory do not depend on the weights.

On a CUDA machine the same table is made on the GPU (``--devices cuda``), images/s are
taken over ``--gpu-repeat`` warm runs, and the peak GPU memory of a ~30 MP scene is
printed (the paper claims under 2 GB).

Examples::

    python benchmarks/speed.py                       # everything, CPU (and CUDA if present)
    python benchmarks/speed.py --scenes deepglobe --modes g2l --agreement-samples 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _segment_benchmark():
    spec = importlib.util.spec_from_file_location("bench_segment", REPO / "benchmarks" / "segment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ checkpoints
def released_style_state(keys: dict, seed: int, n_class: int = 7):
    """A state dict shaped like the authors' files with fan-in scaled random values."""
    from glgeo.models.testing import random_released_state

    return random_released_state(keys, seed, n_class)


def make_checkpoints(keys_file: Path, folder: Path, patch: int = 508, global_size: int = 508) -> dict[str, Path]:
    """glgeo checkpoints (g2l, bidirectional) imported from released-format files."""
    import torch

    from glgeo.models.checkpoint import import_released, save_released
    from glgeo.schemes import DEEPGLOBE

    out = {"g2l": folder / "released_r50_g2l.pt", "bidirectional": folder / "released_r50_bidirectional.pt"}
    if all(p.is_file() for p in out.values()):
        return out
    keys = json.loads(keys_file.read_text())
    files = {}
    for seed, role in enumerate(("global", "g2l", "l2g")):
        files[role] = folder / f"released_{role}.pth"
        torch.save(released_style_state(keys, seed), files[role])
    for mode, l2g in (("g2l", None), ("bidirectional", files["l2g"])):
        model = import_released(files["global"], files["g2l"], l2g, DEEPGLOBE)
        # as `glgeo import-glnet` writes it: 0-255 input, the 2448 px context footprint and
        # 0.5 m of DeepGlobe, so the glgeo rows run what a user of the authors' files gets
        save_released(out[mode], model, DEEPGLOBE, global_size=global_size, patch_size=patch)
    for p in files.values():
        p.unlink()
    return out


# --------------------------------------------------------------- one run (child)
def settings_for(config: str, device: str, precision: str | None = None):
    from glgeo.inference import InferenceSettings

    if config == "reference":
        return InferenceSettings(
            device=device, precision="fp32", channels_last=False, fold_batchnorm=False, batch_size=6, prefetch=0,
            l2g_reuse="memory", blend="sum", logit_upsampling="nearest", footprint=0,
        )
    if config == "glgeo-bf16":
        precision = "bf16"
    if config == "recompute":
        return InferenceSettings(device=device, l2g_reuse="recompute")
    if config == "one-window":
        return InferenceSettings(device=device, footprint=0)
    if config == "compile":
        return InferenceSettings(device=device, compile=True)
    if precision is not None:
        return InferenceSettings(device=device, precision=precision)
    return InferenceSettings(device=device)


def _released_heads() -> None:
    """The shared heads as the released code computes them (concatenate upsampled crops)."""
    import glgeo.models.heads as heads

    heads._worth_low_res = lambda ext, size: False


def run_one(spec: dict) -> dict:
    import torch

    from glgeo.device import peak_resident_mb
    from glgeo.segmentation import load_model, segment

    if spec["config"] == "reference":
        _released_heads()
    settings = settings_for(spec["config"], spec["device"], spec.get("precision"))
    cuda = spec["device"].startswith("cuda")
    runs = []
    for i in range(spec.get("repeat", 1)):
        # Loaded before the clock starts and handed over with no other reference, as when
        # the command loads it: segment() then drops the fp32 original once its inference
        # copy exists.
        handed = [load_model(spec["model"])]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        summary = segment(spec["scene"], spec["out"], model=handed.pop(), settings=settings, overwrite=True)
        if cuda:
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start, summary))
    warm = runs[1:] or runs
    seconds = sum(r[0] for r in warm) / len(warm)
    summary = warm[-1][1]
    t = summary.stats.timings
    result = {
        "seconds": seconds,
        "first_seconds": runs[0][0],
        "megapixels": summary.height * summary.width / 1e6,
        "patches": summary.stats.patches,
        "computed": summary.stats.computed,
        "precision": summary.stats.precision,
        "l2g_reuse": summary.stats.l2g_reuse,
        "peak_rss_mb": peak_resident_mb(),
        "split": {
            "read": t.global_read + t.read_wait,
            "network": t.global_network + t.network,
            "blend": t.blend,
            "write": t.write,
            "engine_total": t.total,
            "read_busy": t.global_read + t.read,
        },
        "settings": {k: v for k, v in settings.__dict__.items() if k in ("precision", "channels_last", "batch_size", "prefetch", "l2g_reuse")},
    }
    if cuda:
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def agreement_one(spec: dict) -> dict:
    """fp32 against ``spec["precision"]``, glgeo's defaults otherwise, on each image."""
    import numpy as np
    import rasterio

    from glgeo.segmentation import load_model, segment

    checkpoint = load_model(spec["model"])
    rows = []
    for image in spec["images"]:
        maps, seconds, precisions = {}, {}, {}
        for precision in ("fp32", spec["precision"]):
            out = Path(spec["out_dir"]) / f"agree_{precision}.tif"
            start = time.perf_counter()
            summary = segment(image, out, model=checkpoint, settings=settings_for("glgeo", spec["device"], precision), overwrite=True)
            seconds[precision] = time.perf_counter() - start
            precisions[precision] = summary.stats.precision
            with rasterio.open(out) as src:
                maps[precision] = src.read(1)
        rows.append({
            "image": Path(image).name,
            "agreement": float(np.mean(maps["fp32"] == maps[spec["precision"]])),
            "precision": precisions[spec["precision"]],
            "seconds_fp32": seconds["fp32"],
            "seconds_other": seconds[spec["precision"]],
        })
    return {"rows": rows}


# ------------------------------------------------------------------- parent
def child(payload: dict, kind: str = "--one") -> dict | None:
    proc = subprocess.run([sys.executable, __file__, kind, json.dumps(payload)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"# run failed ({payload.get('config', kind)}): {' | '.join(tail)}", flush=True)
        return None
    return json.loads(lines[0][len("RESULT "):])


def agreement(a: Path, b: Path) -> float:
    """Share of pixels with the same class in two class rasters (read in row blocks)."""
    import numpy as np
    import rasterio

    same = total = 0
    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        for _, window in ra.block_windows(1):
            x, y = ra.read(1, window=window), rb.read(1, window=window)
            same += int(np.count_nonzero(x == y))
            total += x.size
    return same / total


def cpu_description() -> str:
    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line + " "
                break
    except OSError:
        pass
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f" {f} " in flags]
    return f"{name} ({', '.join(extras) or 'no native bf16'})"


def row(device: str, mode: str, scene: str, config: str, r: dict) -> str:
    s = r["split"]
    total = r["seconds"]
    other = max(0.0, total - s["read"] - s["network"] - s["blend"] - s["write"])
    rate = f"{1 / total:6.3f} img/s" if scene == "deepglobe" else f"{r['megapixels'] / total:6.3f} MP/s "
    gpu = f"{r['peak_gpu_mb']:8.0f}" if "peak_gpu_mb" in r else f"{'-':>8}"
    return (
        f"{device:5} {mode:13} {scene:9} {config:10} {r['precision']:5} {r['patches']:5d} {total:8.1f} {rate} "
        f"{r['peak_rss_mb']:8.0f} {gpu} | {s['read']:6.1f} {s['network']:7.1f} {s['blend']:6.1f} {s['write']:6.1f} "
        f"{other:6.1f} | {100 * s['network'] / total:5.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="g2l,bidirectional")
    parser.add_argument("--scenes", default="deepglobe,25mp", help="deepglobe and/or 25mp")
    parser.add_argument("--devices", default=None, help="cpu and/or cuda (default: cpu, plus cuda when available)")
    parser.add_argument("--configs", default="reference,glgeo,glgeo-bf16,recompute",
                        help="reference, glgeo (InferenceSettings() defaults), glgeo-bf16 (defaults + bf16; CPU only), "
                             "recompute (defaults, bidirectional pass 2 recomputing the local branch), "
                             "one-window (defaults, the whole scene one context window), compile")
    parser.add_argument("--image", default="104113", help="DeepGlobe sample id for the one-image runs")
    parser.add_argument("--agreement-samples", type=int, default=10, help="DeepGlobe samples for fp32 vs bf16 (0: skip)")
    parser.add_argument("--agreement-modes", default="g2l", help="modes for the precision agreement")
    parser.add_argument("--gpu-repeat", type=int, default=5, help="CUDA: runs per configuration (the first is warm-up)")
    parser.add_argument("--gpu-scene-mp", type=float, default=30.0, help="CUDA: scene size for the peak GPU memory")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--keys", type=Path, default=REPO.parent / "shared" / "glnet" / "original_checkpoint_keys.json",
                        help="the released checkpoints' key/shape list")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench_speed")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--agree", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    if args.agree:
        print("RESULT " + json.dumps(agreement_one(json.loads(args.agree))), flush=True)
        return

    import torch

    if not args.keys.is_file():
        sys.exit(f"the released checkpoints' key list {args.keys} is missing (pass --keys)")
    bench_segment = _segment_benchmark()
    images = bench_segment.sample_images(args.data)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = make_checkpoints(args.keys, args.workdir)
    chosen = [p for p in images if p.name.startswith(args.image)] or images[:1]
    scenes = {}
    for name in args.scenes.split(","):
        if name == "deepglobe":
            scenes[name] = chosen[0]
        elif name.endswith("mp"):
            scenes[name] = bench_segment.build_scene(float(name[:-2]), images, args.workdir)
        else:
            sys.exit(f"unknown scene {name!r}: use deepglobe or <N>mp")

    load = os.getloadavg()
    print(f"# {platform.node()}: {cpu_description()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""), flush=True)
    print(f"# deepglobe = {scenes['deepglobe'].name} (2448 x 2448)" if "deepglobe" in scenes else "#", flush=True)
    print("# time split (s): read = time the network waited for reading, network = global + local branches, "
          "other = scene inspection, writer setup, COG conversion (the checkpoint is loaded before the clock starts)", flush=True)
    print(f"{'dev':5} {'mode':13} {'scene':9} {'config':10} {'prec':5} {'pat':>5} {'seconds':>8} {'rate':>11} "
          f"{'RSS MB':>8} {'GPU MB':>8} | {'read':>6} {'network':>7} {'blend':>6} {'write':>6} {'other':>6} | {'net %':>6}",
          flush=True)
    results = []
    for device in devices:
        repeat = args.gpu_repeat if device.startswith("cuda") else 1
        for mode in args.modes.split(","):
            for scene_name, scene in scenes.items():
                outs = {}
                for config in args.configs.split(","):
                    if config == "glgeo-bf16" and device != "cpu":
                        continue  # on CUDA the defaults already run bf16/fp16
                    if config == "recompute" and mode != "bidirectional":
                        continue
                    out = args.workdir / f"out_{device}_{mode}_{scene_name}_{config}.tif"
                    spec = {"scene": str(scene), "out": str(out), "model": str(checkpoints[mode]),
                            "config": config, "device": device, "repeat": repeat}
                    r = child(spec)
                    if r is None:
                        continue
                    outs[config] = out
                    print(row(device, mode, scene_name, config, r), flush=True)
                    results.append({"device": device, "mode": mode, "scene": scene_name, "config": config, **r})
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=2))
                for config, out in outs.items():
                    if config == "reference" or "reference" not in outs:
                        continue
                    share = agreement(outs["reference"], out)
                    print(f"#   {device} {mode} {scene_name}: reference vs {config} agree on {100 * share:.2f} % of pixels", flush=True)
                    results.append({"device": device, "mode": mode, "scene": scene_name, "config": config, "agreement": share})
            if device.startswith("cuda") and args.gpu_scene_mp:
                scene = bench_segment.build_scene(args.gpu_scene_mp, images, args.workdir)
                spec = {"scene": str(scene), "out": str(args.workdir / "out_gpu_scene.tif"), "model": str(checkpoints[mode]),
                        "config": "glgeo", "device": device, "repeat": 1}
                r = child(spec)
                if r is not None:
                    print(f"#   {device} {mode} {r['megapixels']:.1f} MP scene: peak GPU memory {r['peak_gpu_mb']:.0f} MB, "
                          f"{r['seconds']:.1f} s", flush=True)
                    results.append({"device": device, "mode": mode, "scene": f"{args.gpu_scene_mp:g}mp", "config": "glgeo", **r})

        if args.agreement_samples:
            for mode in args.agreement_modes.split(","):
                spec = {"model": str(checkpoints[mode]), "device": device, "out_dir": str(args.workdir),
                        "precision": "bf16" if device == "cpu" else "auto",
                        "images": [str(p) for p in images[: args.agreement_samples]]}
                r = child(spec, "--agree")
                if r is None:
                    continue
                shares = [x["agreement"] for x in r["rows"]]
                for x in r["rows"]:
                    print(f"#   {device} {mode} {x['image']}: {x['precision']} vs fp32 agree on {100 * x['agreement']:.2f} % "
                          f"({x['seconds_other']:.1f} s vs {x['seconds_fp32']:.1f} s)", flush=True)
                print(f"# {device} {mode}: {r['rows'][0]['precision']} agrees with fp32 on "
                      f"{100 * min(shares):.2f} % (worst) / {100 * sum(shares) / len(shares):.2f} % (mean) of pixels "
                      f"over {len(shares)} DeepGlobe samples", flush=True)
                results.append({"device": device, "mode": mode, "precision_agreement": r["rows"]})
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    load = os.getloadavg()
    print(f"# load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)


if __name__ == "__main__":
    main()
