#!/usr/bin/python3
"""Securosys TSB simulator for ngx_tsb_module's tests, benchmarks and demo.

Speaks the subset of the TSB REST API the gateway uses (certificate sign,
synchronous sign, request status/cancel, plain certificate import) and signs
real X.509 certificates with a local CA, so tests can check what the gateway
hands out with OpenSSL.  A control API under /_sim/ (no auth) approves,
rejects or expires requests, injects faults and reports what the simulator
saw.  See sim/README.md.

Only the Python standard library and python3-cryptography (Debian 12) are
used.  Nothing sleeps except injected delays; idle keep-alive connections are
dropped after IDLE_TIMEOUT_S (--idle-timeout-ms).
"""

import argparse
import base64
import binascii
import collections
import datetime
import hmac
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_BODY = 1024 * 1024          # bytes; larger bodies get 413
IDLE_TIMEOUT_S = 300            # keep-alive connections idle this long close
HANDSHAKE_TIMEOUT_S = 10
RECORDED_MAX = 200
DEFAULT_VALIDITY_DAYS = 365
CA_COMMON_NAME = "TSB Simulator CA"

# Two RSA-2048 SubjectPublicKeyInfo blobs in base64, the way the TSB names
# the approvers of a request (their Authorization App public keys).
DEFAULT_APPROVERS = [
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApa1IA9t/IkorP5nAW/j5j1Oi"
    "pGoGeEIXZ9keoRrk1lWu++5Zy71MV0lqH1gvOKdtZAwivlw+go1Mj2pKfWua2oPHnLW5"
    "p8+J4yScL2JGDPTQvxNUZQVN2ikuCMFOt4vJwjTan+qQoWOfOWahgmasAZWwtLN8XVmJ"
    "DVE2+LZEwsPMnmZqBF4mBn7123V7twFrbId+wXx4d8ZqdsGEJIEChUXKIH8xa32xyNQU"
    "pATqdjqcoaRwyrUg092bXAUbcymhmNd3IS7euGlkN+PxAi1KCi4HXfkCQrsU8felYEmS"
    "olKnxfE93vG8Y1XA2ZfKPWN+hU0egfs3KNzSQFaP7+e1qQIDAQAB",
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwuXyG1Mz2iSiresDMT+Kpz7q"
    "Bz2jYU4usEcS0w/58K+JUFifVedzDrK+NxqM9NdUWkiAKs9NOIx5V8v3SwhNGLzY0lzq"
    "INyWH0IY/NOfUadZXVVValQwx6qlhXn8fhmaknORAOgbghOz3i+ofskgJpBaFU9kHxlH"
    "l8cRQlFiWbjB73TgdGBsYS/jYJoQIyx4HTkV/Ii2zfY58qXRI8A7LxIgtusKyEkhHTTA"
    "Ey/87pz9BEq9QpmWY+/kR9ck/l6YG9RmhPQJwcTD/q6X4qusZtCG8WTsaJ4Z2YMxmPa1"
    "e6uvGIayEpU64QX9zWTOqT6I21c3BmlWZ9g1J7lkQ2zViQIDAQAB",
]

# Route templates: the keys of /_sim/counts and the "route" of a fault.
ROUTE_SIGN = "POST /v1/certificate/sign"
ROUTE_SYNC_SIGN = "POST /v1/certificate/synchronous/sign"
ROUTE_GET_REQUEST = "GET /v1/request/{id}"
ROUTE_DELETE_REQUEST = "DELETE /v1/request/{id}"
ROUTE_IMPORT = "POST /v1/certificate/import/plain"
# key operations: a payload signed with a key, blocking or modifying a key
ROUTE_KEY_SIGN = "POST /v1/sign"
ROUTE_SYNC_KEY_SIGN = "POST /v1/synchronousSign"
ROUTE_BLOCK = "POST /v1/block"
ROUTE_MODIFY = "POST /v1/modify"
ROUTE_OTHER = "OTHER"
V1_ROUTES = [ROUTE_SIGN, ROUTE_SYNC_SIGN, ROUTE_GET_REQUEST,
             ROUTE_DELETE_REQUEST, ROUTE_IMPORT, ROUTE_KEY_SIGN,
             ROUTE_SYNC_KEY_SIGN, ROUTE_BLOCK, ROUTE_MODIFY, ROUTE_OTHER]
SIGN_ROUTES = (ROUTE_SIGN, ROUTE_SYNC_SIGN)

PENDING = "PENDING"
APPROVED = "APPROVED"
EXECUTED = "EXECUTED"
FAILED = "FAILED"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
CANCELLED = "CANCELLED"
OPEN_STATES = (PENDING, APPROVED)

KEY_USAGE_NAMES = {
    "DIGITAL_SIGNATURE": "digital_signature",
    "CONTENT_COMMITMENT": "content_commitment",
    "KEY_ENCIPHERMENT": "key_encipherment",
    "DATA_ENCIPHERMENT": "data_encipherment",
    "KEY_AGREEMENT": "key_agreement",
    "KEY_CERT_SIGN": "key_cert_sign",
    "CRL_SIGN": "crl_sign",
    "ENCIPHER_ONLY": "encipher_only",
    "DECIPHER_ONLY": "decipher_only",
}

EXTENDED_KEY_USAGE_NAMES = {
    "ANY_EXTENDED_KEY_USAGE": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "SERVER_AUTH": ExtendedKeyUsageOID.SERVER_AUTH,
    "CLIENT_AUTH": ExtendedKeyUsageOID.CLIENT_AUTH,
    "CODE_SIGNING": ExtendedKeyUsageOID.CODE_SIGNING,
    "EMAIL_PROTECTION": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "TIME_STAMPING": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSP_SIGNING": ExtendedKeyUsageOID.OCSP_SIGNING,
}

