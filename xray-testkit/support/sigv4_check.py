"""Checks a SigV4 signature made by xray-rs with botocore's own signer.

Usage: sigv4_check.py CASE.json, where the case holds the request exactly as the server
received it (method, url, headers, body in hex) and the credentials and region it was signed
with. Prints the signature botocore computes and exits 0 only if it equals the request's.
"""
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main(path):
    with open(path) as f:
        case = json.load(f)
    headers = {k.lower(): v for k, v in case["headers"]}
    auth = headers["authorization"]
    algorithm, rest = auth.split(" ", 1)
    assert algorithm == "AWS4-HMAC-SHA256", algorithm
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    scope = parts["Credential"].split("/")
    assert scope[0] == case["access_key"], scope
    assert scope[2:] == [case["region"], "xray", "aws4_request"], scope
    signed = parts["SignedHeaders"].split(";")
    for required in ("host", "x-amz-date", "content-type"):
        assert required in signed, (required, signed)
    if case.get("token"):
        assert "x-amz-security-token" in signed, signed
    # Sign only what the request signed; botocore derives `host` from the URL.
    request = AWSRequest(
        method=case["method"],
        url=case["url"],
        data=bytes.fromhex(case["body_hex"]),
        headers={h: headers[h] for h in signed if h != "host"},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(
        Credentials(case["access_key"], case["secret_key"], case.get("token")),
        "xray",
        case["region"],
    )
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    expected = signer.signature(string_to_sign, request)
    print(expected)
    if expected != parts["Signature"]:
        print("canonical request:\n" + canonical, file=sys.stderr)
        print("ours: " + parts["Signature"], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
