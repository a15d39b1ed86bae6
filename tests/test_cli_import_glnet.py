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



def test_import_glnet_refuses_files_in_the_wrong_role_or_of_another_model(glnet_keys_file, tmp_path):
    """Found by an audit: keys of another model were dropped, swapped or repeated files
    imported, sizes of 0 wrote a checkpoint segment could not run, the output could replace
    a released file; an import records the resolution its training imagery had."""
    states = {}
    for seed, role in enumerate(("global", "g2l", "l2g")):
        states[role] = random_released_state(glnet_keys_file, seed, 7)
        torch.save(states[role], tmp_path / f"{role}.pth")
    g, g2l, l2g = (str(tmp_path / f"{r}.pth") for r in ("global", "g2l", "l2g"))

    def run(*args):
        return CliRunner().invoke(cli, ["import-glnet", *args])

    # a deeper backbone (ResNet-101's extra blocks) beside every released key
    deeper = dict(states["g2l"], **{"module.resnet_local.layer3.6.conv1.weight": torch.zeros(256, 1024, 1, 1)})
    torch.save(deeper, tmp_path / "r101.pth")
    result = run("--global", g, "--g2l", str(tmp_path / "r101.pth"), "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 1 and "holds 1 keys no released GLNet file has, e.g. resnet_local.layer3.6.conv1.weight" \
        in result.output and not (tmp_path / "a.pt").exists()
    # the same file twice, a stage-1 file as the stage-2 one, a stage-2 file as the stage-3 one
    result = run("--global", g, "--g2l", g, "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 1 and "is given as both the global and the g2l file" in result.output
    stage2_as_3 = dict(states["l2g"], **{k: v for k, v in states["global"].items() if k.startswith("module.resnet_global.")})
    torch.save(stage2_as_3, tmp_path / "g2l_copy.pth")
    result = run("--global", g, "--l2g", str(tmp_path / "g2l_copy.pth"), "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 1 and "holds the --global file's global branch, which stage 3 retrains" in result.output
    stage1_as_2 = dict(states["g2l"], **{k: v for k, v in states["global"].items() if k.startswith("module.resnet_local.")})
    torch.save(stage1_as_2, tmp_path / "global_copy.pth")
    result = run("--global", g, "--g2l", str(tmp_path / "global_copy.pth"), "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 1 and "it is not the global-to-local (stage 2) file" in result.output
    # sizes a model cannot run with, and the output naming an input
    result = run("--global", g, "--g2l", g2l, "--global-size", "0", "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 2 and "--global-size" in result.output
    result = run("--global", g, "--g2l", g2l, "--out", g, "--overwrite")
    assert result.exit_code == 1 and "is the same file as the input" in result.output
    assert torch.equal(torch.load(g, weights_only=True)["module.resnet_global.conv1.weight"],
                       states["global"]["module.resnet_global.conv1.weight"])
    # neither later stage
    result = run("--global", g, "--out", str(tmp_path / "a.pt"))
    assert result.exit_code == 2 and "give --g2l (a G->L model) or --l2g" in result.output
    # bidirectional without --g2l (not read); DeepGlobe's 50 cm recorded, as segment reads scenes
    result = run("--global", g, "--l2g", l2g, "--out", str(tmp_path / "b.pt"))
    assert result.exit_code == 0, result.output
    ck = load_checkpoint(tmp_path / "b.pt")
    assert ck.mode == "bidirectional" and ck.gsd == 0.5 and ck.footprint == 2448
    assert ck.metadata["training"]["global_gsd_m"] == 0.5 * 2448 / 508
    assert ck.metadata["released_files"] == {"global": "global.pth", "l2g": "l2g.pth"}