DIGESTS = {
    "SHA224": hashes.SHA224,
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
    "SHA3_224": hashes.SHA3_224,
    "SHA3_256": hashes.SHA3_256,
    "SHA3_384": hashes.SHA3_384,
    "SHA3_512": hashes.SHA3_512,
}
SIGNATURE_ALGORITHM_RE = re.compile(
    r"(SHA224|SHA256|SHA384|SHA512|SHA3_224|SHA3_256|SHA3_384|SHA3_512)"
    r"_WITH_[A-Z0-9_]+")

PEM_CSR_RE = re.compile(
    r"-----BEGIN ((?:NEW )?)CERTIFICATE REQUEST-----(.*?)"
    r"-----END \1CERTIFICATE REQUEST-----", re.S)

MALFORMED_BODY = b'{"signRequestId": '

FAULT_KEYS = ("route", "delay_ms", "status", "body", "malformed", "truncate",
              "reset", "mismatch", "times")

# What a "mismatch" makes the CA do wrong: sign another key, another CN,
# add an extension nobody asked for, or a longer lifetime than requested.
MISMATCHES = ("key", "cn", "subject", "name_constraints", "ocsp_nocheck",
              "validity")


def log(message):
    sys.stderr.write("tsb_sim: %s\n" % message)
    sys.stderr.flush()


