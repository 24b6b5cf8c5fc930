"""A real ``tumorscope serve`` process on a loopback port, for API and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Server:
    url: str
    tmpdir: Path  # the server process's TMPDIR: must stay empty (uploads never hit disk)
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from fixtures import save_random_model

    root = tmp_path_factory.mktemp("server")
    model = save_random_model(root / "model")
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = root / "server.log"
    exe = Path(sys.executable).with_name("tumorscope")
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), "serve", "--checkpoint", str(model), "--port",
                                 str(port), "--max-upload-mb", "2", "--max-pixels", "5000000",
                                 "--backend", "torch"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield Server(url, tmpdir, log)
    proc.terminate()
    proc.wait(timeout=20)
