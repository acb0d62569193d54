"""Every CLI error message the user meets: exact exit code, one line on stderr naming the file,
port or key at fault and what to do; nothing on stdout. (issue 10, "CLI that tells the truth")."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kestrel import pki
from kestrel.cli import main
from kestrel.server.cli import connect_help
from kestrel.server.config import ListenerConfig
from tests.test_server_support import make_config, run, server_running


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    """The last stderr line, checked to be the error line (log lines may come before it)."""
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert lines and lines[-1].startswith("kestrel: error: "), out.err
    return lines[-1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kestrel {version('kestrel')}"


def test_port_in_use_names_port_and_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--data", str(tmp_path), "--tcp-port", str(port)]) == 2
    err = _err(capsys)
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--tcp-port" in err


def test_udp_port_in_use_names_its_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["serve", "--data", str(tmp_path), "--tcp-port", "0", "--udp-port", str(port)]) == 2
    err = _err(capsys)
    assert f"port {port}" in err and "--udp-port" in err


def test_tls_error_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, _ = pki.init(tmp_path)
    p.server_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert main(["serve", "--data", str(tmp_path), "--tcp-port", "0", "--tls-port", "0"]) == 2
    assert _err(capsys).startswith(f"kestrel: error: {p.server_cert}: not a usable certificate")


def test_missing_tls_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--data", str(tmp_path), "--tcp-port", "0", "--tls-port", "0"]) == 2
    err = _err(capsys)
    assert str(tmp_path / "certs" / "ca.pem") in err and "kestrel certs init" in err


def test_certs_client_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["certs", "init", "--data", d]) == 0
    assert main(["certs", "client", "alice", "--data", d]) == 0
    c = pki.paths(d).client("alice")
    before = c.cert.read_bytes(), c.key.read_bytes()
    capsys.readouterr()
    assert main(["certs", "client", "alice", "--data", d]) == 2
    err = _err(capsys)
    assert str(c.cert) in err and "already exists" in err and "--force" in err
    assert (c.cert.read_bytes(), c.key.read_bytes()) == before  # nothing was touched
    assert main(["certs", "client", "alice", "--data", d, "--force"]) == 0
    assert c.cert.read_bytes() != before[0]


def test_certs_init_refuses_to_replace_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["certs", "init", "--data", d]) == 0
    p = pki.paths(d)
    ca = p.ca_cert.read_bytes()
    capsys.readouterr()
    assert main(["certs", "init", "--data", d, "--hostname", "tak.example"]) == 2
    err = _err(capsys)
    assert str(p.ca_cert) in err and "--force" in err and "--server-only" in err
    assert p.ca_cert.read_bytes() == ca
    assert main(["certs", "init", "--data", d, "--hostname", "tak.example", "--server-only"]) == 0
    assert p.ca_cert.read_bytes() == ca and "kept existing CA" in capsys.readouterr().out
    assert main(["certs", "init", "--data", d, "--force"]) == 0
    assert p.ca_cert.read_bytes() != ca


def test_certs_client_without_ca_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "client", "alice", "--data", str(tmp_path)]) == 2
    err = _err(capsys)
    assert str(tmp_path / "certs" / "ca.pem") in err and "kestrel certs init" in err
    assert capsys.readouterr().out == ""


def test_revoke_unknown_client_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki.init(tmp_path)
    assert main(["certs", "revoke", "nobody", "--data", str(tmp_path)]) == 2
    assert "nobody: no client certificate" in _err(capsys)


def test_connect_help_never_recommends_a_revoked_cert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pki.init(data)
    for name in ("alice", "bob"):
        pki.issue_client(data, name)
    pki.revoke(data, "alice")  # sorts first: the old help recommended it

    async def scenario() -> str:
        cfg = make_config(data, ListenerConfig("tls", "tls", "127.0.0.1", 0))
        async with server_running(cfg) as server:
            return connect_help(server)

    text = run(scenario())
    assert "alice" not in text and "clients/bob.p12" in text and "clients/bob.pem" in text
    pki.revoke(data, "bob")
    text = run(scenario())
    assert "bob" not in text and "clients/NAME.p12" in text


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[server]\nstore_flush_seconds = "fast"\n', "store_flush_seconds"),
        ("[server]\nstore_flush_seconds = 0\n", "store_flush_seconds"),  # 0 would spin the flush loop
        ("[server]\nstore_flush_seconds = nan\n", "store_flush_seconds"),
        ("[limits]\nhandshake_timeout = 0\n", "handshake_timeout"),
        ("[limits]\nqueue_bytes = 1.5\n", "queue_bytes"),
        ("[server]\nlog_level = \"loud\"\n", "log_level"),
        ("[server]\nhost = 5\n", "host"),
        ("[server]\ntcp_port = 70000\n", "tcp_port"),
    ],
)
def test_bad_config_value_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str,
                                        key: str) -> None:
    f = tmp_path / "k.toml"
    f.write_text(toml)
    assert main(["serve", "--config", str(f), "--data", str(tmp_path)]) == 2
    err = _err(capsys)
    assert str(f) in err and key in err
    assert capsys.readouterr().out == ""


def test_gitignore_keeps_run_output_out_of_git() -> None:
    lines = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().splitlines()
    assert "runs/" in lines and "kestrel-data/" in lines