def servlet_path(raw):
    """The path a Spring application on Tomcat routes, or None for a 400.

    As Tomcat does it: ';' path parameters dropped from every segment,
    then percent-decoded (an encoded '/' or '\\', a NUL or bad UTF-8 is a
    400), then '.', '..' and empty segments resolved; and as Spring's
    default trailing-slash match does, a trailing '/' ignored.  A gateway
    that judges one path and forwards another is caught by this.
    """
    segments = [seg.split(";", 1)[0] for seg in raw.split("/")]
    out = []
    for seg in segments:
        try:
            data = bytearray()
            i = 0
            while i < len(seg):
                if seg[i] == "%":
                    if len(seg[i + 1:i + 3]) != 2:
                        return None
                    data.append(int(seg[i + 1:i + 3], 16))
                    i += 3
                else:
                    data.extend(seg[i].encode("latin-1"))
                    i += 1
            text = data.decode("utf-8")
        except (ValueError, UnicodeError):
            return None
        if "/" in text or "\\" in text or "\0" in text:
            return None
        out.append(text)
    resolved = []
    for seg in out[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(seg)
    return "/" + "/".join(resolved)


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An answer in the TSB error shape {errorCode, reason, message}."""

    def __init__(self, status, reason, message):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def bad_request(message, reason="res.error.bad.request"):
    return ApiError(400, reason, message)


class Response:
    def __init__(self, status, body, content_type="application/json"):
        self.status = status
        self.body = body
        self.content_type = content_type


def json_response(status, obj):
    return Response(status, json.dumps(obj).encode())


def error_response(status, reason, message):
    return json_response(status, {"errorCode": status, "reason": reason,
                                  "message": message})


def parse_json(body, what="request body"):
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise bad_request("%s is not UTF-8 (byte %d)" % (what, e.start),
                          "res.error.json.parse")
    except json.JSONDecodeError as e:
        raise bad_request("%s is not valid JSON: %s at line %d column %d"
                          " (char %d)" % (what, e.msg, e.lineno, e.colno,
                                          e.pos), "res.error.json.parse")


def parse_json_object(body, what="request body"):
    """Empty body means {}: the control API takes optional bodies."""
    if not body.strip():
        return {}
    obj = parse_json(body, what)
    if not isinstance(obj, dict):
        raise bad_request("%s must be a JSON object" % what)
    return obj


def strict_b64decode(text, what, reason="res.error.bad.request"):
    compact = "".join(text.split())
    if not compact:
        raise bad_request("%s is empty" % what, reason)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("%s is not valid base64" % what, reason)


# --- sign request parsing ----------------------------------------------------

class SignParams:
    """A validated signCertificateRequest."""

    def __init__(self, key_name, common_name, csr, key_usage, eku,
                 is_ca, validity_days, digest):
        self.key_name = key_name
        self.common_name = common_name
        self.csr = csr
        self.key_usage = key_usage          # x509.KeyUsage or None
        self.eku = eku                      # x509.ExtendedKeyUsage or None
        self.is_ca = is_ca
        self.validity_days = validity_days
        self.digest = digest                # hashes.HashAlgorithm class


def parse_csr(text):
    """PEM (CERTIFICATE REQUEST / NEW CERTIFICATE REQUEST) or bare base64."""
    if "-----BEGIN" in text:
        if text.count("-----BEGIN") != 1:
            raise bad_request("certificateSigningRequest must hold exactly"
                              " one PEM block", "res.error.invalid.csr")
        m = PEM_CSR_RE.search(text)
        if m is None:
            raise bad_request("certificateSigningRequest PEM label must be"
                              " CERTIFICATE REQUEST or NEW CERTIFICATE"
                              " REQUEST", "res.error.invalid.csr")
        der = strict_b64decode(m.group(2), "certificateSigningRequest PEM",
                               "res.error.invalid.csr")
    else:
        der = strict_b64decode(text, "certificateSigningRequest",
                               "res.error.invalid.csr")
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as e:
        raise bad_request("certificateSigningRequest is not a DER PKCS#10"
                          " request: %s" % e, "res.error.invalid.csr")
    try:
        valid = csr.is_signature_valid
    except Exception as e:          # unsupported algorithms and the like
        raise bad_request("cannot verify the CSR signature: %s" % e,
                          "res.error.invalid.csr")
    if not valid:
        raise bad_request("CSR signature does not verify",
                          "res.error.invalid.csr")
    try:
        csr.public_key()
        csr.extensions
    except Exception as e:
        raise bad_request("CSR cannot be used: %s" % e,
                          "res.error.invalid.csr")
    return csr


def require_string(obj, name):
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request("signCertificateRequest.%s is required and must be"
                          " a non-empty string" % name)
    return value


def optional_string_list(obj, name):
    value = obj.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or \
            not all(isinstance(v, str) for v in value):
        raise bad_request("signCertificateRequest.%s must be a list of"
                          " strings" % name)
    return value


def usage_names(names):
    """Usages as the vendor's clients send them: several names joined by
    commas in one element ("DIGITAL_SIGNATURE,KEY_ENCIPHERMENT"), "" for
    none."""
    return [p for n in names if n != "" for p in n.split(",")]


def parse_key_usage(names):
    names = usage_names(names)
    unknown = [n for n in names if n not in KEY_USAGE_NAMES]
    if unknown:
        raise bad_request("unknown keyUsage %s" % ", ".join(unknown),
                          "res.error.invalid.key.usage")
    if not names:
        return None
    flags = {attr: False for attr in KEY_USAGE_NAMES.values()}
    for n in names:
        flags[KEY_USAGE_NAMES[n]] = True
    try:
        return x509.KeyUsage(**flags)
    except ValueError as e:         # ENCIPHER_ONLY without KEY_AGREEMENT
        raise bad_request("invalid keyUsage: %s" % e,
                          "res.error.invalid.key.usage")


def parse_extended_key_usage(names):
    names = usage_names(names)
    unknown = [n for n in names if n not in EXTENDED_KEY_USAGE_NAMES]
    if unknown:
        raise bad_request("unknown extendedKeyUsage %s" % ", ".join(unknown),
                          "res.error.invalid.extended.key.usage")
    if not names:
        return None
    oids = []
    for n in names:
        if EXTENDED_KEY_USAGE_NAMES[n] not in oids:
            oids.append(EXTENDED_KEY_USAGE_NAMES[n])
    return x509.ExtendedKeyUsage(oids)


def parse_sign_request(body):
    doc = parse_json(body)
    if not isinstance(doc, dict) or \
            not isinstance(doc.get("signCertificateRequest"), dict):
        raise bad_request("body must be an object with a"
                          " signCertificateRequest object")
    req = doc["signCertificateRequest"]

    key_name = require_string(req, "signKeyName")
    common_name = require_string(req, "commonName")
    try:
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError as e:
        raise bad_request("commonName cannot be used: %s" % e)
    csr = parse_csr(require_string(req, "certificateSigningRequest"))

    password = req.get("keyPassword")
    if not (password is None or isinstance(password, str) or
            (isinstance(password, list) and
             all(isinstance(c, str) for c in password))):
        raise bad_request("signCertificateRequest.keyPassword must be null,"
                          " a string or a list of characters")

    algorithm = req.get("signatureAlgorithm")
    if algorithm is None:
        digest = hashes.SHA256
    else:
        m = SIGNATURE_ALGORITHM_RE.fullmatch(algorithm) \
            if isinstance(algorithm, str) else None
        if m is None:
            raise bad_request("unsupported signatureAlgorithm %s"
                              % json.dumps(algorithm),
                              "res.error.invalid.signature.algorithm")
        digest = DIGESTS[m.group(1)]

    is_ca = req.get("certificateAuthority", False)
    if is_ca is None:
        is_ca = False
    if not isinstance(is_ca, bool):
        raise bad_request("signCertificateRequest.certificateAuthority must"
                          " be a boolean")

    validity = req.get("validity")
    if validity is None:
        validity = DEFAULT_VALIDITY_DAYS
    if isinstance(validity, bool) or not isinstance(validity, int) or \
            not 1 <= validity <= 36500:
        raise bad_request("signCertificateRequest.validity must be an"
                          " integer number of days between 1 and 36500")

    return SignParams(
        key_name, common_name, csr,
        parse_key_usage(optional_string_list(req, "keyUsage")),
        parse_extended_key_usage(optional_string_list(req,
                                                      "extendedKeyUsage")),
        is_ca, validity, digest)


def parse_import_request(body):
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise bad_request("body must be a JSON object")
    label = doc.get("label")
    text = doc.get("certificate")
    if not isinstance(label, str) or not label.strip():
        raise bad_request("label is required and must be a non-empty string")
    if not isinstance(text, str):
        raise bad_request("certificate is required and must be a string")
    if "-----" in text:
        raise bad_request("certificate must be base64 DER without PEM armor",
                          "res.error.invalid.certificate")
    der = strict_b64decode(text, "certificate",
                           "res.error.invalid.certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
        canonical = cert.public_bytes(serialization.Encoding.DER)
    except ValueError as e:
        raise bad_request("certificate is not one DER X.509 certificate: %s"
                          % e, "res.error.invalid.certificate")
    if len(canonical) != len(der):
        raise bad_request("certificate has trailing data after the DER"
                          " certificate", "res.error.invalid.certificate")
    return label, cert


# --- the CA ------------------------------------------------------------------

# What a "mismatch" can make the signing do: another key, another CN, or
# an attribute added to the subject (a CA that makes every client a
# Kubernetes cluster administrator).
def issued_subject(csr, common_name, mismatch):
    """The CSR's subject, in order, with its CN set to commonName (as a CA
    that honours the request's subject does); with the "subject" mismatch
    O=system:masters is added."""
    rdns = []
    has_cn = False
    for rdn in csr.subject.rdns:
        attrs = []
        for a in rdn:
            if a.oid == NameOID.COMMON_NAME:
                has_cn = True
                attrs.append(x509.NameAttribute(NameOID.COMMON_NAME,
                                                common_name))
            else:
                attrs.append(a)
        rdns.append(x509.RelativeDistinguishedName(attrs))
    if not has_cn:
        rdns.append(x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if mismatch == "subject":
        rdns.append(x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                "system:masters")]))
    return x509.Name(rdns)


def fresh_key_like(public_key):
    """A new private key of the same kind, for the "mismatch": "key" fault."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return rsa.generate_private_key(65537, public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ec.generate_private_key(public_key.curve)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ed25519.Ed25519PrivateKey.generate()
    if isinstance(public_key, ed448.Ed448PublicKey):
        return ed448.Ed448PrivateKey.generate()
    return rsa.generate_private_key(65537, 2048)


class CertificateAuthority:
    def __init__(self, cert, key, generated):
        if cert.public_key().public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("CA key does not match the CA certificate")
        self.cert = cert
        self.key = key
        self.generated = generated
        try:
            ski = cert.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier).value
            self.aki = x509.AuthorityKeyIdentifier \
                .from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            self.aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key())

    @classmethod
    def generate(cls):
        key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             CA_COMMON_NAME)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
        return cls(cert, key, generated=True)

    @classmethod
    def load(cls, cert_path, key_path):
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return cls(cert, key, generated=False)

    def cert_pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self):
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    def issue(self, params, mismatch=None):
        """Sign params.csr's key with its subject, CN=commonName; returns
        PEM text."""
        public_key = params.csr.public_key()
        common_name = params.common_name
        if mismatch == "key":
            public_key = fresh_key_like(public_key).public_key()
        elif mismatch == "cn":
            common_name = "mismatch.invalid"

        now = datetime.datetime.now(datetime.timezone.utc)
        validity_days = params.validity_days
        if mismatch == "validity":
            validity_days += 30
        builder = (
            x509.CertificateBuilder()
            .subject_name(issued_subject(params.csr, common_name, mismatch))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=params.is_ca,
                                                 path_length=None),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                public_key), critical=False)
            .add_extension(self.aki, critical=False))
        if params.key_usage is not None:
            builder = builder.add_extension(params.key_usage, critical=True)
        if params.eku is not None:
            builder = builder.add_extension(params.eku, critical=False)
        try:
            san = params.csr.extensions.get_extension_for_class(
                x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=san.critical)
        except x509.ExtensionNotFound:
            pass
        if mismatch == "name_constraints":
            builder = builder.add_extension(x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("example")],
                excluded_subtrees=None), critical=True)
        elif mismatch == "ocsp_nocheck":
            builder = builder.add_extension(x509.OCSPNoCheck(),
                                            critical=False)

        # An RSA CA signs with PKCS#1 v1.5, an EC CA with ECDSA; EdDSA keys
        # take no separate digest.
        if isinstance(self.key, (ed25519.Ed25519PrivateKey,
                                 ed448.Ed448PrivateKey)):
            algorithm = None
        else:
            algorithm = params.digest()
        cert = builder.sign(self.key, algorithm)
        return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- simulator state ---------------------------------------------------------

