"""The analyst's workbench: a web page to watch a PED run's video with its tracks, see it on a
map, and validate each track (`kestrel workbench RUN_DIR...`). Server in `server`, run folders in
`runs`, the page in `static/` (plain JS modules; MapLibre GL JS vendored under static/vendor/)."""
