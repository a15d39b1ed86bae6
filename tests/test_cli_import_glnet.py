"""`glgeo import-glnet` end to end on files shaped like the released checkpoints."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.models import load_checkpoint
from glgeo.models.testing import random_released_state


def test_import_glnet_writes_a_loadable_bidirectional_checkpoint(glnet_keys_file, tmp_path):
    for seed, role in enumerate(("global", "g2l", "l2g")):
        torch.save(random_released_state(glnet_keys_file, seed, 7), tmp_path / f"{role}.pth")
    out = tmp_path / "model.pt"
    args = ["import-glnet", "--global", str(tmp_path / "global.pth"), "--g2l", str(tmp_path / "g2l.pth")]
    result = CliRunner().invoke(cli, [*args, "--l2g", str(tmp_path / "l2g.pth"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ck = load_checkpoint(out)
    assert ck.mode == "bidirectional" and ck.scheme.name == "deepglobe" and ck.patch_size == 508
    assert ck.model.config.l2g_normalization == "released"
    # Same weights as the released stage-3 file for the L->G branch.
    l2g = torch.load(tmp_path / "l2g.pth", weights_only=True)
    assert torch.equal(ck.model.global_l2g.head.fuse.weight, l2g["module.fpn_global.smooth.weight"])
    assert torch.equal(ck.model.global_l2g.head.lateral[0].weight, l2g["module.fpn_global.toplayer_ext.weight"])

    # Existing output without --overwrite, and a wrong scheme: one line, non-zero exit.
    again = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output and "Traceback" not in again.output
    wrong = CliRunner().invoke(cli, [*args, "--scheme", "inria", "--out", str(tmp_path / "x.pt")])
    assert wrong.exit_code != 0 and "predicts 7 classes" in wrong.output
    assert not (tmp_path / "x.pt").exists()