def parse_key_operation(body, envelope, name_field):
    """{"<envelope>": {"<name_field>": ..., ...}, "requestSignature": ...}
    of a key operation; returns the inner object."""
    doc = parse_json_object(body)
    inner = doc.get(envelope)
    if not isinstance(inner, dict):
        raise bad_request("body must be an object with a %s object"
                          % envelope)
    unknown = sorted(set(doc) - {envelope, "requestSignature"})
    if unknown:
        raise bad_request("unknown field(s): %s" % ", ".join(unknown))
    require_string(inner, name_field)
    return inner


def parse_payload_sign(body, envelope="signRequest"):
    inner = parse_key_operation(body, envelope, "signKeyName")
    payload = inner.get("payload")
    if not isinstance(payload, str):
        raise bad_request("%s.payload is required and must be base64"
                          % envelope)
    return strict_b64decode(payload, "payload")


class SignRequest:
    # "certificate": result is the PEM certificate; "sign": a base64
    # signature of payload; "block", "modify": null
    kind = "certificate"
    payload = None

    def __init__(self, params, approvers, mismatch):
        self.id = str(uuid.uuid4())
        self.params = params
        self.status = PENDING
        self.execution_time = None
        self.approved_by = []
        self.not_yet_approved_by = list(approvers)
        self.rejected_by = []
        self.result = None
        self.created = time.monotonic()
        self.mismatch = mismatch

    def to_json(self):
        return {
            "id": self.id,
            "status": self.status,
            "executionTime": self.execution_time,
            "approvedBy": list(self.approved_by),
            "notYetApprovedBy": list(self.not_yet_approved_by),
            "rejectedBy": list(self.rejected_by),
            "result": self.result,
        }


class Fault:
    def __init__(self, spec):
        unknown = sorted(set(spec) - set(FAULT_KEYS))
        if unknown:
            raise bad_request("unknown fault field(s): %s"
                              % ", ".join(unknown))
        self.route = spec.get("route", "*")
        if self.route != "*" and self.route not in V1_ROUTES:
            raise bad_request("fault route must be \"*\" or one of %s"
                              % ", ".join(V1_ROUTES))
        self.delay_ms = self._int(spec, "delay_ms", 0, 600000) or 0
        self.status = self._int(spec, "status", 100, 599)
        self.body = spec.get("body")
        if self.body is not None and not isinstance(self.body, str):
            raise bad_request("fault body must be a string")
        self.malformed = self._bool(spec, "malformed")
        self.truncate = self._bool(spec, "truncate")
        self.reset = self._bool(spec, "reset")
        self.mismatch = spec.get("mismatch")
        if self.mismatch is not None and self.mismatch not in MISMATCHES:
            raise bad_request("fault mismatch must be one of %s"
                              % ", ".join(MISMATCHES))
        self.times = self._int(spec, "times", 1, None)

    @staticmethod
    def _int(spec, name, low, high):
        value = spec.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or \
                value < low or (high is not None and value > high):
            raise bad_request("fault %s must be an integer >= %d%s"
                              % (name, low,
                                 "" if high is None else " and <= %d" % high))
        return value

    @staticmethod
    def _bool(spec, name):
        value = spec.get(name, False)
        if not isinstance(value, bool):
            raise bad_request("fault %s must be a boolean" % name)
        return value

    def replaces_answer(self):
        return self.status is not None or self.body is not None or \
            self.malformed

    def matches(self, route):
        if self.route not in ("*", route):
            return False
        # A pure "mismatch" fault only means something to sign requests;
        # polls must not use it up.
        if self.mismatch and route not in SIGN_ROUTES and not (
                self.replaces_answer() or self.truncate or self.reset or
                self.delay_ms):
            return False
        return True

    def to_json(self):
        return {k: getattr(self, k) for k in FAULT_KEYS}


