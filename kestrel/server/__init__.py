"""kestrel.server — the TAK-compatible server (`kestrel serve`), a thin asyncio shell around kestrel.cot.

Modules: `config` (TOML + flags), `listeners` (TCP, TLS with client certificates, UDP), `session`
(one streaming client: reader + writer task, bounded queue), `router` (groups, marti dest, contact
table, retained picture), `detail` (what routing reads from a detail), `store` (SQLite WAL),
`app` (`Server`: wiring, start/stop), `logs` (key=value lines, bounded and escaped), `metrics`
(counters per reason, Prometheus text at /metrics), `datadir` (one server per data dir: lock),
`cli` (`kestrel serve`),
`certs` (`kestrel certs`). See docs/server.md.
"""
