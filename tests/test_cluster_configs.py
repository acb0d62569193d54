"""The example NATS configs in docs/cluster/ are accepted by the real nats-server, and the edge
becomes a leaf node of the hub with its own JetStream domain (only addresses and paths replaced)."""

from __future__ import annotations

import time
from pathlib import Path

from kestrel.cluster.natsd import Natsd, NatsdConfig, free_port
from tests.cluster_support import NEEDS_NATS
from tests.conftest import ROOT

pytestmark = NEEDS_NATS


def test_example_hub_and_edge_configs(tmp_path: Path) -> None:
    hub_port, edge_port, leaf_port = free_port(), free_port(), free_port()
    hub_text = (ROOT / "docs/cluster/hub.conf").read_text()
    edge_text = (ROOT / "docs/cluster/edge.conf").read_text()
    hub_text = (hub_text.replace("127.0.0.1:4222", f"127.0.0.1:{hub_port}")
                .replace("0.0.0.0:7422", f"127.0.0.1:{leaf_port}")
                .replace("/var/lib/kestrel/nats-hub", str(tmp_path / "hub")))
    edge_text = (edge_text.replace("127.0.0.1:4222", f"127.0.0.1:{edge_port}")
                 .replace("hub.example:7422", f"127.0.0.1:{leaf_port}")
                 .replace("/var/lib/kestrel/nats-edge1", str(tmp_path / "edge")))
    hub = Natsd(NatsdConfig(tmp_path / "hub", hub_port, raw=hub_text), tmp_path / "hub.conf").start()
    try:
        edge = Natsd(NatsdConfig(tmp_path / "edge", edge_port, raw=edge_text), tmp_path / "edge.conf").start()
        try:
            deadline = time.monotonic() + 30
            while not any('JetStream using domains: local "edge1", remote "hub"' in ln for ln in edge.log):
                assert time.monotonic() < deadline, edge.log[-5:]
                time.sleep(0.05)
        finally:
            edge.stop()
    finally:
        hub.stop()