class Simulator:
    """All state and the endpoint logic; Handler does the HTTP plumbing."""

    def __init__(self, ca, approvers, auto_approve_ms, delay_ms, api_key,
                 bearer):
        self.ca = ca
        self.approvers = approvers
        self.auto_approve_ms = auto_approve_ms
        self.delay_ms = delay_ms
        self.api_key = api_key
        self.bearer = bearer
        self.lock = threading.Lock()
        self.sign_requests = collections.OrderedDict()
        self.imports = []
        self.reset_observations()

    def reset_observations(self):
        with self.lock:
            self.counts = {route: 0 for route in V1_ROUTES}
            self.counts["total"] = 0
            self.recorded = collections.deque(maxlen=RECORDED_MAX)
            self.faults = []
            self.connections = 0
            self.v1_connections = 0
            self.epoch = object()

    def connection_accepted(self):
        with self.lock:
            self.connections += 1

    def connection_used(self, handler):
        """Counts each connection once per reset when it first carries /v1.

        That is what keep-alive tests want to see: the test harness's own
        /_sim calls and connections pooled before a reset don't count.
        """
        with self.lock:
            if getattr(handler, "counted_epoch", None) is not self.epoch:
                handler.counted_epoch = self.epoch
                self.v1_connections += 1

    # -- routing --

    V1_TABLE = [
        ("POST", re.compile(r"/v1/certificate/sign"), ROUTE_SIGN, "v1_sign"),
        ("POST", re.compile(r"/v1/certificate/synchronous/sign"),
         ROUTE_SYNC_SIGN, "v1_sync_sign"),
        ("GET", re.compile(r"/v1/request/(?P<id>[^/]+)"), ROUTE_GET_REQUEST,
         "v1_get_request"),
        ("DELETE", re.compile(r"/v1/request/(?P<id>[^/]+)"),
         ROUTE_DELETE_REQUEST, "v1_delete_request"),
        ("POST", re.compile(r"/v1/certificate/import/plain"), ROUTE_IMPORT,
         "v1_import_plain"),
        ("POST", re.compile(r"/v1/sign"), ROUTE_KEY_SIGN, "v1_key_sign"),
        ("POST", re.compile(r"/v1/synchronousSign"), ROUTE_SYNC_KEY_SIGN,
         "v1_sync_key_sign"),
        ("POST", re.compile(r"/v1/block"), ROUTE_BLOCK, "v1_block"),
        ("POST", re.compile(r"/v1/modify"), ROUTE_MODIFY, "v1_modify"),
    ]

    CONTROL_TABLE = [
        ("POST", re.compile(r"/_sim/approve/(?P<id>[^/]+)"), "sim_approve"),
        ("POST", re.compile(r"/_sim/reject/(?P<id>[^/]+)"), "sim_reject"),
        ("POST", re.compile(r"/_sim/fail/(?P<id>[^/]+)"), "sim_fail"),
        ("POST", re.compile(r"/_sim/expire/(?P<id>[^/]+)"), "sim_expire"),
        ("GET", re.compile(r"/_sim/counts"), "sim_counts"),
        ("GET", re.compile(r"/_sim/requests"), "sim_requests"),
        ("POST", re.compile(r"/_sim/reset"), "sim_reset"),
        ("GET", re.compile(r"/_sim/connections"), "sim_connections"),
        ("POST", re.compile(r"/_sim/fault"), "sim_add_fault"),
        ("DELETE", re.compile(r"/_sim/fault"), "sim_clear_faults"),
        ("GET", re.compile(r"/_sim/fault"), "sim_list_faults"),
        ("GET", re.compile(r"/_sim/ca\.pem"), "sim_ca_pem"),
        ("GET", re.compile(r"/_sim/health"), "sim_health"),
        ("GET", re.compile(r"/_sim/sign-requests"), "sim_sign_requests"),
        ("GET", re.compile(r"/_sim/imports"), "sim_imports"),
    ]

    def route_v1(self, method, path):
        """Returns (route template, bound endpoint or None, path params)."""
        for m, pattern, route, name in self.V1_TABLE:
            match = pattern.fullmatch(path)
            if m == method and match:
                return route, getattr(self, name), match.groupdict()
        return ROUTE_OTHER, None, {}

    def route_control(self, method, path):
        if method == "HEAD":
            method = "GET"
        for m, pattern, name in self.CONTROL_TABLE:
            match = pattern.fullmatch(path)
            if m == method and match:
                return getattr(self, name), match.groupdict()
        return None, {}

    # -- bookkeeping for /v1 --

    def observe(self, route, method, target, headers, body):
        with self.lock:
            self.counts[route] += 1
            self.counts["total"] += 1
            self.recorded.append({
                "method": method, "path": target, "headers": headers,
                "body": body.decode("utf-8", "replace")})

    def take_fault(self, route):
        with self.lock:
            for i, fault in enumerate(self.faults):
                if not fault.matches(route):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        del self.faults[i]
                return fault
        return None

    def check_auth(self, headers):
        problems = []
        if self.api_key is not None and not hmac.compare_digest(
                headers.get("x-api-key", "").encode(),
                self.api_key.encode()):
            problems.append("missing or wrong X-API-KEY")
        if self.bearer is not None and not hmac.compare_digest(
                headers.get("authorization", "").encode(),
                ("Bearer " + self.bearer).encode()):
            problems.append("missing or wrong bearer token")
        if problems:
            raise ApiError(401, "res.error.unauthorized", "; ".join(problems))

    # -- request lifecycle (callers hold self.lock) --

    def _lookup(self, request_id):
        req = self.sign_requests.get(request_id)
        if req is None:
            raise ApiError(404, "res.error.request.not.found",
                           "request %s not found" % request_id)
        self._auto_approve(req)
        return req

    def _auto_approve(self, req):
        # Evaluated lazily whenever a request is looked at, so nothing has
        # to wake up on a timer.
        if self.auto_approve_ms and req.status == PENDING and \
                time.monotonic() - req.created >= self.auto_approve_ms / 1000:
            self._approve(req, None, execute=True)

    def _require_open(self, req):
        if req.status not in OPEN_STATES:
            raise ApiError(409, "res.error.request.conflict",
                           "request %s is already %s" % (req.id, req.status))

    def _approve(self, req, approver, execute):
        self._require_open(req)
        if approver is None:
            names = list(req.not_yet_approved_by)
        elif approver in req.approved_by:
            names = []
        elif approver in req.not_yet_approved_by:
            names = [approver]
        else:
            raise bad_request("%s is not an approver of request %s"
                              % (approver, req.id))
        for name in names:
            req.not_yet_approved_by.remove(name)
            req.approved_by.append(name)
        if req.not_yet_approved_by:
            return
        if not execute:
            req.status = APPROVED
            return
        if req.kind != "certificate":
            # a key operation's result: the signature, or nothing
            req.result = self._signature(req.payload) \
                if req.kind == "sign" else None
            req.status = EXECUTED
            req.execution_time = iso_now()
            return
        try:
            req.result = self.ca.issue(req.params, req.mismatch)
        except Exception as e:
            log("signing request %s failed: %s" % (req.id, e))
            req.status = FAILED
            return
        req.status = EXECUTED
        req.execution_time = iso_now()

    def _close(self, request_id, status, body):
        with self.lock:
            req = self._lookup(request_id)
            self._require_open(req)
            if status == REJECTED:
                approver = body.get("approver")
                if approver is None:
                    approver = (req.not_yet_approved_by or
                                self.approvers or ["simulator"])[0]
                if approver in req.not_yet_approved_by:
                    req.not_yet_approved_by.remove(approver)
                req.rejected_by.append(approver)
            req.status = status
            return json_response(200, req.to_json())

    # -- /v1 endpoints: fn(params, body, mismatch) -> Response --

    def v1_sign(self, params, body, mismatch):
        sign = parse_sign_request(body)
        req = SignRequest(sign, self.approvers, mismatch)
        with self.lock:
            self.sign_requests[req.id] = req
        return json_response(200, {"signRequestId": req.id})

    def v1_sync_sign(self, params, body, mismatch):
        sign = parse_sign_request(body)
        pem = self.ca.issue(sign, mismatch)
        return json_response(200, {"label": sign.key_name,
                                    "certificate": pem})

    def _key_request(self, kind, payload=None):
        req = SignRequest(None, self.approvers, None)
        req.kind = kind
        req.payload = payload
        with self.lock:
            self.sign_requests[req.id] = req
        return req

    def _signature(self, payload):
        key = self.ca.key
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        else:
            sig = key.sign(payload)
        return base64.b64encode(sig).decode("ascii")

    def v1_key_sign(self, params, body, mismatch):
        # the TSB's documentation shows 201 for the asynchronous sign
        req = self._key_request("sign", parse_payload_sign(body))
        return json_response(201, {"signRequestId": req.id})

    def v1_sync_key_sign(self, params, body, mismatch):
        return json_response(200, {"signature": self._signature(
            parse_payload_sign(body))})

    def v1_block(self, params, body, mismatch):
        parse_key_operation(body, "blockRequest", "blockKeyName")
        req = self._key_request("block")
        return json_response(200, {"blockKeyRequestId": req.id})

    def v1_modify(self, params, body, mismatch):
        parse_key_operation(body, "modifyRequest", "modifyKeyName")
        req = self._key_request("modify")
        return json_response(200, {"modifyKeyRequestId": req.id})

    def v1_get_request(self, params, body, mismatch):
        with self.lock:
            return json_response(200, self._lookup(params["id"]).to_json())

    def v1_delete_request(self, params, body, mismatch):
        with self.lock:
            req = self._lookup(params["id"])
            self._require_open(req)
            req.status = CANCELLED
        return json_response(200, {})

    def v1_import_plain(self, params, body, mismatch):
        label, cert = parse_import_request(body)
        with self.lock:
            self.imports.append({
                "label": label,
                "subject": cert.subject.rfc4514_string(),
                "serial": "%x" % cert.serial_number,
                "sha256": cert.fingerprint(hashes.SHA256()).hex()})
        return json_response(200, {})

    # -- control endpoints: fn(params, body) -> Response --

    def sim_approve(self, params, body):
        doc = parse_json_object(body)
        approver = doc.get("approver")
        execute = doc.get("execute", True)
        mismatch = doc.get("mismatch")
        if approver is not None and not isinstance(approver, str):
            raise bad_request("approver must be a string")
        if not isinstance(execute, bool):
            raise bad_request("execute must be a boolean")
        if mismatch is not None and mismatch not in MISMATCHES:
            raise bad_request("mismatch must be one of %s"
                              % ", ".join(MISMATCHES))
        with self.lock:
            req = self._lookup(params["id"])
            if mismatch is not None:
                req.mismatch = mismatch
            self._approve(req, approver, execute)
            return json_response(200, req.to_json())

    def sim_reject(self, params, body):
        doc = parse_json_object(body)
        if not isinstance(doc.get("approver", ""), str):
            raise bad_request("approver must be a string")
        return self._close(params["id"], REJECTED, doc)

    def sim_fail(self, params, body):
        return self._close(params["id"], FAILED, {})

    def sim_expire(self, params, body):
        return self._close(params["id"], EXPIRED, {})

    def sim_counts(self, params, body):
        with self.lock:
            return json_response(200, dict(self.counts))

    def sim_requests(self, params, body):
        with self.lock:
            return json_response(200, list(self.recorded))

    def sim_reset(self, params, body):
        self.reset_observations()
        return json_response(200, {"ok": True})

    def sim_connections(self, params, body):
        with self.lock:
            return json_response(200, {"accepted": self.v1_connections,
                                       "accepted_total": self.connections})

    def sim_add_fault(self, params, body):
        fault = Fault(parse_json_object(body, "fault"))
        with self.lock:
            self.faults.append(fault)
            return json_response(200, {"queued": len(self.faults),
                                       "fault": fault.to_json()})

    def sim_clear_faults(self, params, body):
        with self.lock:
            self.faults = []
        return json_response(200, {"ok": True})

    def sim_list_faults(self, params, body):
        with self.lock:
            return json_response(200, [f.to_json() for f in self.faults])

    def sim_ca_pem(self, params, body):
        return Response(200, self.ca.cert_pem(), "application/x-pem-file")

    def sim_health(self, params, body):
        return json_response(200, {"ok": True})

    def sim_sign_requests(self, params, body):
        with self.lock:
            for req in self.sign_requests.values():
                self._auto_approve(req)
            return json_response(200, [r.to_json()
                                       for r in self.sign_requests.values()])

    def sim_imports(self, params, body):
        with self.lock:
            return json_response(200, list(self.imports))


