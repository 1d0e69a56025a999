"""The C allocator of an extracting process: keep freed activations instead of unmapping them.

Set once per process by the processes this package owns (the ``mlsp``
command, extraction workers); a library caller's own process keeps glibc's
defaults unless it asks (:func:`keep_freed_memory`). Imports nothing heavy,
so the command line can call it before it has loaded torch.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory"]

_TUNED: list = []


def keep_freed_memory() -> None:
    """Let glibc reuse the memory of freed activations instead of returning it to the kernel.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and
    setting that also fixes glibc's mmap threshold at 128 KiB: every
    activation above it is then mapped, zero-filled by the kernel and
    unmapped again, forward pass after forward pass; two such workers ran at
    half the speed of one (benchmarks/RESULTS.md section 7). Even glibc's
    defaults return the top of the heap after each pass (a 512x512 image
    frees some 70 MB there) and fault it in again for the next (section 15).
    After this call, large blocks (up to 32 MiB, glibc's largest) come from
    the heap, and the heap is trimmed above 1 GiB only: the process keeps its
    working set. Once per process; nothing on other C libraries.
    """
    if _TUNED:
        return
    _TUNED.append(True)
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 1024 * 2**20)
