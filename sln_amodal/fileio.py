"""Writing output files safely: atomically, never over an input, into folders checked up front.

- ``atomic_write`` writes ``PATH.tmp.PID`` in the target's folder, flushes it to disk and renames it
  over ``PATH``, so a crash leaves the old file or the new one, never half a file; when the write
  fails (a full disk, a killed serialiser) the temporary file is removed and the error becomes an
  ``OutputError`` naming the path. ``remove_stale_temporaries`` clears what a killed process left.
- ``prepare_output_folder`` creates (or checks) an output folder before any work is done, so a
  run never computes for an hour and then fails to write; ``refuse_input_overlap`` and
  ``refuse_existing`` keep outputs off input files and existing data.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from typing import Callable, IO

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp."  # followed by the writer's process id
_TEMPORARY_NAME = re.compile(rf".+{re.escape(TEMPORARY_SUFFIX)}(\d+)")


class OutputError(Exception):
    """An output that cannot or must not be written; the message names it and says why."""


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}{TEMPORARY_SUFFIX}{os.getpid()}"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # a KeyboardInterrupt mid-write must not leave the partial file either
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        raise


def atomic_write_text(text: str, path: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the ``*.tmp.PID`` files in ``folder`` left by writers that were killed; returns them.

    A file whose process is still running (another run writing into the same folder) is kept."""
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), f"*{TEMPORARY_SUFFIX}*"))):
        match = _TEMPORARY_NAME.fullmatch(os.path.basename(path))
        if match and os.path.isfile(path) and not process_is_alive(int(match[1])):
            os.remove(path)
            removed.append(path)
            logger.warning("removed %s, a partial file left by an interrupted write", path)
    return removed


def process_is_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts: it cannot be signalled)."""
    if pid <= 0:
        return False  # 0 and negative ids name process groups, not a writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False  # no process has an id this large
    return True


def prepare_output_folder(path: str, option: str) -> str:
    """Create ``path`` (and its parents) if needed and check that files can be written in it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{option} {path}: is a file, expected a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot create the folder ({err.strerror or err})") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder is not writable")
    return path


def refuse_input_overlap(output_folder: str, input_folder: str, output_option: str, input_option: str) -> None:
    """Refuse an output folder that is the input folder or lies inside it (outputs would overwrite or
    join the inputs)."""
    output, source = os.path.realpath(output_folder), os.path.realpath(input_folder)
    if output == source or output.startswith(source.rstrip(os.sep) + os.sep):
        raise OutputError(f"{output_option} {output_folder} is {'the' if output == source else 'inside the'} "
                          f"{input_option} folder {input_folder}; its files would be overwritten or read back as "
                          f"inputs. Choose an output folder outside it")


def refuse_existing(paths: list[str], force: bool, what: str) -> None:
    """Refuse to replace existing ``paths`` (``what`` names them) unless ``force``."""
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not force:
        raise OutputError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          f"pass --force to replace {what}")