# --- HTTP plumbing -----------------------------------------------------------

class BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tsb-sim/1.0"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def setup(self):
        # the server's idle timeout, as the socket timeout between requests
        self.timeout = self.server.idle_timeout_s
        super().setup()

    def dispatch(self):
        started = time.monotonic()
        sim = self.server.sim
        raw = urlsplit(self.path).path
        path = servlet_path(raw)
        if path is None:
            self.close_connection = True
            outcome = self.send(error_response(
                400, "res.error.bad.request", "invalid path"))
            log("%s %s %s" % (self.command, raw, outcome))
            return
        outcome = self.serve(sim, path)
        log("%s %s %s %.1fms" % (self.command, path, outcome,
                                 (time.monotonic() - started) * 1000))

    def serve(self, sim, path):
        """Answers one request; returns what to log as its outcome."""
        is_v1 = path == "/v1" or path.startswith("/v1/")
        try:
            body = self.read_body()
        except BodyError as e:
            self.close_connection = True
            if is_v1:
                sim.observe(sim.route_v1(self.command, path)[0], self.command,
                            self.path, self.lowercase_headers(), b"")
                sim.connection_used(self)
            return self.send(error_response(e.status, "res.error.bad.request",
                                            str(e)))
        if is_v1:
            return self.serve_v1(sim, path, body)
        if path.startswith("/_sim/"):
            endpoint, params = sim.route_control(self.command, path)
            if endpoint is None:
                return self.send(error_response(
                    404, "res.error.not.found", "no control endpoint %s %s"
                    % (self.command, path)))
            return self.send(self.call(endpoint, params, body))
        return self.send(error_response(404, "res.error.not.found",
                                        "no such resource %s" % path))

    def serve_v1(self, sim, path, body):
        headers = self.lowercase_headers()
        route, endpoint, params = sim.route_v1(self.command, path)
        sim.observe(route, self.command, self.path, headers, body)
        sim.connection_used(self)

        fault = sim.take_fault(route)
        delay_ms = sim.delay_ms + (fault.delay_ms if fault else 0)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if fault and fault.reset:
            self.reset_connection()
            return "RST (fault)"

        if fault and fault.replaces_answer():
            response = self.fault_response(fault)
        else:
            try:
                sim.check_auth(headers)
                if endpoint is None:
                    raise ApiError(404, "res.error.not.found",
                                   "no such endpoint %s %s"
                                   % (self.command, path))
            except ApiError as e:
                response = error_response(e.status, e.reason, e.message)
            else:
                response = self.call(endpoint, params, body,
                                     fault.mismatch if fault else None)

        if fault and fault.truncate:
            self.send(response, declared_length=len(response.body) + 64)
            self.close_connection = True
            return "%d truncated (fault)" % response.status
        outcome = self.send(response)
        return outcome + (" (fault)" if fault and fault.replaces_answer()
                          else "")

    @staticmethod
    def fault_response(fault):
        if fault.malformed:
            return Response(fault.status or 200, MALFORMED_BODY)
        if fault.body is not None:
            return Response(fault.status or 200, fault.body.encode())
        return error_response(fault.status, "res.error.simulated.fault",
                              "fault injected by the simulator")

    @staticmethod
    def call(endpoint, params, body, *extra):
        try:
            return endpoint(params, body, *extra)
        except ApiError as e:
            return error_response(e.status, e.reason, e.message)
        except Exception as e:
            log("internal error: %s\n%s" % (e, traceback.format_exc()))
            return error_response(500, "res.error.internal",
                                  "simulator error: %s" % e.__class__.__name__)

    def lowercase_headers(self):
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value \
                if name in headers else value
        return headers

    def read_body(self):
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise BodyError(501, "unsupported Transfer-Encoding")
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            length = int(length)
            if length < 0:
                raise ValueError
        except ValueError:
            raise BodyError(400, "invalid Content-Length")
        if length > MAX_BODY:
            # Swallow a moderately oversized body so the client gets to read
            # the 413 instead of a reset caused by unread data.
            if length <= 16 * MAX_BODY:
                while length > 0:
                    chunk = self.rfile.read(min(length, 65536))
                    if not chunk:
                        break
                    length -= len(chunk)
            raise BodyError(413, "body larger than %d bytes" % MAX_BODY)
        body = self.rfile.read(length)
        if len(body) != length:
            raise BodyError(400, "body shorter than Content-Length")
        return body

    def read_chunked(self):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "invalid chunk size")
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise BodyError(413, "body larger than %d bytes" % MAX_BODY)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise BodyError(400, "truncated chunk")
            chunks.append(chunk)
            self.rfile.readline(16)

    def send(self, response, declared_length=None):
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(
            len(response.body) if declared_length is None
            else declared_length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        return str(response.status)

    def reset_connection(self):
        # SO_LINGER 0 turns close() into an RST.  rfile holds a reference
        # to the socket, so it has to go first or close() would not close.
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.rfile.close()
        self.connection.close()

    def send_error(self, code, message=None, explain=None):
        # Protocol-level errors (bad request line, header overflow) in the
        # same JSON shape as everything else instead of the stock HTML page.
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self.send(error_response(code, "res.error.bad.request",
                                 message or self.responses.get(
                                     code, ("error",))[0]))

    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        pass                        # dispatch() logs one line per request

    def log_message(self, format, *args):
        log("%s: %s" % (self.address_string(), format % args))


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, sim, ssl_context,
                 idle_timeout_s=IDLE_TIMEOUT_S):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self.ssl_context = ssl_context
        self.idle_timeout_s = idle_timeout_s
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind would resolve our FQDN; we need no DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        self.sim.connection_accepted()
        super().process_request(request, client_address)

    def finish_request(self, request, client_address):
        # Runs in the connection's thread, so a slow TLS handshake never
        # holds up accept().
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("%s: TLS handshake failed: %s" % (client_address[0], e))
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError, ssl.SSLError)):
            log("%s: connection error: %s" % (client_address[0], e))
        else:
            log("%s: unexpected error\n%s" % (client_address[0],
                                              traceback.format_exc()))


