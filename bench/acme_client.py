#!/usr/bin/python3
"""ACME polling against a cached status GET, one keep-alive connection.

    acme_client.py HOST PORT ERROR_LOG SIM_URL N

Makes an account and two orders on /acme/ (one approved through the
simulator's control API, one left processing), then times, in rounds:
HEAD /acme/new-nonce, GET /request/<id> (the approved one's status, a
cache hit), and POST-as-GET of each order with JWS signed beforehand
(one fresh nonce each).  Prints one line per measurement:
"name requests seconds".
"""

import base64
import http.client
import json
import re
import sys
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

HOST, PORT, LOG, SIM, N = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    sys.argv[4], int(sys.argv[5])
BASE = "http://%s:%d/acme/" % (HOST, PORT)
KEY = ec.generate_private_key(ec.SECP256R1())
conn = http.client.HTTPConnection(HOST, PORT)


def b64(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def jwk():
    n = KEY.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")),
            "y": b64(n.y.to_bytes(32, "big"))}


def nonce():
    conn.request("HEAD", "/acme/new-nonce")
    r = conn.getresponse()
    r.read()
    return r.getheader("Replay-Nonce")


def jws(url, payload, kid=None):
    hdr = {"alg": "ES256", "nonce": nonce(), "url": url}
    if kid:
        hdr["kid"] = kid
    else:
        hdr["jwk"] = jwk()
    p = b64(json.dumps(hdr).encode())
    pl = b64(payload.encode()) if payload else ""
    r, s = utils.decode_dss_signature(
        KEY.sign((p + "." + pl).encode(), ec.ECDSA(hashes.SHA256())))
    return json.dumps({"protected": p, "payload": pl, "signature":
                       b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})


def post(url, body):
    conn.request("POST", url[len("http://%s:%d" % (HOST, PORT)):], body,
                 {"Content-Type": "application/jose+json"})
    r = conn.getresponse()
    return r, r.read()


def order(kid, name):
    r, b = post(BASE + "new-order", jws(BASE + "new-order", json.dumps(
        {"identifiers": [{"type": "dns", "value": name}]}), kid))
    url = r.getheader("Location")
    o = json.loads(b)
    k = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ).add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                    False).sign(k, hashes.SHA256())
    der = csr.public_bytes(serialization.Encoding.DER)
    post(o["finalize"], jws(o["finalize"], json.dumps({"csr": b64(der)}),
                            kid))
    return url


def sign_id(n):
    deadline = time.time() + 10
    while time.time() < deadline:
        ids = re.findall(r"sign request (\S+) submitted", open(LOG).read())
        if len(ids) >= n:
            return ids[n - 1]
        time.sleep(0.1)
    raise SystemExit("no sign request id in the log")


def timed(name, fn, items):
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    print("%s %d %.6f" % (name, len(items), time.perf_counter() - t0),
          flush=True)


def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)


def head_nonce(_):
    conn.request("HEAD", "/acme/new-nonce")
    r = conn.getresponse()
    r.read()
    assert r.status == 200


def main():
    r, _ = post(BASE + "new-account", jws(BASE + "new-account", "{}"))
    kid = r.getheader("Location")
    valid = order(kid, "valid.svc.example")
    vid = sign_id(1)
    urllib.request.urlopen(urllib.request.Request(
        SIM + "/_sim/approve/" + vid, data=b"{}", method="POST")).read()
    processing = order(kid, "pending.svc.example")
    sign_id(2)

    # wait for valid
    for _ in range(50):
        r, b = post(valid, jws(valid, "", kid))
        if json.loads(b)["status"] == "valid":
            break
        time.sleep(0.2)

    for rnd in range(2):
        timed("newNonce", head_nonce, range(N))
        timed("status_get", get, ["/request/" + vid] * N)
        for name, url in (("order_valid", valid),
                          ("order_processing", processing)):
            bodies = [jws(url, "", kid) for _ in range(N)]

            def poll(body, url=url):
                rr, bb = post(url, body)
                assert rr.status == 200, (rr.status, bb)
            timed(name, poll, bodies)


main()
