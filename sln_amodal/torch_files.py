"""Reading PyTorch files (checkpoints, weights, shape-prior codebooks) without running their code.

``read_torch_file`` unpickles only tensors, plain values and numpy arrays unless the user vouches
for the file (``--trust-checkpoint``); every file the project reads with ``torch.load`` goes
through it.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import zipfile
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

class CheckpointError(ValueError):
    """A file that is not a readable model checkpoint of this project; the message names it."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that only full unpickling could read, refused without ``trust``."""


# Unpickling a numpy array needs exactly these globals; allowing them (and nothing else) lets a
# training checkpoint with array-valued state load without running other pickled code.
# numpy 2 pickles a dtype through its class (numpy.dtypes.UInt32DType, ...), which builds nothing else.
def numpy_array_globals(numpy=np) -> list:
    """The globals an array's pickle names; ``numpy.dtypes`` (numpy >= 1.25) adds the dtype classes."""
    dtypes = getattr(numpy, "dtypes", None)
    dtype_classes = [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")] if dtypes else []
    return [numpy.ndarray.__reduce__(numpy.zeros(0))[0], numpy.ndarray, numpy.dtype, *dtype_classes]


NUMPY_ARRAY_GLOBALS = numpy_array_globals()
TRUST_CHECKPOINT_FLAG = "--trust-checkpoint"  # the command lines' opt-in to full unpickling


def add_trust_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """The command lines' one ``--trust-checkpoint`` option (its value: ``args.trust_checkpoint``)."""
    parser.add_argument(TRUST_CHECKPOINT_FLAG, action="store_true",
                        help="unpickle checkpoints fully when they hold more than tensors and arrays; unpickling can "
                             "run code the file carries, so only for files from a source you trust")


def read_torch_file(path: str, trust: bool = False) -> Any:
    """``torch.load`` onto the CPU, unpickling only tensors, plain values and numpy arrays.

    Unpickling anything else can run code the file carries, so a checkpoint holding other objects
    is an error (CheckpointError) unless ``trust`` (the command lines' ``--trust-checkpoint``)
    allows full unpickling of a file whose origin the user vouches for. A file that is not a
    PyTorch checkpoint at all is an error either way.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    # torch.load fails on a file of another kind with whatever error its bytes happen to trigger.
    except Exception as err:
        if not isinstance(err, pickle.UnpicklingError):
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                                  f"{_first_line(err)})") from err
        # Random bytes raise UnpicklingError too, so untrusted only a zip checkpoint is told it holds
        # other objects; trusted, any file gets the full unpickler, legacy (non-zip) checkpoints included.
        if not trust and not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}); "
                f"if it is a checkpoint in PyTorch's legacy (non-zip) format from a source you trust, "
                f"{TRUST_CHECKPOINT_FLAG} unpickles it fully") from err
        if not trust:
            raise UntrustedCheckpointError(
                f"{path}: holds objects other than tensors, plain values and arrays ({_first_line(err)}); unpickling "
                f"them could run code the file carries. Only if you trust where the file comes from, pass "
                f"{TRUST_CHECKPOINT_FLAG} to unpickle it fully") from err
    logger.warning("%s holds more than tensors and arrays; unpickling it fully (%s)", path, TRUST_CHECKPOINT_FLAG)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                              f"{_first_line(err)})") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
