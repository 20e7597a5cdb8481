#!/usr/bin/env bash
# The whole qsign journey against a running qsignd, with the qsign CLI and a simulated consent
# app, printing each step: register, proof, enrol the app, log in by push with PIN, accept the
# contract, issue, sign a file and verify it with openssl, OCSP good, revoke, OCSP revoked,
# revoke all. Used by scripts/run (the demo) and tests/e2e (ctest). Exits non-zero on the first
# failed step.
#
# Environment: QSIGN (the CLI binary), QSIGN_SERVER (host:port of qsignd), OCSP_URL
# (http://host:port/ocsp), OPERATOR_FILE (holding "<id>.<secret>"), WORK (an empty directory).
set -euo pipefail
: "${QSIGN:?}" "${QSIGN_SERVER:?}" "${OCSP_URL:?}" "${OPERATOR_FILE:?}" "${WORK:?}"
export QSIGN_SERVER
PORTAL="$WORK/portal"  # The user's state (session, certificate): as a browser would keep it.
PHONE="$WORK/phone"    # The consent app's state (device key).
mkdir -p "$PORTAL" "$PHONE"
PIN=${JOURNEY_PIN:-493817}
N=$(( $(date +%s%N) % 1000 ))
USERNAME=${JOURNEY_USERNAME:-"ana.petrovic.$N@example.rs"}
WATCH_PID=""
finish() { [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap finish EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
portal() { printf '$ qsign --state_dir=portal %s\n' "$*"; "$QSIGN" --state_dir="$PORTAL" "$@"; }
app() { printf '$ qsign --state_dir=phone %s\n' "$*"; "$QSIGN" --state_dir="$PHONE" "$@"; }

# A valid national id (13 digits, the last a mod-11 check digit): born 1 Jan 1990, Belgrade.
national_id() {
  local s first12 sum k d i
  for s in $(seq "$N" 999) $(seq 0 "$N"); do
    first12=$(printf '010199071%03d' "$s")
    sum=0
    for i in 0 1 2 3 4 5; do
      d=${first12:$i:1}; k=${first12:$((i + 6)):1}
      sum=$((sum + (7 - i) * (10#$d + 10#$k)))
    done
    k=$((11 - sum % 11))
    [ "$k" -gt 9 ] && [ "$k" -ne 11 ] && continue
    [ "$k" -eq 11 ] && k=0
    echo "$first12$k"; return
  done
}

step "1. register at the portal"
portal register --username="$USERNAME" --given_name=Ana --surname=Petrović \
  --national_id="$(national_id)" --email="$USERNAME"

step "2. a registration officer proofs the identity (ID card seen in person)"
printf '$ qsign proof-identity --username=%s --document_number=009876543\n' "$USERNAME"
CODE=$("$QSIGN" --json --operator_file="$OPERATOR_FILE" proof-identity --username="$USERNAME" \
  --document_number=009876543 | sed -n 's/.*"activation_code":"\([^"]*\)".*/\1/p')
[ -n "$CODE" ] || { echo "journey: no activation code"; exit 1; }
echo "activation code handed to the user: $CODE"

step "3. enrol the consent app with the activation code and a PIN"
app app enroll --activation_code="$CODE" --pin="$PIN" --device_name="Ana's phone"

step "4. the app watches for requests (simulated user approves with the PIN)"
printf '$ qsign --state_dir=phone app watch --approve-with-pin=****** &\n'
"$QSIGN" --state_dir="$PHONE" app watch --approve-with-pin="$PIN" >"$WORK/app.log" 2>&1 &
WATCH_PID=$!
sleep 1

step "5. log in by push: the app shows the verification code, the user approves with the PIN"
portal login --username="$USERNAME" --timeout=60
portal status

step "6. accept the contract"
portal contract accept

step "7. issue the qualified certificate (key generated in the HSM)"
portal cert issue

step "8. sign a file (approved in the app) and verify the .p7s with openssl"
DOC="$WORK/contract.txt"
printf 'Ugovor o zakupu stana, Beograd, %s\n' "$(date -u +%F)" >"$DOC"
portal sign "$DOC" --timeout=60
run openssl cms -verify -binary -inform DER -in "$DOC.p7s" -content "$DOC" \
  -CAfile "$PORTAL/chain.pem" -out /dev/null
openssl cms -cmsout -print -inform DER -in "$DOC.p7s" | grep -q "id-smime-aa-signingCertificateV2" \
  && echo "signed attributes include signing-certificate-v2"

ocsp() {
  # The issuer is the first certificate of the chain file (the qualified CA).
  openssl x509 -in "$PORTAL/chain.pem" -out "$WORK/issuer.pem"
  openssl ocsp -issuer "$WORK/issuer.pem" -cert "$PORTAL/certificate.pem" -url "$OCSP_URL" \
    -CAfile "$PORTAL/chain.pem" -no_nonce 2>&1 | tee "$WORK/ocsp.txt"
}
step "9. OCSP: the certificate is good"
printf '$ openssl ocsp -issuer issuer.pem -cert certificate.pem -url %s -CAfile chain.pem\n' "$OCSP_URL"
ocsp
grep -q ": good" "$WORK/ocsp.txt"

step "10. revoke the certificate"
portal cert revoke --reason=cessation

step "11. OCSP: the certificate is revoked"
ocsp
grep -q ": revoked" "$WORK/ocsp.txt"

step "12. revoke all (certificates, the app, sessions)"
portal cert revoke-all
sleep 1
if kill -0 "$WATCH_PID" 2>/dev/null; then
  echo "journey: the app is still watching after revoke-all"; exit 1
fi
WATCH_PID=""
tail -n 2 "$WORK/app.log"
if "$QSIGN" --state_dir="$PORTAL" status >/dev/null 2>&1; then echo "journey: the session survived revoke-all"; exit 1; fi
echo "the session ended too: qsign status now says to log in again"

printf '\njourney: every step passed\n'
