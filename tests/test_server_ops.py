"""Operations (issue 12): a corrupt store, two servers on one data dir, --data naming a file, log
lines with hostile values, `kestrel serve --status`, `kestrel fmv info` on a FIFO. Each bad case is
one line naming the file and the way out, exit 2, and never a traceback."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from kestrel.cli import main
from kestrel.server import datadir, logs
from kestrel.server.app import DB_NAME, Server
from kestrel.server.config import ListenerConfig
from tests.test_server_support import Client, make_config, run, sa, server_running, uid_of


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("kestrel: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _corrupt(data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    db = data / DB_NAME
    db.write_bytes(b"this is not a sqlite database " * 200)
    return db


def test_corrupt_store_is_one_line_naming_the_file_and_the_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _corrupt(tmp_path / "data")
    assert main(["serve", "--data", str(tmp_path / "data"), "--tcp-port", "0"]) == 2
    line = _one_error(capsys)
    assert str(db) in line and "--repair" in line
    assert db.read_bytes().startswith(b"this is not")  # untouched


def test_repair_moves_the_corrupt_store_aside_and_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    _corrupt(data)
    cfg = make_config(data)
    cfg.repair = True

    async def scenario() -> None:
        async with server_running(cfg) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            b = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await a.send(sa("A-uid", "ALPHA"))
            await b.recv_until(lambda e: uid_of(e) == "A-uid")

    run(scenario())
    kept = list(data.glob(f"{DB_NAME}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
    warn = [r.getMessage() for r in caplog.records if "event=store.repaired" in r.getMessage()]
    assert len(warn) == 1 and str(kept[0]) in warn[0]
    assert (data / DB_NAME).is_file()


def test_second_server_on_one_data_dir_is_refused_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        async with server_running(make_config(data)):
            other = Server(make_config(data))
            with pytest.raises(datadir.DataDirError, match=f"pid {os.getpid()}"):
                await other.start()
            assert other.ports == {}
            loop = asyncio.get_running_loop()
            rc = await loop.run_in_executor(None, main, ["serve", "--data", str(data), "--tcp-port", "0"])
            assert rc == 2

    run(scenario())
    line = _one_error(capsys)
    assert f"pid {os.getpid()}" in line and str(data) in line

    async def again() -> None:  # released on stop: the next server starts
        async with server_running(make_config(data)) as server:
            assert server.ports["tcp"]

    run(again())


def test_data_pointing_at_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "notadir"
    f.write_text("x")
    assert main(["serve", "--data", str(f), "--tcp-port", "0"]) == 2
    line = _one_error(capsys)
    assert str(f) in line and "is a file, not a directory" in line


def test_log_fields_are_bounded_and_escaped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    huge = "W" * 10_000 + "\n\x1b[31mevent=fake"

    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            b = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await a.send(sa("U" * 5000, "X" * 10_000))
            await b.recv_until(lambda e: uid_of(e).startswith("UUU"))

    caplog.set_level(logging.INFO, logger="kestrel.server")
    run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    assert any("event=contact" in line for line in lines)
    assert max(len(line) for line in lines) < 1000
    rendered = logs.kv("x", cs=huge)
    assert len(rendered) < 300 and "\n" not in rendered and "\x1b" not in rendered
    assert rendered.count("event=") == 1 or '"' in rendered  # a fake field stays inside quotes


def test_status_prints_the_running_servers_counters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["serve", "--status", "--data", str(data)]) == 2
    assert "no kestrel server is running" in _one_error(capsys)

    async def scenario() -> int:
        cfg = make_config(data, ListenerConfig("tcp", "tcp", "127.0.0.1", 0))
        async with server_running(cfg) as server:
            r, w = await asyncio.open_connection("127.0.0.1", server.ports["tcp"])
            w.write(b"<event uid='x' type='a-f-G' time='2026-01-01T00:00:00Z' start='2026-01-01T00:00:00Z' "
                    b"stale='2099-01-01T00:00:00Z'><point lat='99' lon='0'/></event>")
            while server.metrics.get("dropped_invalid") == 0:
                await asyncio.sleep(0.005)
            loop = asyncio.get_running_loop()
            rc = await loop.run_in_executor(None, main, ["serve", "--status", "--data", str(data)])
            w.close()
            return int(rc)

    assert run(scenario()) == 0
    out = capsys.readouterr().out
    assert 'kestrel_dropped_total{reason="invalid"} 1' in out and "kestrel_clients 1" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fmv_info_on_a_fifo_is_an_error_not_a_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "video.ts"
    os.mkfifo(fifo)
    assert main(["fmv", "info", str(fifo)]) == 2
    line = _one_error(capsys)
    assert str(fifo) in line and "FIFO" in line


@pytest.mark.parametrize(("line", "message"), [
    ("idle_timeout_s = 0.5", r"\[limits\] idle_timeout_s: expected at least 1"),
    ("incomplete_event_timeout_s = 0", r"\[limits\] incomplete_event_timeout_s: expected a positive number"),
    ("max_connections = 1.5", r"\[limits\] max_connections: expected a whole number"),
    ("events_per_s_per_client = -3", r"\[limits\] events_per_s_per_client: expected a positive number"),
    ("retained_bytes_per_group = 1000", r"\[limits\] retained_bytes_per_group: 1000 is below max_event_bytes"),
    ("max_connection = 5", r"\[limits\]: unknown key 'max_connection'"),
    ('events_burst_per_client = "lots"', r"\[limits\] events_burst_per_client: expected a positive number"),
    ("bytes_per_s_per_client = 1000", r"\[limits\] bytes_per_s_per_client: 1000 bytes/s .* cannot carry one event"),
])
def test_limits_are_validated_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    from kestrel.server.config import ConfigError, load

    f = tmp_path / "k.toml"
    f.write_text(f"[limits]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load(f)


def test_limits_defaults_and_smallest_timeouts_load(tmp_path: Path) -> None:
    from kestrel.server.config import load

    f = tmp_path / "k.toml"
    f.write_text("[limits]\nidle_timeout_s = 1\nincomplete_event_timeout_s = 1\nevents_per_s_per_client = 0.5\n"
                 "[server]\nmetrics_port = \"off\"\n")
    cfg = load(f)
    assert (cfg.limits.idle_timeout_s, cfg.limits.incomplete_event_timeout_s) == (1.0, 1.0)
    assert cfg.limits.events_per_s_per_client == 0.5 and cfg.metrics_port is None
    d = load().limits
    assert d.idle_timeout_s >= 120 and d.retained_bytes_per_group >= d.max_event_bytes
