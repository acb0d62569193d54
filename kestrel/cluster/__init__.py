"""Many server processes and sites as one picture, over NATS (see docs/cluster.md).

- `wire`: pure: subjects, headers and the TAK-protobuf payload of an event crossing NATS.
- `backplane`: one server process on its site's NATS: publishes what its clients post, applies
  what the other processes posted (exactly once, by source and sequence), outbox while cut off.
- `link`: an edge site's link to its hub over a NATS leaf node: durable pull consumers through
  `$JS.<domain>.API`, both directions, driven by Kestrel.
- `natsd`: a nats-server child process; `workers`: `kestrel serve --workers N`; `status`.
"""
