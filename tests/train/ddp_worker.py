"""Run by ``torchrun`` in test_ddp.py: train a few steps, then save this rank's weights.

Usage: ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT_DIR KEY=VALUE ...``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from vistok.train.config import load_config
from vistok.train.dist import cleanup
from vistok.train.trainer import Trainer

if __name__ == "__main__":
    out = Path(sys.argv[1])
    trainer = Trainer(load_config(None, sys.argv[2:]), out)
    trainer.fit()
    rank = int(os.environ["RANK"])
    state = {f"model.{k}": v.contiguous() for k, v in trainer.model.state_dict().items()}
    if trainer.disc is not None:
        state.update({f"disc.{k}": v.contiguous() for k, v in trainer.disc.state_dict().items()})
    state["world"] = torch.tensor(trainer.dist.world)
    save_file(state, str(out / f"rank{rank}.safetensors"))
    cleanup()
