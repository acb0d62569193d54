"""Config file + flags, and `kestrel serve` as a real process: defaults on an empty data dir,
connect instructions, clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.cli import main
from kestrel.server.config import ANON, ConfigError, ListenerConfig, load
from tests.ports import free_port

EXAMPLE = """
[server]
host = "127.0.0.1"
data = "/tmp/kestrel-example"
tcp_port = 8087
tls_port = 8089
udp_port = 8087
loop = "asyncio"

[limits]
queue_bytes = 2097152
negotiation_window = 30

[groups]
default = ["__ANON__"]

[groups.listeners]
tcp = ["Blue"]

[groups.certs]
alice = ["Blue"]
bob = ["Red", "Blue"]

[[listeners]]
name = "red-tcp"
kind = "tcp"
port = 8090
groups = ["Red"]
"""


def test_defaults_need_no_file() -> None:
    cfg = load()
    assert cfg.host == "127.0.0.1" and cfg.data_dir == Path("kestrel-data")
    assert [(li.name, li.port, li.required) for li in cfg.listeners] == [("tcp", 8087, True), ("tls", 8089, False)]
    assert cfg.groups_for(cfg.listeners[0]) == {ANON}


def test_file_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text(EXAMPLE)
    cfg = load(f, tcp_port=9000, data_dir=tmp_path)
    by = {li.name: li for li in cfg.listeners}
    assert by["tcp"].port == 9000 and by["udp"].port == 8087 and by["tls"].required
    assert by["red-tcp"].groups == ("Red",) and cfg.data_dir == tmp_path
    assert cfg.limits.queue_bytes == 2097152 and cfg.limits.negotiation_window == 30.0
    tls = by["tls"]
    assert cfg.groups_for(by["tcp"]) == {"Blue"}
    assert cfg.groups_for(tls, "bob") == {"Red", "Blue"}  # cert CN wins
    assert cfg.groups_for(tls, "mallory") == {ANON}  # unknown CN: listener, then default


@pytest.mark.parametrize(
    "text, msg",
    [
        ("[server]\nhots = 'x'\n", "unknown key 'hots'"),
        ("[server]\ntcp_port = 70000\n", "tcp_port"),
        ("[groups]\ndefault = []\n", "non-empty list"),
        ("[groups.listeners]\nnope = ['A']\n", "no listener named 'nope'"),
        ("[limits]\nqueue_bytes = -1\n", "positive"),
        ("[[listeners]]\nname = 'x'\nkind = 'sctp'\nport = 1\n", "kind = tcp|tls|udp"),
        ("not toml = = 1", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, msg: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=msg):
        load(f)


def test_cli_bad_config_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[server]\nhots = 'x'\n")
    assert main(["serve", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err and "hots" in err


def test_cli_explicit_tls_without_certs_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--data", str(tmp_path), "--tcp-port", "0", "--tls-port", "0"]) == 2
    assert "ca.pem" in capsys.readouterr().err


@pytest.mark.parametrize("with_certs", [False, True])
def test_serve_process_empty_data_dir_and_sigterm(tmp_path: Path, with_certs: bool) -> None:
    data = tmp_path / "fresh"  # does not exist yet (or holds only certs)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra: list[str] = []
    if with_certs:
        from kestrel import pki as certs

        certs.init(data)
        certs.issue_client(data, "alice")
        extra = ["--tls-port", str(free_port())]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kestrel", "serve", "--data", str(data), "--tcp-port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert "Kestrel TAK server is up" in first, first + proc.stderr.read()  # type: ignore[union-attr]
        while "Stop with" not in first.splitlines()[-1]:
            first += proc.stdout.readline()  # type: ignore[union-attr]
        socket.create_connection(("127.0.0.1", port), timeout=30).close()  # listening before the help
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        out = first + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"tcp://127.0.0.1:{port}" in out
    if with_certs:
        assert "tls://127.0.0.1:" in out and "clients/alice.p12" in out and "PYTAK_TLS_CLIENT_CAFILE=" in out
        assert "event=listener.open name=tls" in err
    else:
        assert "kestrel certs init" in out and "event=listener.skipped name=tls" in err
    assert "event=server.stopping signal=SIGTERM" in err and "event=store.closed" in err
    assert "event=server.ready listeners=" in err and "loop=asyncio" in err  # the default loop
    assert (data / "kestrel.db").is_file()
    assert all(" level=" in line and "event=" in line for line in err.splitlines())


def test_listener_config_is_plain_data() -> None:
    li = ListenerConfig("x", "tcp", "127.0.0.1", 0)
    assert li.groups is None and li.required


def test_documented_example_config_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "server.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    f = tmp_path / "doc.toml"
    for block in blocks:  # every TOML example in the docs is a valid config
        f.write_text(block)
        load(f)
    exposed = next(b for b in blocks if 'host = "0.0.0.0"' in b)  # the exposed-listener example
    f.write_text(exposed)
    assert {li.name: load(f).groups_for(li) for li in load(f).listeners}["tcp"] == {"tcp-open"}
    f.write_text(next(b for b in blocks if "[[listeners]]" in b))
    cfg = load(f)
    assert [li.name for li in cfg.listeners] == ["tcp", "tls", "red-tcp"]
    assert cfg.groups_for(cfg.listeners[1], "bob") == {"Blue", "Red"}
    assert cfg.groups_for(cfg.listeners[2]) == {"Red"}
