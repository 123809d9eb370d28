#!/bin/sh
# Signs one Connect unary call (JSON) with MyOsicam's HMAC scheme and sends it with curl.
# Needs only openssl, od and curl. See docs/hmac.md.
#
#   MYOSICAM_URL=https://127.0.0.1:8444 MYOSICAM_CALLER_ID=public_pricing MYOSICAM_SECRET=... \
#   MYOSICAM_CACERT=data/tls/panel.crt sign-request.sh /myosicam.license.v1.LicenseService/GetPlanCatalog '{}'
#
# Optional: MYOSICAM_TIMESTAMP and MYOSICAM_NONCE to reproduce a test vector, MYOSICAM_SEND=0 to
# print the headers instead of sending.
set -eu

procedure=${1:?usage: sign-request.sh <procedure path> <json body>}
body=${2:-'{}'}
url=${MYOSICAM_URL:?set MYOSICAM_URL, e.g. https://127.0.0.1:8444}
caller=${MYOSICAM_CALLER_ID:?set MYOSICAM_CALLER_ID}
secret=${MYOSICAM_SECRET:?set MYOSICAM_SECRET}

timestamp=${MYOSICAM_TIMESTAMP:-$(date +%s)}
# 16 random bytes as 32 lowercase hex characters.
nonce=${MYOSICAM_NONCE:-$(openssl rand 16 | od -An -tx1 | tr -d ' \n')}

# SHA-256 of the exact body bytes (printf '%s' adds no newline).
body_sha256=$(printf '%s' "$body" | openssl dgst -sha256 | sed 's/^.*= //')

# Six lines joined by \n, no trailing newline.
signature=$(printf 'MYOSICAM-HMAC-SHA256\n%s\n%s\n%s\n%s\n%s' "$caller" "$timestamp" "$nonce" "$procedure" "$body_sha256" \
  | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')

if [ "${MYOSICAM_SEND:-1}" = 0 ]; then
  printf 'X-Caller-Id: %s\nX-Timestamp: %s\nX-Nonce: %s\nX-Signature: %s\n' "$caller" "$timestamp" "$nonce" "$signature"
  exit 0
fi

if [ -n "${MYOSICAM_CACERT:-}" ]; then set -- --cacert "$MYOSICAM_CACERT"; else set --; fi
curl --silent --show-error --fail-with-body "$@" \
  -H 'Content-Type: application/json' \
  -H 'Connect-Protocol-Version: 1' \
  -H "X-Caller-Id: $caller" \
  -H "X-Timestamp: $timestamp" \
  -H "X-Nonce: $nonce" \
  -H "X-Signature: $signature" \
  --data-binary "$body" \
  "$url$procedure"
echo
