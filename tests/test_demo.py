"""`kestrel demo` (what `make run` starts): server up, sample clip made, PED pushed to it."""

from __future__ import annotations

import json
from pathlib import Path

from kestrel.cli import main


def test_demo_runs_ped_on_the_sample_and_pushes_to_its_own_server(tmp_path: Path, capsys) -> None:
    rc = main(["demo", "--data", str(tmp_path), "--tcp-port", "0", "--tls-port", "0", "--workbench-port", "0", "--exit"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Kestrel TAK server is up" in out and "tls://127.0.0.1:" in out
    assert (tmp_path / "certs" / "clients" / "atak.p12").is_file()
    (run,) = sorted((tmp_path / "demo").glob("run-*"))
    report = json.loads((run / "report.json").read_text())
    assert report["frames"] == 300 and report["geolocated"] is True
    assert report["tracks"] >= 3 and report["review"] == {"pending": report["tracks"]}
    # only validated intelligence: the UAV and its footprint went out, no unreviewed track did
    assert report["push"]["by_type"] == {"a-f-A-M-F-Q": 1, "u-d-f": 1}
    assert f"ped review {run}" in out
    assert "analyst's workbench: http://127.0.0.1:" in out
