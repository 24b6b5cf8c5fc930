"""Pretrained weights from the Hugging Face hub, without hanging when there is no internet.

huggingface_hub retries an unreachable hub for about half a minute; when a quick connection
probe fails, the build runs in the hub's offline mode instead, so weights already in the
local cache still load and missing ones fail at once (and tumorscope says what to do).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the hub (``HF_ENDPOINT``) opens within ``timeout``
    seconds, or when a proxy is configured (the proxy decides; no probe is made)."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def offline_unless_reachable(needed: bool = True) -> Iterator[bool]:
    """Run the block in the hub's offline mode when the hub cannot be reached; yields
    whether the hub is used online. ``needed=False`` (nothing to download): no probe."""
    from huggingface_hub import constants

    if not needed or constants.HF_HUB_OFFLINE:
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
