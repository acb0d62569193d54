"""The TAK Server HTTP API ("Marti") that ATAK, WinTAK, iTAK and TAK tools call.

Enrollment (`/Marti/api/tls/…`), data packages and files (`/Marti/sync/…`), what tools query
(version, clientEndPoints, contacts, groups, device profile), the video registry (`/Marti/vcm`,
`/Marti/api/video`) and a Mission / Data Sync subset (`/Marti/api/missions…`).

Layers, bottom up: `message` (the request/response records), `multipart` and `wire` (sans-I/O
parsers), `users` (Basic-auth users), `files`, `video`, `missions`, `enroll` (state and pure
handlers), `routes` (the table of endpoints), `shell` (the asyncio HTTP/1.1 listeners over h11)
and `service` (plugs it all into `kestrel serve`: same process, loop, router and groups).
See docs/marti.md.
"""
