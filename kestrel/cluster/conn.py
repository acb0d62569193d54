"""Open a nats-py connection with a bounded first attempt (the client itself retries forever)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kestrel.cluster.errors import ClusterError


async def _quiet(_exc: Exception) -> None:
    """nats-py prints a traceback per failed attempt by default; the caller reports instead."""


async def connect(url: str, timeout: float, what: str, **options: Any) -> Any:
    """A connected `nats.NATS`, or ClusterError naming `what` and the URL after `timeout` seconds."""
    import nats

    nc = nats.NATS()
    options.setdefault("error_cb", _quiet)
    try:
        await asyncio.wait_for(nc.connect(url, connect_timeout=2, **options), timeout)
    except Exception as exc:  # OSError, NoServersError, TimeoutError
        with contextlib.suppress(Exception):
            await nc.close()
        raise ClusterError(f"{what} {url}: cannot connect ({type(exc).__name__})") from None
    return nc
