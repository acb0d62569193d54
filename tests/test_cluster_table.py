"""`[cluster]` in the TOML config: the same settings as the cluster flags (flags win), checked by key
like the rest of the config (one line naming the file and key, exit 2); a real process joins the
NATS server the file names and `--status` finds it from the same file."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.cluster import cli as cluster_cli
from kestrel.cluster.natsd import free_port
from kestrel.errors import BadInput
from tests.cluster_support import NEEDS_NATS, natsd
from tests.test_cluster_procs import start_serve, stop
from tests.test_server_support import run


def flags(**kw: object) -> argparse.Namespace:
    base = {"cluster": None, "site": None, "hub": None, "hold_groups": None, "link_interval": None,
            "workers": None, "wire": None}
    return argparse.Namespace(**{**base, **kw})


def test_table_fills_what_the_flags_leave_out() -> None:
    args = flags(site="edge2")
    cluster_cli.merge_table(args, {"url": "nats://127.0.0.1:4222", "site": "edge1", "hub": "hub",
                                   "hold_groups": ["local", "ops"], "link_interval": 5}, "c.toml")
    cfg = cluster_cli.config_from(args)
    assert cfg is not None
    assert (cfg.url, cfg.site, cfg.hub, cfg.hold_groups, cfg.link_interval) == (
        "nats://127.0.0.1:4222", "edge2", "hub", frozenset({"local", "ops"}), 5.0)


def test_workers_from_the_table_but_not_in_its_children() -> None:
    args = flags()
    cluster_cli.merge_table(args, {"workers": 2}, "c.toml")
    assert args.workers == 2
    child = flags(cluster="nats://127.0.0.1:4999")  # a --workers child reads the same file
    cluster_cli.merge_table(child, {"workers": 2}, "c.toml")
    assert child.workers is None


@pytest.mark.parametrize(("table", "words"), [
    ({"urll": "nats://x:1"}, "c.toml [cluster]: unknown key 'urll'"),
    ({"link_interval": "5"}, "c.toml [cluster] link_interval: expected float"),
    ({"workers": 2.5}, "c.toml [cluster] workers: expected int"),
    ({"hold_groups": "a,b"}, "c.toml [cluster] hold_groups: expected a list of group names"),
    ({"url": "nats://x:1", "workers": 2}, "not both"),
])
def test_bad_table_is_one_clear_error(table: dict[str, object], words: str) -> None:
    with pytest.raises(BadInput, match=words.replace("[", r"\[").replace("]", r"\]")):
        cluster_cli.merge_table(flags(), table, "c.toml")


def test_bad_key_from_the_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[cluster]\nsite = "edge1"\nlink_intervall = 5\n')
    r = subprocess.run([sys.executable, "-m", "kestrel", "serve", "--config", str(conf), "--data",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert f"{conf} [cluster]: unknown key 'link_intervall'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@NEEDS_NATS
def test_process_joins_the_nats_server_named_in_the_file(tmp_path: Path) -> None:
    with natsd(tmp_path) as nd:
        conf = tmp_path / "c.toml"
        conf.write_text(f'[cluster]\nurl = "{nd.url}"\nsite = "edge7"\n')

        async def scenario() -> None:
            proc = await start_serve("--config", str(conf), "--tcp-port", str(free_port()), "--data",
                                     str(tmp_path / "d"))
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while True:  # a survey answers what replies in its window: ask again on a loaded machine
                    status = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "kestrel", "serve", "--config", str(conf), "--status",
                        "--data", str(tmp_path / "d"), stdout=asyncio.subprocess.PIPE)
                    out, _ = await asyncio.wait_for(status.communicate(), 60)
                    rows = out.decode().splitlines()
                    if len(rows) == 2 or loop.time() > deadline:
                        break
                assert len(rows) == 2 and rows[1].split()[0] == "edge7" and " up " in rows[1], rows
            finally:
                assert await stop(proc) == 0

        run(scenario(), timeout=240)
