"""Upload handling shared by the endpoints: multipart bodies parsed in memory as they stream
(refused with 413 past the limit), file holders that worker threads can empty, errors mapped
to HTTP statuses, and freed memory handed back to the system."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from tumorscope.errors import BusyError, ImageTooLargeError, TumorscopeError, UnsupportedFormatError

MULTIPART_OVERHEAD = 64 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


class InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser, keeping every part in memory (never spooled to a temporary file)."""

    spool_max_size = 2**62


async def limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives, refused with 413 as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {int(declared):,} bytes exceeds the limit of "
                            f"{limit - MULTIPART_OVERHEAD:,} bytes")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload exceeds the limit of "
                                f"{limit - MULTIPART_OVERHEAD:,} bytes")
        yield chunk


async def parse_form(request: Request, limit: int, max_files: int, what: str) -> FormData:
    """Parse the multipart body while it streams in (no second copy of the whole body)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, f"send {what} as multipart/form-data")
    parser = InMemoryMultiPartParser(request.headers, limited(request, limit),
                                     max_files=max_files, max_fields=4, max_part_size=limit)
    try:
        return await parser.parse()
    except MultiPartException as err:
        raise HTTPException(422, f"malformed multipart upload: {err.message}") from None


@dataclass
class Upload:
    """One uploaded file. Worker threads get this holder, never the bytes themselves: an idle
    worker keeps its last job's arguments, and emptying the holder frees the upload."""

    name: str
    data: bytes
    slice_index: int | None = None


def status_for(err: TumorscopeError) -> int:
    """The HTTP status of a user error."""
    if isinstance(err, UnsupportedFormatError):
        return 415
    if isinstance(err, ImageTooLargeError):
        return 413
    if isinstance(err, BusyError):
        return 503
    return 422


def return_freed_memory() -> None:
    """Let glibc hand every freed buffer of 1 MiB or more back to the system at once (mmap):
    by default it keeps some in its heaps, so a burst of large uploads would leave the
    process big long after the requests are gone. No-op without glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass
