"""Measure a zoo card's reports again, in place, with the engine's current defaults.

A change of ``glgeo segment``'s defaults changes every map, so the figures a card quotes
must be measured again. This evaluates the shipped file (``NAME.pt``) on each report's
scenes as ``make_card.py`` did (``glgeo.evaluate.evaluate_model``, CPU, fp32, the same
scenes, the same majority class), then rewrites the figures in ``NAME.json`` (``metrics``,
``majority_baseline``, ``reports``, ``evaluation``) and the report sections of ``NAME.md``
(from the first report's heading to the "Fine-tune it" line). The weights, their sha256
and the rest of the card stay as they are: edit its notes by hand where they quote figures.
A report measured with ``--tta`` is measured with it again.

Usage:
    python models/zoo/remeasure_card.py NAME --dataset DATASET [--scheme SCHEME] \
        --report LABEL ROOT [--report LABEL ROOT ...] [--report-gsd LABEL METRES ...] [--zoo DIR]

(``--report`` gives the folder each report's scenes are in, by the report's label in the
card; every report of the card needs one.)
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from glgeo.datasets import open_dataset
from glgeo.evaluate import evaluate_model
from glgeo.inference import InferenceSettings
from glgeo.models import load_checkpoint
from glgeo.schemes import get_scheme

from make_card import ZOO, section, summarise, tta_summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--scheme", default=None)
    p.add_argument("--report", nargs=2, action="append", metavar=("LABEL", "ROOT"), required=True)
    p.add_argument("--report-gsd", nargs=2, action="append", metavar=("LABEL", "METRES"), default=[])
    p.add_argument("--zoo", type=Path, default=ZOO, help="The folder of NAME.pt, NAME.json and NAME.md (default: this one).")
    args = p.parse_args()

    card_path, text_path = args.zoo / f"{args.name}.json", args.zoo / f"{args.name}.md"
    card = json.loads(card_path.read_text())
    roots = dict(args.report)
    gsds = {label: float(metres) for label, metres in args.report_gsd}
    labels = [r["label"] for r in card["reports"]]
    if set(roots) != set(labels) or set(gsds) - set(labels):
        raise SystemExit(f"give --report for each of the card's reports, by label: {labels}")
    ck = load_checkpoint(args.zoo / f"{args.name}.pt")
    scheme = get_scheme(args.scheme) if args.scheme else ck.scheme
    majority = scheme.names.index(card["majority_baseline"]["class"])
    settings = InferenceSettings(device="cpu", precision="fp32")
    summaries = []
    for old in card["reports"]:
        label, names = old["label"], old["scenes"]
        data = open_dataset(args.dataset, roots[label], scheme)
        start = time.perf_counter()
        report = evaluate_model(ck, data, names, settings=settings, gsd=gsds.get(label))
        seconds = time.perf_counter() - start
        tta = None
        if "tta" in old:
            tta = tta_summary(evaluate_model(ck, data, names, settings=settings, tta=True, gsd=gsds.get(label)), scheme)
        summaries.append(summarise(label, names, report, seconds, scheme, majority, tta))
        print(f"{label}: mIoU {100 * old['metrics']['miou']:.1f} -> {100 * report.scores.miou:.1f}, pixel accuracy "
              f"{100 * old['metrics']['pixel_accuracy']:.1f} -> {100 * report.scores.pixel_accuracy:.1f}", flush=True)

    head = summaries[0]
    card.update(metrics=head["metrics"], majority_baseline=head["majority_baseline"], reports=summaries)
    card["evaluation"].update(pixels=head["pixels"], seconds_per_image=head["seconds_per_image"], seconds=head["seconds"])
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    text = text_path.read_text()
    first = text.index(f"## {labels[0]}\n")
    end = re.search(r"^Fine-tune it on your own data", text, re.MULTILINE).start()
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    text_path.write_text(text[:first] + "\n".join(section(r, pct, [scheme.names[i] for i in scheme.ignore_in_miou]) for r in summaries) + "\n" + text[end:])


if __name__ == "__main__":
    main()