# --- startup -----------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Securosys TSB simulator")
    p.add_argument("--port", type=int, required=True,
                   help="TCP port, 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state-dir", required=True,
                   help="where ca.pem, ca.key (if generated) and port go")
    p.add_argument("--api-key", help="require X-API-KEY on /v1")
    p.add_argument("--bearer", help="require Authorization: Bearer on /v1")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key")
    p.add_argument("--tls-client-ca",
                   help="require client certificates issued by this CA")
    p.add_argument("--ca-cert", help="signing CA certificate (PEM)")
    p.add_argument("--ca-key", help="signing CA key (PEM, unencrypted)")
    p.add_argument("--approvers",
                   help="comma separated approver names for notYetApprovedBy")
    p.add_argument("--auto-approve-ms", type=int, default=0,
                   help="execute PENDING requests after N ms (0 = off)")
    p.add_argument("--delay-ms", type=int, default=0,
                   help="delay every /v1 answer by N ms")
    p.add_argument("--idle-timeout-ms", type=int,
                   default=IDLE_TIMEOUT_S * 1000,
                   help="close keep-alive connections idle this long")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        p.error("--tls-client-ca needs --tls-cert and --tls-key")
    if bool(args.ca_cert) != bool(args.ca_key):
        p.error("--ca-cert and --ca-key go together")
    if args.auto_approve_ms < 0 or args.delay_ms < 0:
        p.error("--auto-approve-ms and --delay-ms must be >= 0")
    if args.idle_timeout_ms <= 0:
        p.error("--idle-timeout-ms must be > 0")
    return args


