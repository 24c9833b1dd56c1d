#!/usr/bin/env python3
"""Verify a Gatehouse NDJSON audit export offline, independently of Gatehouse's own code.

Usage: python3 scripts/verify_export.py [--json] [--from-genesis] EXPORT.ndjson   (- for stdin)

Standard library only. Implements docs/audit-chain.md: c_0 = 32 zero bytes,
c_n = SHA-256(c_(n-1) || JCS(envelope_n)). Prints the same line (or, with --json, the same
report) as `gatehouse audit verify --file`, and exits 1 when the export does not verify.
"""

import hashlib
import json
import sys

GENESIS = bytes(32)
ORG_CREATED = "gatehouse.org.created.v1"


def jcs(value):
    """RFC 8785 canonical JSON of a value without floats, as UTF-8 bytes."""
    return _jcs(value).encode("utf-8")


def _jcs(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        raise ValueError("a float cannot be canonicalised: envelopes carry integers only")
    if isinstance(v, str):
        # JSON string escaping as RFC 8785 asks: \" \\ \b \f \n \r \t, other controls as
        # \u00xx (lower-case hex), everything else as itself.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(_jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code unit order
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _jcs(v[k]) for k in keys) + "}"
    raise ValueError("not a JSON value")


class Malformed(Exception):
    pass


def verify(lines, from_genesis=False):
    stated = None  # the link before the next event, as the previous line states it
    computed = GENESIS  # the link recomputed from the genesis (or the anchor)
    events = 0
    first_bad = None
    anchor = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or set(obj) != {"chain", "event"}:
                raise ValueError("not an export line {\"chain\": hex, \"event\": envelope}")
            chain = bytes.fromhex(obj["chain"]) if isinstance(obj["chain"], str) else b""
            if len(chain) != 32:
                raise ValueError("chain must be 64 hexadecimal digits")
            event = obj["event"]
            if not isinstance(event, dict):
                raise ValueError("event must be a JSON object")
            position = event.get("position")
            if not isinstance(position, int) or isinstance(position, bool):
                raise ValueError("the event has no integer position")
        except ValueError as e:
            raise Malformed(f"line {number}: {e}")
        events += 1
        try:
            canonical = jcs(event)
        except ValueError:
            first_bad = position if first_bad is None else min(first_bad, position)
            stated = chain
            continue
        if stated is None:
            previous = GENESIS
            starts_at_genesis = hashlib.sha256(GENESIS + canonical).digest() == chain
            if not from_genesis and not starts_at_genesis and event.get("type") != ORG_CREATED:
                # A partial export (a start_time): its first link is taken on trust.
                anchor = {"position": position, "chain": chain.hex()}
                computed = stated = chain
                continue
        else:
            previous = stated
        if hashlib.sha256(previous + canonical).digest() != chain:
            first_bad = position if first_bad is None else min(first_bad, position)
        computed = hashlib.sha256(computed + canonical).digest()
        stated = chain
    report = {
        "verified": first_bad is None and (stated or GENESIS) == computed,
        "events": events,
        "head": computed.hex(),
        "first_bad_position": first_bad,
    }
    if anchor is not None:
        report["anchor"] = anchor
    return report


def summary(r):
    a = r.get("anchor")
    frm = (f" from position {a['position']} (anchored at that event's stated chain, not from genesis)"
           if a else "")
    if r["first_bad_position"] is not None:
        return f"NOT VERIFIED: first bad position {r['first_bad_position']} ({r['events']} events{frm}, head {r['head']})"
    if r["verified"]:
        return f"verified: {r['events']} events{frm}, head {r['head']}"
    return f"NOT VERIFIED ({r['events']} events{frm}, head {r['head']})"


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    if len(args) != 1 or not flags <= {"--json", "--from-genesis"}:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        if args[0] == "-":
            report = verify(sys.stdin, "--from-genesis" in flags)
        else:
            with open(args[0], encoding="utf-8") as f:
                report = verify(f, "--from-genesis" in flags)
    except (Malformed, OSError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, separators=(",", ":")) if "--json" in flags else summary(report))
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
