"""Refusals at start-up: an exposed anonymous listener without its own groups, and bad TLS files.

Both must be a one-line `kestrel: error: …` naming what to fix, exit code 2, with nothing left
listening.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kestrel import pki as certs
from kestrel.cli import main
from kestrel.errors import BadInput
from kestrel.server.app import Server
from kestrel.server.config import ANON, ConfigError, ListenerConfig, load
from tests.test_server_support import make_config, run


def _toml(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "k.toml"
    f.write_text(text)
    return f


# -- 2. plain TCP/UDP on a non-loopback address must name its groups ---------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "myhost.example"])
def test_exposed_tcp_without_own_groups_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match=r"plain tcp listener 'tcp' on .*\[groups\.listeners\].*tcp = "):
        load(host=host)


def test_exposed_udp_and_extra_listeners_are_refused_too(tmp_path: Path) -> None:
    f = _toml(tmp_path, '[server]\ntcp_port = "off"\ntls_port = "off"\nudp_port = 4242\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match="plain udp listener 'udp'"):
        load(f)
    f = _toml(tmp_path, '[[listeners]]\nname = "lan"\nkind = "tcp"\nport = 9000\nhost = "10.1.2.3"\n')
    with pytest.raises(ConfigError, match="'lan' on 10.1.2.3"):
        load(f)


def test_exposed_listener_with_explicit_groups_or_tls_only_is_accepted(tmp_path: Path) -> None:
    f = _toml(tmp_path, '[server]\nhost = "0.0.0.0"\nudp_port = 4242\n'
                        '[groups.listeners]\ntcp = ["tcp-open"]\nudp = ["__ANON__"]\n'
                        '[[listeners]]\nname = "lan"\nkind = "tcp"\nport = 9000\ngroups = ["Red"]\n')
    cfg = load(f)
    by_name = {li.name: cfg.groups_for(li) for li in cfg.listeners}
    assert by_name == {"tcp": {"tcp-open"}, "tls": {ANON}, "udp": {ANON}, "lan": {"Red"}}
    f = _toml(tmp_path, '[server]\nhost = "0.0.0.0"\ntcp_port = "off"\n')
    assert [li.kind for li in load(f).listeners] == ["tls"]  # TLS authenticates: no groups needed
    assert [li.host for li in load().listeners] == ["127.0.0.1", "127.0.0.1"]  # loopback default unchanged
    assert load(host="localhost").listeners[0].groups is None


def test_server_start_refuses_before_binding_anything(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, ListenerConfig("tcp", "tcp", "127.0.0.1", 0),
                      ListenerConfig("lan", "tcp", "0.0.0.0", 0))

    async def scenario() -> None:
        server = Server(cfg)
        with pytest.raises(ConfigError, match="'lan'"):
            await server.start()
        assert server.ports == {} and server.store is None

    run(scenario())


def test_cli_exposed_without_groups_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--data", str(tmp_path), "--tcp-port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("kestrel: error:")]
    assert errors == [err[-1]] and "[groups.listeners]" in errors[0]


# -- 3. bad TLS files are bad input naming the file ---------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    certs.init(d)
    certs.issue_client(d, "alice")
    return d


def _tls_config(tmp_path: Path, pki: Path, **swap: Path) -> Path:
    p = certs.paths(pki)
    files = {"ca": p.ca_cert, "cert": p.server_cert, "key": p.server_key, **swap}
    lines = "".join(f'{k} = "{v}"\n' for k, v in files.items())
    return _toml(tmp_path, f'[server]\ntcp_port = "off"\ntls_port = 0\ndata = "{tmp_path / "data"}"\n[tls]\n{lines}')


def _bad_files(tmp_path: Path, pki: Path) -> dict[str, tuple[dict[str, Path], Path, str]]:
    p = certs.paths(pki)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    enc = tmp_path / "encrypted.key"
    enc.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ))
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir(exist_ok=True)
    other_key = p.client("alice").key
    return {
        "mismatch": ({"key": other_key}, other_key, "private key does not match certificate"),
        "junk-cert": ({"cert": junk}, junk, "not a usable certificate"),
        "junk-ca": ({"ca": junk}, junk, "not a usable CA certificate"),
        "junk-key": ({"key": junk}, junk, "not a usable unencrypted private key"),
        "encrypted-key": ({"key": enc}, enc, "not a usable unencrypted private key"),
        "unreadable": ({"key": a_dir}, a_dir, "cannot read (not a regular file)"),
    }


CASES = ["mismatch", "junk-cert", "junk-ca", "junk-key", "encrypted-key", "unreadable"]


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_tls_file_exit_2_names_the_file(case: str, tmp_path: Path, pki: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    swap, culprit, reason = _bad_files(tmp_path, pki)[case]
    f = _tls_config(tmp_path, pki, **swap)
    assert main(["serve", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("kestrel: error:")]
    assert errors == [err.splitlines()[-1]], err  # one line, the last one
    assert errors[0].startswith(f"kestrel: error: {culprit}: {reason}"), err
    assert "_ssl.c" not in err and "store.open" not in err  # checked before anything is opened


def test_good_tls_files_still_start_and_bad_ones_leave_nothing_listening(tmp_path: Path, pki: Path) -> None:
    p = certs.paths(pki)
    good = load(_tls_config(tmp_path, pki))
    bad = load(_tls_config(tmp_path, pki, key=p.client("alice").key))
    bad.listeners.insert(0, ListenerConfig("tcp", "tcp", "127.0.0.1", 0))

    async def scenario() -> None:
        server = Server(good)
        await server.start()
        assert server.ports["tls"] > 0
        await server.stop()
        server = Server(bad)
        with pytest.raises(BadInput, match=str(p.client("alice").key)):
            await server.start()
        assert server.ports == {} and server.store is None  # refused before opening anything

    run(scenario())
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_unreadable_tls_file_is_named(tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission denied (as a non-root admin would see it; the tests may run as root)."""
    from kestrel.pki import tls

    p = certs.paths(pki)
    real_open = open

    def deny(path: object, *args: object, **kw: object) -> object:
        if str(path) == str(p.server_key):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(tls, "open", deny, raising=False)
    with pytest.raises(BadInput, match=rf"^{p.server_key}: cannot read \(Permission denied\)$"):
        tls.server_context(p.ca_cert, p.server_cert, p.server_key)