def make_ssl_context(args):
    if not args.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_client_ca:
        ctx.load_verify_locations(cafile=args.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def write_file(path, data, mode=0o644):
    """Write-then-rename, so nobody polling the state dir sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.state_dir, exist_ok=True)
    try:
        if args.ca_cert:
            ca = CertificateAuthority.load(args.ca_cert, args.ca_key)
        else:
            ca = CertificateAuthority.generate()
        ssl_context = make_ssl_context(args)
    except (OSError, ValueError, ssl.SSLError) as e:
        log("startup failed: %s" % e)
        return 2

    if args.approvers is None:
        approvers = list(DEFAULT_APPROVERS)
    else:
        approvers = []
        for name in args.approvers.split(","):
            if name.strip() and name.strip() not in approvers:
                approvers.append(name.strip())

    sim = Simulator(ca, approvers, args.auto_approve_ms, args.delay_ms,
                    args.api_key, args.bearer)
    try:
        server = SimServer((args.host, args.port), sim, ssl_context,
                           args.idle_timeout_ms / 1000.0)
    except OSError as e:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, e))
        return 2
    port = server.server_address[1]

    write_file(os.path.join(args.state_dir, "ca.pem"), ca.cert_pem())
    if ca.generated:
        write_file(os.path.join(args.state_dir, "ca.key"), ca.key_pem(),
                   0o600)
    write_file(os.path.join(args.state_dir, "port"), b"%d\n" % port)

    def stop(signum, frame):
        # shutdown() waits for serve_forever(), which runs in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    log("listening on %s://%s:%d%s" % (
        "https" if ssl_context else "http", args.host, port,
        " (client certificates required)" if args.tls_client_ca else ""))
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
