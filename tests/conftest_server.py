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


def start_server(root: Path, *extra: str, env: dict[str, str] | None = None,
                 ready_headers: dict[str, str] | None = None,
                 model: Path | None = None) -> tuple[Server, subprocess.Popen]:
    """``tumorscope serve`` with ``model`` (default: a random joint model) on a free port,
    started and ready."""
    from fixtures import save_random_brats_model, save_random_model

    model = model or save_random_model(root / "model")
    case_model = save_random_brats_model(root / "case-model")
    tmpdir = root / "tmp"
    tmpdir.mkdir(exist_ok=True)
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           **(env or {})}
    log = root / "server.log"
    exe = Path(sys.executable).with_name("tumorscope")
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), "serve", "--checkpoint", str(model), "--port",
                                 str(port), "--max-upload-mb", "2", "--max-pixels", "5000000",
                                 "--backend", "torch", "--case-checkpoint", str(case_model),
                                 *extra], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            request = urllib.request.Request(f"{url}/ready", headers=ready_headers or {})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return Server(url, tmpdir, log), proc


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live, proc = start_server(tmp_path_factory.mktemp("server"))
    yield live
    proc.terminate()
    proc.wait(timeout=20)
