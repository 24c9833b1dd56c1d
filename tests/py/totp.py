#!/usr/bin/env python3
"""An independent TOTP (RFC 6238) for the tests: reads an otpauth:// URI, prints the code.

Standard library only, written from the RFC, so it shares nothing with Gatehouse's Rust code.

    python3 totp.py 'otpauth://totp/...?...&secret=BASE32' [unix_time]
"""
import base64
import hashlib
import hmac
import struct
import sys
import time
from urllib.parse import parse_qs, urlparse


def code(secret_b32: str, at: int, digits: int = 6, period: int = 30) -> str:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    key = base64.b32decode(padded)
    counter = struct.pack(">Q", at // period)
    mac = hmac.new(key, counter, hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def main() -> None:
    uri = urlparse(sys.argv[1])
    if uri.scheme != "otpauth" or uri.netloc != "totp":
        sys.exit(f"not a TOTP URI: {sys.argv[1]!r}")
    query = parse_qs(uri.query)
    if query.get("issuer") != ["Gatehouse"]:
        sys.exit("the issuer is not Gatehouse")
    algorithm = query.get("algorithm", ["SHA1"])[0]
    if algorithm != "SHA1":
        sys.exit(f"unexpected algorithm {algorithm}")
    digits = int(query.get("digits", ["6"])[0])
    period = int(query.get("period", ["30"])[0])
    at = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    print(code(query["secret"][0], at, digits, period))


if __name__ == "__main__":
    main()
