#!/usr/bin/env python3
"""A small SMTP server for Gatehouse's tests (needs aiosmtpd: `python3 -m pip install aiosmtpd`).

Listens on 127.0.0.1:PORT and writes every message it accepts into DIR as one JSON file
(`<ns>-<uuid>.json`, written to a dot-file first and renamed, so a reader never sees half of it):

    {"mail_from", "rcpt_tos", "headers": {name: value}, "text", "html", "raw"}

`text` and `html` are the decoded bodies of the text/plain and text/html alternatives (null when
absent); `raw` is the message as received. While the file REFUSE_FLAG exists, every message is
refused with `451 4.3.0` (a temporary failure) and nothing is written.

    python3 smtp_sink.py --port PORT --dir DIR [--refuse-flag FILE]
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import time
import uuid

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out_dir, refuse_flag):
        self.out_dir = out_dir
        self.refuse_flag = refuse_flag

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_flag and os.path.exists(self.refuse_flag):
            return "451 4.3.0 Temporarily refusing messages"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "headers": {name: str(value) for name, value in message.items()},
            "text": body(message, "plain"),
            "html": body(message, "html"),
            "raw": raw.decode("utf-8", "replace"),
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex}"
        tmp = os.path.join(self.out_dir, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.out_dir, f"{name}.json"))
        return "250 2.0.0 Message accepted"


def body(message, subtype):
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content()


async def serve(port, out_dir, refuse_flag):
    loop = asyncio.get_running_loop()
    sink = Sink(out_dir, refuse_flag)
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="smtp-sink.test", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=port,
    )
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--refuse-flag")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    asyncio.run(serve(args.port, args.dir, args.refuse_flag))


if __name__ == "__main__":
    main()
