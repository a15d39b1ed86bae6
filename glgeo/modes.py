"""GLNet's modes: the one list the network, inference, training and the CLI share.

A GLNet runs in one of four modes (see :mod:`glgeo.models.glnet` for the parts each one
uses): the global branch alone on the downsampled scene, the local branch alone on
full-resolution patches, global-to-local sharing (``g2l``), or both directions
(``bidirectional``). Training follows the paper's stages, so it builds the three modes that
end a sequence of stages; ``local`` alone is not one of them.

This module imports nothing heavy, so the command line can build its choices from it
without importing torch.
"""

from __future__ import annotations

from typing import Literal, get_args

Mode = Literal["global", "local", "g2l", "bidirectional"]
#: Every GLNet mode.
MODES: tuple[str, ...] = get_args(Mode)

TrainMode = Literal["global", "g2l", "bidirectional"]
#: The training stages that build each trainable mode, in order.
MODE_STAGES: dict[str, tuple[int, ...]] = {"global": (1,), "g2l": (1, 2), "bidirectional": (1, 2, 3)}
#: The modes training can end with.
TRAIN_MODES: tuple[str, ...] = get_args(TrainMode)
