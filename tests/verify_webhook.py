#!/usr/bin/env python3
"""Independent Standard Webhooks verifier (stdlib only) used by tests/tests/webhooks.rs.

Input on stdin: JSON {"secret": str, "headers": {name: value}, "body_hex": str, "now": int}.
Follows https://www.standardwebhooks.com/ (and the reference libraries): a secret with the
"whsec_" prefix is base64 of the key, any other secret is the key's UTF-8 bytes (realtime's
documented rule); the signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the
webhook-signature header holds space-separated "v1,<base64>" entries; the timestamp must be
within 5 minutes of now. Prints "ok" and exits 0, or prints the reason and exits 1.
"""
import base64
import hashlib
import hmac
import json
import sys

TOLERANCE = 5 * 60


def key_of(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode("utf-8")


def verify(secret, headers, body, now):
    headers = {k.lower(): v for k, v in headers.items()}
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        ts_int = int(ts)
    except ValueError:
        return "bad timestamp"
    if abs(now - ts_int) > TOLERANCE:
        return "timestamp outside tolerance"
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key_of(secret), signed, hashlib.sha256).digest()).decode()
    for entry in sigs.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return None
    return "no matching v1 signature"


def main():
    data = json.load(sys.stdin)
    error = verify(data["secret"], data["headers"], bytes.fromhex(data["body_hex"]), data["now"])
    if error:
        print(error)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
