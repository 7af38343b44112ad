"""The Go provider's object version, written independently of src/stages/version/go/.

Reads {"cases": [...]} on stdin and writes {"results": [...]} on stdout. Each case has a
hex "key", a hex "content" and a "secret": the fields of the Go provider's config.Secret,
whose SecretArgs is null or a typed value:

    ["nil"] ["bool", b] ["int", "digits"] ["uint", "digits"] ["float", "16 hex digits of
    the IEEE-754 bits"] ["str", s] ["time", "RFC 3339 text"] ["list", [...]]
    ["map", [[key, value], ...]]

Each result has the "json" that Go's encoding/json.Marshal writes for the struct and the
"version": base64.URLEncoding(HMAC-SHA256(key, json || content)).

Rules of Go's encoding/json (Go 1.22+), as implemented here:
- struct: exported fields in declaration order, the field name as the key;
- strings: '"' and '\\' escaped, \\b \\f \\n \\r \\t, other bytes < 0x20 and < > & as
  \\u00xx (lower-case hex), U+2028/U+2029 as \\u2028/\\u2029, the rest as UTF-8;
- map keys sorted by their UTF-8 bytes;
- float64: shortest digits that round-trip; exponent form when |f| < 1e-6 or >= 1e21,
  with "e+dd" (at least two digits) or "e-d" (no padding); otherwise plain decimal.
Standard library only.
"""

import base64
import decimal
import hashlib
import hmac
import json
import struct
import sys

FIELDS = [
    "ObjectName",
    "SecretPath",
    "SecretKey",
    "Method",
    "SecretArgs",
    "FilePermission",
    "Encoding",
]


def go_string(s):
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif cp < 0x20 or ch in "<>&" or cp in (0x2028, 0x2029):
            out.append("\\u%04x" % cp)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_float(f):
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("json: unsupported value")
    sign = "-" if str(f).startswith("-") else ""
    a = abs(f)
    if a == 0:
        return sign + "0"
    # repr() gives the shortest digits that round-trip (David Gay's algorithm).
    t = decimal.Decimal(repr(a)).as_tuple()
    raw = "".join(map(str, t.digits))
    point = len(raw) + t.exponent  # the value is 0.<raw> * 10**point
    digits = raw.rstrip("0")
    e10 = point - 1
    if a < 1e-6 or a >= 1e21:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        if e10 < 0:
            return sign + mant + "e-" + str(-e10)
        return sign + mant + "e+" + ("%02d" % e10)
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if len(digits) <= point:
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


def go_value(v):
    kind = v[0]
    if kind == "nil":
        return "null"
    if kind == "bool":
        return "true" if v[1] else "false"
    if kind in ("int", "uint"):
        return str(int(v[1]))
    if kind == "float":
        return go_float(struct.unpack(">d", bytes.fromhex(v[1]))[0])
    if kind in ("str", "time"):
        return go_string(v[1])
    if kind == "list":
        return "[" + ",".join(go_value(x) for x in v[1]) + "]"
    if kind == "map":
        items = sorted(v[1], key=lambda kv: kv[0].encode("utf-8"))
        return "{" + ",".join(go_string(k) + ":" + go_value(x) for k, x in items) + "}"
    raise ValueError("unknown kind " + kind)


def go_secret_json(secret):
    parts = []
    for name in FIELDS:
        value = secret[name]
        if name == "SecretArgs":
            text = "null" if value is None else go_value(value)
        elif name == "FilePermission":
            text = str(int(value))
        else:
            text = go_string(value)
        parts.append(go_string(name) + ":" + text)
    return "{" + ",".join(parts) + "}"


def main():
    cases = json.load(sys.stdin)["cases"]
    results = []
    for case in cases:
        text = go_secret_json(case["secret"])
        mac = hmac.new(
            bytes.fromhex(case["key"]),
            text.encode("utf-8") + bytes.fromhex(case["content"]),
            hashlib.sha256,
        )
        results.append(
            {
                "name": case["name"],
                "json": text,
                "version": base64.urlsafe_b64encode(mac.digest()).decode("ascii"),
            }
        )
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
