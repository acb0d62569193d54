"""Shared by the workbench tests: a synthetic run (with truth), a no-KLV run, and a real
`kestrel workbench` process whose URL is read from the first stdout line with `http://`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kestrel.cli import main as kestrel_main


def kestrel(*args: str) -> int:
    return kestrel_main(list(args))


def make_run(d: Path, seconds: str = "3", seed: str = "3", no_klv: bool = False) -> Path:
    clip = d / "synth.ts"
    assert kestrel("fmv", "synth", str(clip), "--seconds", seconds, "--targets", "3", "--seed", seed,
                   "--truth", str(d / "truth.json")) == 0
    if no_klv:
        from tests.test_ped_cli import strip_klv

        bare = d / "bare.ts"
        strip_klv(clip, bare)
        clip = bare
    out = d / "run"
    assert kestrel("ped", "run", str(clip), "--out", str(out), "--no-vmti") == 0
    return out


@contextmanager
def workbench(*run_dirs: Path, extra: tuple[str, ...] = (), analyst: str = "tester") -> Iterator[str]:
    """`kestrel workbench RUN... --port 0` in a child process; yields its base URL (no trailing /)."""
    env = dict(os.environ, PYTHONUNBUFFERED="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kestrel.cli", "workbench", *map(str, run_dirs), "--port", "0", "--analyst", analyst,
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:  # blocks until the server prints (flushed, though stdout is a pipe)
            if "http://" in line:
                url = line[line.index("http://"):].split()[0].rstrip("/")
                break
        assert url, proc.stderr.read() if proc.stderr else "no URL"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def get_json(url: str) -> Any:
    status, body, _ = get(url)
    assert status == 200, (url, status, body[:200])
    return json.loads(body)


def post_json(url: str, obj: Any) -> tuple[int, Any]:
    req = urllib.request.Request(url, json.dumps(obj).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
