#!/bin/sh
# Regenerates the seed corpora under fuzz/corpus/ from the fixtures and
# from keys, CSRs and certificates made here with openssl.  The corpus is
# committed; run this only to refresh it (the generated keys differ each
# time, so every file changes).
#
#   sh fuzz/make_corpus.sh [fixtures-dir]

set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$(cd "${1:-$HERE/../t/fixtures}" && pwd)
C="$HERE/corpus"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

for d in fuzz_csr fuzz_sign_req fuzz_upstream fuzz_cert fuzz_path; do
    rm -rf "${C:?}/$d"
    mkdir -p "$C/$d"
done

cd "$TMP"

# keys

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key \
    2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out p256.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 \
    -out p384.key
openssl genpkey -algorithm ED25519 -out ed25519.key

csr() {    # name key subject [extra args...]
    n=$1 k=$2 s=$3
    shift 3
    openssl req -new -key "$k" -subj "$s" -out "$n.pem" "$@"
    openssl req -in "$n.pem" -outform DER -out "$n.der"
}

csr rsa rsa.key "/CN=web-01.svc.example.com/O=Example" -sha256 \
    -addext "subjectAltName=DNS:web-01.svc.example.com,DNS:host.example.com" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth,clientAuth"
csr p256 p256.key "/CN=host.example.com" \
    -addext "subjectAltName=DNS:host.example.com,IP:10.0.0.1,IP:::1" \
    -addext "keyUsage=digitalSignature" \
    -addext "extendedKeyUsage=clientAuth"
csr p384ca p384.key "/CN=Issuing CA/O=Example" -sha384 \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
csr ed25519 ed25519.key "/CN=api-12.example.com" \
    -addext "subjectAltName=DNS:api-12.example.com"
csr mixed p256.key "/CN=a.svc.example.com/CN=b.svc.example.com" \
    -addext "subjectAltName=email:pki@example.com,URI:https://a.example/x,RID:1.2.3.4,dirName:dn" \
    -addext "extendedKeyUsage=codeSigning,1.3.6.1.4.1.311.10.3.4" \
    -config /dev/stdin <<'EOF'
[req]
distinguished_name = dn_req
[dn_req]
[dn]
CN = other
EOF
csr plain rsa.key "/O=No CN here"
csr sha1 rsa.key "/CN=host.example.com" -sha1
csr pss rsa.key "/CN=host.example.com" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:32 -sha256
csr utf8 p256.key "$(printf '/CN=h\303\251te.example.com')" -utf8

# issue 10: extensions nobody judged, and key limits
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -pkeyopt rsa_keygen_pubexp:3 -out rsa-e3.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 \
    -out p521.key
csr ext-nc p256.key "/CN=host.example.com" \
    -addext "nameConstraints=critical,permitted;DNS:.example.com"
csr ext-cp p256.key "/CN=host.example.com" \
    -addext "certificatePolicies=1.3.6.1.4.1.99.1" \
    -addext "subjectKeyIdentifier=hash"
csr ext-nocheck p256.key "/CN=host.example.com" -addext "noCheck=ignored"
csr ext-crit p256.key "/CN=host.example.com" \
    -addext "1.2.3.4.5=critical,DER:05:00" -addext "1.2.3.4.6=DER:05:00"
csr rsa-e3 rsa-e3.key "/CN=host.example.com"
csr p521 p521.key "/CN=host.example.com"

o="$C/fuzz_csr"
cat "$FIX/tsb-csr-new-label.pem" > "$o/tsb-new-label.pem"
for n in rsa p256 p384ca ed25519 mixed plain sha1 pss utf8 ext-nc ext-cp \
         ext-nocheck ext-crit rsa-e3 p521; do
    cp "$n.pem" "$o/$n.pem"
done
for n in rsa p256 ed25519; do
    cp "$n.der" "$o/$n.der"
    base64 -w 0 "$n.der" > "$o/$n.b64"
done
base64 -w 76 p384ca.der > "$o/p384ca-wrapped.b64"
sed 's/$/\r/' p256.pem > "$o/p256-crlf.pem"
sed 's/CERTIFICATE REQUEST/NEW CERTIFICATE REQUEST/' p256.pem \
    > "$o/p256-new-label.pem"
