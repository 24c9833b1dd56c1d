#!/usr/bin/env python3
"""A consumer of Gatehouse's JetStream stream written in Python, sharing no code with Gatehouse.

It reads a stream the way a downstream team would (nats-py, a pull consumer, deliver-all) and
checks the published contract (SPEC §4, docs/audit-chain.md) message by message:

- the body validates against the committed JSON Schema of its type, `DIR/<type>.json`, with
  jsonschema's Draft 2020-12 validator with format checking on (`uuid`, and `date-time`
  through rfc3339-validator, which the script therefore requires); a type without a schema
  file is a failure; `DIR/envelope.json`, when present, must hold too;
- `Nats-Msg-Id` is the envelope's `id`, `Gatehouse-Position` its `position`, and the subject
  ends with `.<orgid>.<aggregate>.<name>` (the type without `gatehouse.` and `.vN`);
- each id arrives once (a second copy is reported and otherwise skipped, as a consumer that
  deduplicates by id would);
- per organisation, positions strictly increase in delivery order;
- per organisation, the hash chain is recomputed: c_0 = 32 zero bytes,
  c_n = SHA-256(c_(n-1) || JCS(envelope_n)), with scripts/verify_export.py's JCS, and each
  link is compared with the `Gatehouse-Chain` header.

Partial chains: an organisation's chain starts at its `gatehouse.org.created.v1` event. By
default the first message seen of each organisation must link from c_0 (it is the creation),
so a filter or a stream that misses the beginning of a chain is reported as a mismatch. With
`--anchor`, the first message of an organisation that does not link from c_0 is taken as an
anchor instead (its stated link on trust, listed under "anchors"), and the rest of the chain is
checked from it, as verify_export.py does for partial exports.

Usage:
  consumer.py --nats URL --stream S --subject FILTER --expect N --schemas DIR --timeout SECS
              [--anchor]

Prints one JSON object: {"messages", "expected", "distinct_ids", "duplicates", "invalid",
"out_of_order", "chain_mismatches", "anchors", "pending_after", "types", "heads"}, and exits 0
iff exactly N messages arrived, none was pending after them, and every list is empty (anchors
excepted). Exit 2 for bad arguments or an unreachable server.
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
import uuid

import jsonschema
import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from verify_export import jcs  # noqa: E402  (the auditors' JCS, standard library only)

GENESIS = bytes(32)
ORG_CREATED = "gatehouse.org.created.v1"
SAFE_TYPE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
VERSION = re.compile(r"^v[0-9]+$")
FETCH_BATCH = 256


class Schemas:
    """The schema files of a directory, loaded and checked once each."""

    def __init__(self, directory):
        self.directory = directory
        self.validators = {}
        self.envelope = self._load("envelope.json")

    def _load(self, name):
        path = os.path.join(self.directory, name)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        return jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )

    def for_type(self, event_type):
        if event_type not in self.validators:
            self.validators[event_type] = self._load(f"{event_type}.json")
        return self.validators[event_type]


def errors_of(validator, body):
    found = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return ["/" + "/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in found]


def no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate keys in an object: {sorted(keys)}")
    return dict(pairs)


def header(msg, name):
    for key, value in (msg.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def subject_suffix(org_id, event_type):
    body = event_type[len("gatehouse."):] if event_type.startswith("gatehouse.") else event_type
    rest, _, version = body.rpartition(".")
    if rest and VERSION.match(version):
        body = rest
    return f".{org_id}.{body}"


def check_message(msg, schemas):
    """The envelope (or None) and the list of what is wrong with one message."""
    problems = []
    try:
        body = json.loads(msg.data.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as e:
        return None, [f"the body is not JSON: {e}"]
    if not isinstance(body, dict):
        return None, ["the body is not a JSON object"]
    event_type = body.get("type")
    if not isinstance(event_type, str) or not SAFE_TYPE.match(event_type):
        problems.append(f"no usable type: {event_type!r}")
    else:
        validator = schemas.for_type(event_type)
        if validator is None:
            problems.append(f"no schema {event_type}.json in {schemas.directory}")
        else:
            problems += errors_of(validator, body)
    if schemas.envelope is not None:
        problems += ["envelope.json: " + e for e in errors_of(schemas.envelope, body)]
    msg_id, position = header(msg, "Nats-Msg-Id"), header(msg, "Gatehouse-Position")
    if msg_id != body.get("id"):
        problems.append(f"Nats-Msg-Id {msg_id!r} is not the envelope's id {body.get('id')!r}")
    if position != str(body.get("position")):
        problems.append(
            f"Gatehouse-Position {position!r} is not the envelope's position {body.get('position')!r}"
        )
    if isinstance(event_type, str) and isinstance(body.get("orgid"), str):
        suffix = subject_suffix(body["orgid"], event_type)
        if not msg.subject.endswith(suffix):
            problems.append(f"subject {msg.subject} does not end with {suffix}")
    return body, problems


class Report:
    def __init__(self, expected, anchor):
        self.expected = expected
        self.anchor = anchor
        self.messages = 0
        self.seen = {}  # id -> positions it came with
        self.invalid = []
        self.out_of_order = []
        self.chain_mismatches = []
        self.anchors = {}
        self.types = {}
        self.last_position = {}  # org -> last position delivered
        self.stated = {}  # org -> the previous message's Gatehouse-Chain (bytes)
        self.heads = {}  # org -> link recomputed from c_0 (or the anchor), never from a header
        self.pending_after = None

    def add(self, msg, schemas):
        self.messages += 1
        body, problems = check_message(msg, schemas)
        position = body.get("position") if body else header(msg, "Gatehouse-Position")
        event_type = body.get("type") if body else None
        for problem in problems:
            self.invalid.append({"position": position, "type": event_type, "error": problem})
        if body is None:
            return
        event_id = body.get("id")
        self.seen.setdefault(event_id, []).append(position)
        if len(self.seen[event_id]) > 1:
            return  # a copy: reported under duplicates, not applied twice
        if isinstance(event_type, str):
            self.types[event_type] = self.types.get(event_type, 0) + 1
        org = body.get("orgid")
        if not isinstance(org, str):
            return
        if isinstance(position, int) and not isinstance(position, bool):
            last = self.last_position.get(org)
            if last is not None and position <= last:
                self.out_of_order.append({"org": org, "position": position, "after": last})
            self.last_position[org] = position if last is None else max(last, position)
        self.link(org, position, event_type, body, header(msg, "Gatehouse-Chain"))

    def link(self, org, position, event_type, body, chain_header):
        def mismatch(reason, expected=None):
            self.chain_mismatches.append(
                {"org": org, "position": position, "type": event_type, "header": chain_header,
                 "expected": expected, "reason": reason}
            )

        try:
            stated = bytes.fromhex(chain_header or "")
            if len(stated) != 32:
                raise ValueError
        except ValueError:
            stated = None
        try:
            canonical = jcs(body)
        except ValueError as e:
            mismatch(f"cannot canonicalise the envelope: {e}")
            self.stated[org] = stated
            return
        first = org not in self.heads
        if first:
            from_genesis = hashlib.sha256(GENESIS + canonical).digest()
            if self.anchor and event_type != ORG_CREATED and stated not in (None, from_genesis):
                # The beginning of this chain is not in what we read: trust this link.
                self.anchors[org] = {"position": position, "chain": stated.hex()}
                self.heads[org] = self.stated[org] = stated
                return
            previous = head = GENESIS
        else:
            # Each link is checked from the previous stated one, so one bad message is reported
            # once; the head is recomputed without trusting any header.
            previous, head = self.stated[org] or self.heads[org], self.heads[org]
        expected = hashlib.sha256(previous + canonical).digest()
        if stated is None:
            mismatch("no Gatehouse-Chain header of 64 hex digits", expected.hex())
        elif stated != expected and first and event_type != ORG_CREATED:
            mismatch("the organisation's first message does not link from c_0: the beginning "
                     "of its chain (gatehouse.org.created.v1) was not read", expected.hex())
        elif stated != expected:
            mismatch("Gatehouse-Chain differs from the recomputed link", expected.hex())
        self.heads[org] = hashlib.sha256(head + canonical).digest()
        self.stated[org] = stated

    def duplicates(self):
        return [{"id": i, "positions": p} for i, p in self.seen.items() if len(p) > 1]

    def ok(self):
        return (
            self.messages == self.expected
            and self.pending_after == 0
            and not self.invalid
            and not self.duplicates()
            and not self.out_of_order
            and not self.chain_mismatches
            and all(self.stated.get(org) == head for org, head in self.heads.items())
        )

    def as_json(self):
        return {
            "messages": self.messages,
            "expected": self.expected,
            "distinct_ids": len(self.seen),
            "duplicates": self.duplicates(),
            "invalid": self.invalid,
            "out_of_order": self.out_of_order,
            "chain_mismatches": self.chain_mismatches,
            "anchors": self.anchors,
            "pending_after": self.pending_after,
            "types": dict(sorted(self.types.items())),
            "heads": {org: head.hex() for org, head in sorted(self.heads.items())},
        }


async def consume(args, schemas):
    report = Report(args.expect, args.anchor)
    deadline = time.monotonic() + args.timeout
    async def quiet(_error):
        pass  # the failure, if it is one, is raised by connect or by the next request

    nc = await nats.connect(args.nats, connect_timeout=min(10, args.timeout),
                            max_reconnect_attempts=3, error_cb=quiet)
    js = nc.jetstream()
    name = f"py_consumer_{uuid.uuid4().hex}"
    config = ConsumerConfig(
        name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        # No redelivery while we read: a second copy of an id must come from the stream itself.
        ack_wait=args.timeout + 60,
        # Ephemeral: the server removes it if we die before deleting it ourselves.
        inactive_threshold=max(30.0, args.timeout),
        filter_subject=args.subject,
    )
    try:
        sub = await js.pull_subscribe(args.subject, stream=args.stream, config=config)
        try:
            while report.messages < args.expect:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch = await sub.fetch(min(FETCH_BATCH, args.expect - report.messages),
                                            timeout=min(left, 2.0))
                except nats.errors.TimeoutError:
                    continue
                for msg in batch:
                    report.add(msg, schemas)
                    await msg.ack()
            # Messages of the filter not delivered yet: more than we were told to expect.
            report.pending_after = (await sub.consumer_info()).num_pending
        finally:
            try:
                await js.delete_consumer(args.stream, name)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await nc.drain()
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--subject", required=True, help="the consumer's filter subject")
    parser.add_argument("--expect", required=True, type=int)
    parser.add_argument("--schemas", required=True, help="the directory of the schema files")
    parser.add_argument("--timeout", required=True, type=float, help="seconds, in all")
    parser.add_argument("--anchor", action="store_true",
                        help="anchor a chain whose beginning was not read at its first link")
    args = parser.parse_args()
    if "date-time" not in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers:
        # jsonschema skips a format it cannot check without saying so: refuse rather than pass.
        parser.error("jsonschema cannot check date-time here: pip install rfc3339-validator")
    if not os.path.isdir(args.schemas):
        parser.error(f"no schema directory {args.schemas}")
    try:
        report = asyncio.run(consume(args, Schemas(args.schemas)))
    except (OSError, nats.errors.Error, jsonschema.SchemaError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_json(), sort_keys=True))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
