"""Compare our decoded KLV values with KWIVER's JSON gold (shared by the KLV gold tests).

KWIVER's JSON conventions: mapped floats are {"length": n, "value": x}; enums
{"integer": k, "string": name}; bit sets a list of such enums; nested sets a list of
{"key": {"integer": tag}, "value": v}; UUIDs {"bytes", "hex"}; VTargets {"id", "set"}.
"""

from __future__ import annotations

import math
from typing import Any

from kestrel.klv.codecs import Bits, Codec
from kestrel.klv.imapb import ImapSpecial
from kestrel.klv.localset import Nested, SetSeries, SetSpec
from kestrel.klv.packet import KlvPacket


def _tol(codec: Codec | None, n: int) -> float:
    res = getattr(codec, "resolution", None)
    return float(res(n)) if res is not None else 1e-9


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=tol)


def compare_set(gold: list[dict[str, Any]], ours: dict[Any, Any], spec: SetSpec, path: str) -> list[str]:
    errs: list[str] = []
    gold_tags = [g["key"]["integer"] for g in gold]
    if sorted(gold_tags) != sorted(k for k in ours if k != spec.checksum_tag):
        errs.append(f"{path}: tags differ: gold {sorted(gold_tags)} ours {sorted(ours)}")
    for g in gold:
        tag = g["key"]["integer"]
        if tag not in ours:
            continue
        item = spec.table.get(tag)
        errs += compare_value(g["value"], ours[tag], item.codec if item else None, f"{path}/{tag}")
    return errs


def compare_value(g: Any, o: Any, codec: Codec | None, path: str) -> list[str]:
    bad = [f"{path}: gold {str(g)[:200]!r} != ours {str(o)[:200]!r}"]
    if g is None:  # KWIVER's JSON prints opaque byte blobs (e.g. a VChip's embedded image) as null
        return [] if o is None or (codec is not None and codec.kind == "bytes") else bad
    if isinstance(o, bytes) and not isinstance(g, str):
        if codec is not None and codec.kind == "raw":
            return [f"RAW {path}"]  # an item we declare uninterpreted (kept losslessly)
        return [f"{path}: ours kept raw bytes, gold has {str(g)[:120]}"]
    if isinstance(g, dict) and set(g) == {"length", "value"}:
        gv = g["value"]
        if isinstance(gv, dict) and "kind" in gv:
            return [] if isinstance(o, ImapSpecial) else bad
        if not isinstance(o, int | float):
            return bad
        return [] if close(float(gv), float(o), _tol(codec, g["length"])) else bad
    if isinstance(g, dict) and set(g) == {"integer", "string"}:
        return [] if o == g["integer"] else bad
    if isinstance(g, dict) and "kind" in g:  # an IMAPB special value
        kinds = {0: "user", 1: "qnan", 2: "snan", 3: "below_min", 5: "above_max"}
        ok = isinstance(o, ImapSpecial) and o.kind == kinds.get(g["kind"]["integer"])
        ok = ok and o.negative == bool(g.get("sign", False)) and o.other_bits == int(g.get("other-bits", 0))
        return [] if ok else bad
    if isinstance(g, dict) and set(g) == {"bytes", "hex"}:
        return [] if isinstance(o, str) and o.replace("-", "") == g["hex"].replace("-", "") else bad
    if isinstance(g, str):
        if isinstance(o, str) and (o == g or o == g.encode("latin-1").decode("utf-16-be", "replace")):
            return []
        if isinstance(o, bytes) and codec is not None and codec.kind == "bytes":
            import base64  # KWIVER prints opaque user bytes as base64

            return [] if base64.b64decode(g) == o else bad
        return bad
    if isinstance(g, bool) or isinstance(g, int):
        if isinstance(o, int):
            return [] if o == g else bad
        if isinstance(o, float):
            return [] if close(float(g), o) else bad
        return bad
    if isinstance(g, float):
        return [] if isinstance(o, int | float) and close(g, float(o), 1e-6 * max(1.0, abs(g))) else bad
    if g == [] and o is None and isinstance(codec, Nested | SetSeries):
        return []  # an empty set/series travels as a zero-length item, which decodes to None
    if isinstance(g, list) and isinstance(codec, SetSeries):
        if not isinstance(o, list) or len(o) != len(g):
            return bad
        return [e for i, (gi, oi) in enumerate(zip(g, o, strict=True))
                for e in compare_set(gi, oi.tags, codec.spec, f"{path}[{i}]")]
    if isinstance(g, list):
        if isinstance(codec, Nested) or isinstance(o, KlvPacket):
            if not isinstance(o, KlvPacket):
                return bad
            spec = codec.spec if isinstance(codec, Nested) else None
            if spec is None:
                return bad
            return compare_set(g, o.tags, spec, path)
        if isinstance(codec, Bits) or (g and isinstance(g[0], dict) and set(g[0]) == {"integer", "string"}):
            bits = {x["integer"] for x in g}
            if isinstance(o, int):
                return [] if bits == {i for i in range(o.bit_length()) if o >> i & 1} else bad
            return [] if isinstance(o, list) and set(o) == bits else bad
        if not isinstance(o, list) or len(o) != len(g):
            return bad
        errs: list[str] = []
        for i, (gi, oi) in enumerate(zip(g, o, strict=True)):
            if isinstance(gi, dict) and set(gi) == {"id", "set"}:  # VTarget
                from kestrel.klv import st0903

                if getattr(oi, "target_id", None) != gi["id"]:
                    errs += bad
                    continue
                errs += compare_set(gi["set"], oi.tags, st0903.VTARGET_SPEC, f"{path}[{i}]")
            else:
                errs += compare_value(gi, oi, None, f"{path}[{i}]")
        return errs
    if isinstance(g, dict):
        if not isinstance(o, dict):
            return bad
        errs = []
        for k, gv in g.items():
            if k in ("semi-length", "element-size") and gv == 0:  # KWIVER: 0 = "no length chosen"
                continue
            if k == "apa" and gv == {"integer": 0, "string": "Unknown APA"}:  # KWIVER: not chosen
                continue
            ov = o.get(k)
            if isinstance(gv, dict) and set(gv) == {"integer", "string"}:
                errs += [] if ov == gv["integer"] else [f"{path}.{k}: {gv} != {ov}"]
            else:
                errs += compare_value(gv, ov, None, f"{path}.{k}")
        return errs
    return bad