cat rsa.pem p256.pem > "$o/two-blocks.pem"
{ cat p256.pem; printf 'trailing junk\n'; } > "$o/trailing.pem"
{ cat p256.der; printf '\0'; } > "$o/trailing.der"
sed 's/CERTIFICATE REQUEST/CERTIFICATE/' p256.pem > "$o/wrong-label.pem"
printf '  \n\t' > "$o/blank"

# certificates

openssl req -x509 -new -key p256.key -subj "/CN=host.example.com" \
    -days 30 -out p256-cert.pem \
    -addext "subjectAltName=DNS:host.example.com"
openssl req -x509 -new -key rsa.key -subj "/O=No CN" -days 30 \
    -set_serial 0 -out rsa-cert.pem
openssl req -x509 -new -key ed25519.key -subj "$(printf '/CN=h\303\251te')" \
    -utf8 \
    -days 30 -set_serial 0x00ffeeddccbbaa99887766554433221100 \
    -out ed-cert.pem
openssl x509 -in p256-cert.pem -outform DER -out p256-cert.der

o="$C/fuzz_cert"
cat "$FIX/seed-certificate.pem" > "$o/seed.pem"
openssl x509 -in "$FIX/seed-certificate.pem" -outform DER -out "$o/seed.der"
base64 -w 0 "$o/seed.der" > "$o/seed.b64"
cp p256-cert.pem rsa-cert.pem ed-cert.pem p256-cert.der "$o/"
base64 -w 64 p256-cert.der > "$o/p256-cert-wrapped.b64"
sed 's/$/\r/' p256-cert.pem > "$o/p256-cert-crlf.pem"
cat p256-cert.pem rsa-cert.pem > "$o/chain.pem"
{ cat p256-cert.der; printf 'x'; } > "$o/trailing.der"
{ printf -- '-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\n'; \
  sed '1d' p256-cert.pem; } > "$o/headers.pem"
cp rsa.pem "$o/csr-not-cert.pem"

# the client's JSON envelope

o="$C/fuzz_sign_req"
cat "$FIX/tsb-sign-request-as-documented.txt" > "$o/as-documented.txt"
sed 's/"replace-me_with_csr_value"/"replace-me_with_csr_value",/' \
    "$FIX/tsb-sign-request-as-documented.txt" > "$o/as-documented-fixed.json"
pemjs=$(awk '{printf "%s\\n", $0}' p256.pem)
printf '{"signCertificateRequest":{"certificateSigningRequest":"%s"}}' \
    "$pemjs" > "$o/minimal.json"
printf '{"signCertificateRequest":{"signKeyName":"CA-Key","keyPassword":"s3cr\\u00e9t","signatureAlgorithm":"SHA256_WITH_ECDSA","commonName":"host.example.com","certificateAuthority":false,"certificateSigningRequest":"%s","keyUsage":["DIGITAL_SIGNATURE","KEY_AGREEMENT"],"extendedKeyUsage":["SERVER_AUTH","CLIENT_AUTH"],"validity":365,"metaData":"eyJ0aWNrZXQiOjF9","metaDataSignature":null},"requestSignature":{"signature":"AA==","digestAlgorithm":"SHA-256","publicKey":"x"}}' \
    "$pemjs" > "$o/full.json"
printf '{"signCertificateRequest":{"keyPassword":["p","a","s","s"],"certificateSigningRequest":"%s"}}' \
    "$(base64 -w 0 ed25519.der)" > "$o/password-chars.json"
printf '{\n  "signCertificateRequest" : {\n    "certificateAuthority" : true,\n    "keyUsage" : [ "KEY_CERT_SIGN", "CRL_SIGN" ],\n    "extendedKeyUsage" : [ ],\n    "certificateSigningRequest" : "x"\n  }\n}\n' \
    > "$o/ca-pretty.json"
printf '{"signCertificateRequest":{"certificateSigningRequest":"x","certificateSigningRequest":"y"}}' \
    > "$o/duplicate.json"
printf '{"signCertificateRequest":{"certificateSigningRequest":"x","colour":"blue"}}' \
    > "$o/unknown-field.json"
printf '{"signCertificateRequest":{"certificateSigningRequest":"x","validity":1e3}}' \
    > "$o/validity-exp.json"
printf '{"signCertificateRequest":{"commonName":"a\\u0000b","certificateSigningRequest":"x"}}' \
    > "$o/nul-escape.json"
