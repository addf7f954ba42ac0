#!/usr/bin/env python3
"""Runs test/gpu/kernels_check.py on the CPU against the emulated library (see README.md): every
"cuda:N" tensor of the script becomes a CPU tensor, and torch.cuda's calls become no-ops.
Usage: python3 test/gpu/emu/run_kernels_check.py LIB [kernels_check options]"""
import os
import sys
import types

import torch

torch.cuda.synchronize = lambda *a, **k: None
torch.cuda.is_available = lambda: True
torch.cuda.set_device = lambda *a, **k: None


class EmuStream:
    """A torch.cuda.Stream on the emulator, whose work is done when a call returns. Its handle is
    not NULL, so the library checks its device (every emulated stream is device 0's)."""
    cuda_stream = 0x5EED

    def wait_stream(self, other):
        pass

    def synchronize(self):
        pass


torch.cuda.Stream = lambda *a, **k: EmuStream()
torch.cuda.current_stream = lambda *a, **k: EmuStream()
script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels_check.py")
source = open(script).read().replace('"cuda:%d" % ', '"cpu" if True else ')
module = types.ModuleType("kernels_check")
module.__file__ = script
sys.modules["kernels_check"] = module
exec(compile(source, script, "exec"), module.__dict__)
sys.argv = [script] + sys.argv[1:]
sys.exit(module.main())
