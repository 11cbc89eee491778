"""Process memory: glibc's malloc arenas, for a process of a few hundred short-lived threads.

glibc gives threads that allocate at the same time their own arenas (up to eight per core). The collector's IAM
threads parse AWS answers in parallel, so what they free stays spread over many arenas and is not returned to the
system: resident memory grows with the number of threads, not with what is alive. Two arenas keep it bounded at
no measurable cost in speed (the threads take turns on one GIL anyway). Nothing happens off glibc.
"""

from __future__ import annotations

import ctypes

_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads to come; False where there is no glibc ``mallopt``."""
    try:
        # The symbols already loaded into this process (libc among them): no ``find_library``, which starts
        # ``ldconfig -p`` in a subprocess on every call.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
