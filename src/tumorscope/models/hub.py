"""Pretrained weights from the Hugging Face hub, without hanging when there is no internet.

huggingface_hub retries an unreachable hub for about half a minute; when a quick connection
probe fails, the build runs in the hub's offline mode instead, so weights already in the
local cache still load and missing ones fail at once (and tumorscope says what to do).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

HUB = ("huggingface.co", 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the hub opens within ``timeout`` seconds."""
    try:
        socket.create_connection(HUB, timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Run the block in the hub's offline mode when the hub cannot be reached; yields
    whether the hub is used online."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        yield False
        return
    if hub_reachable():
        yield True
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        constants.HF_HUB_OFFLINE = False
