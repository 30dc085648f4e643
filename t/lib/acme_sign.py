#!/usr/bin/python3
"""Signs one ACME request as a flattened JWS, for the protocol tests.

    acme_sign.py KEY.pem URL [--nonce N] [--kid KID] [--payload TEXT]

Without --kid the header carries the key as "jwk".  ES256/384/512 for EC
keys, RS256 for RSA, EdDSA for Ed25519; an empty --payload is POST-as-GET.
Prints the JWS, or with --jwk-only the key's JWK.
"""

import argparse
import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric import rsa, utils


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_of(key):
    pub = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        n = pub.public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[key.curve.key_size]
        return {"kty": "EC", "crv": crv, "x": b64(n.x.to_bytes(size, "big")),
                "y": b64(n.y.to_bytes(size, "big"))}
    if isinstance(key, rsa.RSAPrivateKey):
        n = pub.public_numbers()
        return {"kty": "RSA", "e": b64(n.e.to_bytes(3, "big")),
                "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"))}
    raw = pub.public_bytes(serialization.Encoding.Raw,
                           serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def sign(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = key.curve.key_size
        h = {256: hashes.SHA256(), 384: hashes.SHA384(),
             521: hashes.SHA512()}[bits]
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        size = (bits + 7) // 8
        alg = {256: "ES256", 384: "ES384", 521: "ES512"}[bits]
        return alg, r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return "EdDSA", key.sign(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("key")
    p.add_argument("url", nargs="?")
    p.add_argument("--nonce")
    p.add_argument("--kid")
    p.add_argument("--payload", default="")
    p.add_argument("--jwk-only", action="store_true")
    a = p.parse_args()

    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)

    if a.jwk_only:
        print(json.dumps(jwk_of(key)))
        return 0

    alg, _ = sign(key, b"probe")
    hdr = {"alg": alg, "url": a.url}
    if a.nonce:
        hdr["nonce"] = a.nonce
    if a.kid:
        hdr["kid"] = a.kid
    else:
        hdr["jwk"] = jwk_of(key)

    prot = b64(json.dumps(hdr).encode())
    payload = b64(a.payload.encode()) if a.payload else ""
    _, sig = sign(key, (prot + "." + payload).encode())
    print(json.dumps({"protected": prot, "payload": payload,
                      "signature": b64(sig)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