printf '{"signCertificateRequest":{"commonName":"\\ud83d\\ude00 \\ud800","certificateSigningRequest":"x"}}' \
    > "$o/surrogates.json"
printf '{"requestSignature":{"a":[[[[[[[[[[1]]]]]]]]]]}}' > "$o/deep.json"
printf '{"signCertificateRequest":{"keyPassword":null,"signKeyName":null,"metaData":"m","extendedKeyUsage":["ANY_EXTENDED_KEY_USAGE","TIME_STAMPING","OCSP_SIGNING","EMAIL_PROTECTION","CODE_SIGNING"],"keyUsage":["CONTENT_COMMITMENT","DATA_ENCIPHERMENT","ENCIPHER_ONLY","DECIPHER_ONLY","KEY_ENCIPHERMENT"],"certificateSigningRequest":"x"}}' \
    > "$o/all-usages.json"

# upstream answers

o="$C/fuzz_upstream"
cat "$FIX/tsb-status-executed.json" > "$o/status-executed.json"
printf '{"id":"9dd448e1-6d34-4b98-a05b-3ec006d99fef","status":"PENDING","executionTime":null,"approvedBy":["k1"],"notYetApprovedBy":["k2","k3"],"rejectedBy":[],"result":null}' \
    > "$o/status-pending.json"
printf '{"id":"9dd448e1","status":"REJECTED","executionTime":"2024-01-23T11:43:43Z","approvedBy":null,"notYetApprovedBy":null,"rejectedBy":["k4"],"result":null,"extra":{"nested":[1,{"a":null}],"n":1.5e3,"t":true}}' \
    > "$o/status-rejected-extra.json"
printf '{"id":"x","status":"FAILED","result":"HSM error \\u00e9\\n"}' \
    > "$o/status-failed.json"
printf '{"id":"x","status":"CANCELLED"}' > "$o/status-cancelled.json"
printf '{"id":"x","status":"NO_SUCH"}' > "$o/status-unknown.json"
printf '{"id":"x/../y","status":"EXPIRED"}' > "$o/status-bad-id.json"
printf '{"signRequestId":"3f2a6c1e-9b7d-4e21-a0c4-5d8e9f1a2b3c"}' \
    > "$o/sign-answer.json"
printf '{"signRequestId":"3f2a6c1e","signRequestId":"x"}' \
    > "$o/sign-answer-dup.json"
certjs=$(awk '{printf "%s\\n", $0}' p256-cert.pem)
printf '{"label":"host-cert","certificate":"%s"}' "$certjs" \
    > "$o/sync-sign.json"
printf '{"errorCode":631,"reason":"res.error.in.sign.request","message":"Key with name CA-Key does not exist."}' \
    > "$o/error.json"
printf '{"errorCode":"x","reason":5,"message":["a"]}' > "$o/error-types.json"
printf '<html><body>502 Bad Gateway</body></html>\n' > "$o/error-html"
printf '' > "$o/empty"
printf '[1,2,{"reason":"r"}]' > "$o/array.json"

# request paths

o="$C/fuzz_path"
u=3f2a6c1e-9b7d-4e21-a0c4-5d8e9f1a2b3c
printf '/v1/request/%s' $u > "$o/id"
printf '/tsb/certificate/%s.pem' $u > "$o/pem"
printf '/tsb/certificate/%s.der' $u > "$o/der"
printf '/tsb/certificate/%s.crt' $u > "$o/crt"
printf '/tsb/certificate/%s.cer' $u > "$o/cer"
printf '/tsb/certificate/%s/chain' $u > "$o/chain"
printf '/tsb/certificate/../../etc/passwd' > "$o/dotdot"
printf '/tsb/certificate/%s.pem.pem' $u > "$o/two-suffixes"
printf '/tsb/certificate/%%2e%%2e/chain' > "$o/percent"
printf '/tsb/certificate/abc\0def' > "$o/nul"
printf '/tsb/certificate/%s/' $u > "$o/trailing-slash"
printf '/tsb/certificate/chain.pem' > "$o/chain-suffix"

find "$C" -type f | wc -l | sed 's/^/corpus files: /'
find "$C" -type f -exec cat {} + | wc -c | sed 's/^/corpus bytes: /'
