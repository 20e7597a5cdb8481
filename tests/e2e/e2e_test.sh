#!/usr/bin/env bash
# The whole journey (scripts/journey.sh) against the real qsignd binary serving every service,
# with a throwaway PostgreSQL server and SoftHSM2 token: what scripts/run shows, as a test.
# Mutual TLS as in production (scripts/gen-certs, one client certificate per role, allow-lists),
# plus what a user sees when a certificate is not allowed or not from the CA.
# Usage: e2e_test.sh QSIGND QSIGN_CLI SOURCE_DIR [ARTIFACTS_DIR]
# On failure the logs (qsignd's, PostgreSQL's, the journey's outputs and the app's watch log) are
# copied to ARTIFACTS_DIR/<UTC time>-<pid> (ctest: build/tests/e2e/artifacts) and their tails
# printed; the work dir itself is removed unless KEEP=1.
set -euo pipefail
QSIGND=$1
QSIGN=$2
SRC=$3
ARTIFACTS=${4:-}
T=$(mktemp -d /tmp/qsign-e2e.XXXXXX)
chmod 755 "$T"
QSIGND_PID=""
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# keep_logs: the logs of a failed run, kept and shown (no secrets, keys, state dirs or mail:
# those hold the run's credentials).
keep_logs() {
  local f
  for f in "$T/qsignd.log" "$T/journey/app.log" "$T/pg/server.log"; do
    [ -s "$f" ] || continue
    echo "e2e: --- tail of ${f#"$T"/} ---"
    tail -n 30 "$f"
  done
  [ -n "$ARTIFACTS" ] || return 0
  local dir
  dir="$ARTIFACTS/$(date -u +%Y%m%dT%H%M%SZ)-$$"
  mkdir -p "$dir/journey"
  cp "$T/qsignd.log" "$T/qsignd.textproto" "$dir/" 2>/dev/null || true
  cp "$T/pg/server.log" "$dir/postgresql.log" 2>/dev/null || true
  cp "$T"/journey/*.log "$T"/journey/*.txt "$dir/journey/" 2>/dev/null || true
  echo "e2e: logs kept in $dir"
}
cleanup() {
  local rc=$?
  [ "$rc" -ne 0 ] && keep_logs
  [ -n "$QSIGND_PID" ] && kill -TERM "$QSIGND_PID" 2>/dev/null && wait "$QSIGND_PID" 2>/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$T/pg/data" -m immediate stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "e2e: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL on a Unix socket in $T.
mkdir -p "$T/pg/data" "$T/pg/sock"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$T/pg"
as_pg "$PG_BIN/initdb" -D "$T/pg/data" -U postgres -A trust -E UTF8 >"$T/initdb.log"
as_pg "$PG_BIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/server.log" -w \
  -o "-k $T/pg/sock -c listen_addresses='' -c fsync=off" start >/dev/null
as_pg "$PG_BIN/createdb" -h "$T/pg/sock" -U postgres qsign

# SoftHSM2: one token per role, each with its own PIN (docs/security-model.md).
mkdir -p "$T/softhsm/tokens" "$T/secrets"
export SOFTHSM2_CONF="$T/softhsm/softhsm2.conf"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$T/softhsm/tokens" >"$SOFTHSM2_CONF"
n=0
for role in signer consent identity lifecycle tsa; do
  n=$((n + 1))
  echo "1122334$n" >"$T/secrets/hsm-$role.pin"
  softhsm2-util --init-token --free --label "qsign-$role" --pin "1122334$n" --so-pin 55667788 >/dev/null
done
MODULE=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  2>/dev/null | head -n1)

# Credentials, as scripts/run makes them.
head -c 32 /dev/urandom | base64 >"$T/secrets/pin-pepper"
for id in identity consent lifecycle tsa; do
  echo "$id-e2e-secret" >"$T/secrets/$id.secret"
  printf '%s %s\n' "$id" "$(printf '%s' "$id-e2e-secret" | sha256sum | cut -d' ' -f1)"
done >"$T/secrets/services"
echo "ra-e2e.operator-e2e-secret" >"$T/secrets/operator.credential"
printf 'ra-e2e %s\n' "$(printf operator-e2e-secret | sha256sum | cut -d' ' -f1)" >"$T/secrets/operators"

# Certificates: qsignd's, one per client role, and a portal certificate from an unrelated CA.
"$SRC/scripts/gen-certs" "$T/tls" qsignd portal app operator >/dev/null
"$SRC/scripts/gen-certs" --ca other "$T/tls-other" portal >/dev/null

PORT=$(free_port)
HTTP_PORT=$(free_port)
TSA_PORT=$(free_port)
METRICS_PORT=$(free_port)
# qsignd's one config file: every service in this process, mutual TLS, the allow-lists of
# scripts/run (scripts/local-allow.textproto).
cat >"$T/qsignd.textproto" <<CONFIG
listen: "127.0.0.1:$PORT"
tls {
  cert_file: "$T/tls/qsignd.crt"
  key_file: "$T/tls/qsignd.key"
  client_ca_file: "$T/tls/ca.crt"
}
$(cat "$SRC/scripts/local-allow.textproto")
create_missing_keys: true
operators_file: "$T/secrets/operators"
services_file: "$T/secrets/services"
database { conninfo: "host=$T/pg/sock dbname=qsign user=postgres" }
hsm {
  module: "$MODULE"
  token { role: "signer" label: "qsign-signer" pin_file: "$T/secrets/hsm-signer.pin" }
  token { role: "consent" label: "qsign-consent" pin_file: "$T/secrets/hsm-consent.pin" }
  token { role: "identity" label: "qsign-identity" pin_file: "$T/secrets/hsm-identity.pin" }
  token { role: "lifecycle" label: "qsign-lifecycle" pin_file: "$T/secrets/hsm-lifecycle.pin" }
  token { role: "tsa" label: "qsign-tsa" pin_file: "$T/secrets/hsm-tsa.pin" }
}
observability { metrics_listen: "127.0.0.1:$METRICS_PORT" }
signer { sad_keys { key_id: "qsign-sad-1" public_key_file: "$T/sad-qsign-sad-1.pem" } }
consent {
  sad_public_key_file: "$T/sad-qsign-sad-1.pem"
  pin_pepper_file: "$T/secrets/pin-pepper"
  pin_argon2_m_kib: 256
  client_secret_file: "$T/secrets/consent.secret"
}
identity {
  client_secret_file: "$T/secrets/identity.secret"
  mail_drop_dir: "$T/mail"
}
lifecycle {
  http_listen: "127.0.0.1:$HTTP_PORT"
  client_secret_file: "$T/secrets/lifecycle.secret"
}
tsa {
  http_listen: "127.0.0.1:$TSA_PORT"
  client_secret_file: "$T/secrets/tsa.secret"
}
CONFIG
"$QSIGND" --config="$T/qsignd.textproto" --check_config >/dev/null \
  || { echo "e2e: the config does not validate"; exit 1; }
"$QSIGND" --config="$T/qsignd.textproto" 2>"$T/qsignd.log" &
QSIGND_PID=$!
# Ready within 120 s of wall clock (it makes its keys in SoftHSM2 first; slow on a loaded machine).
START=$SECONDS
until grep -q '"msg":"ready"' "$T/qsignd.log" 2>/dev/null; do
  kill -0 "$QSIGND_PID" 2>/dev/null || { echo "e2e: qsignd failed:"; cat "$T/qsignd.log"; exit 1; }
  [ $((SECONDS - START)) -lt 120 ] \
    || { echo "e2e: qsignd not ready in 120 s"; cat "$T/qsignd.log"; exit 1; }
  sleep 0.1
done

# as ROLE ARGS...: the CLI with ROLE's client certificate.
as() {
  local role=$1
  shift
  QSIGN_TLS_CA="$T/tls/ca.crt" QSIGN_TLS_CERT="$T/tls/$role.crt" QSIGN_TLS_KEY="$T/tls/$role.key" \
    "$QSIGN" --server="127.0.0.1:$PORT" "$@"
}
# expect RC WANT_RC OUTPUT TEXT WHAT: fail unless the command exited WANT_RC saying TEXT.
expect() {
  [ "$1" -eq "$2" ] || { echo "e2e: $5: exit $1, expected $2; output: $3"; exit 1; }
  [[ $3 == *"$4"* ]] || { echo "e2e: $5: the message does not say \"$4\": $3"; exit 1; }
  printf "e2e: ok: %s (exit %s): %s\n" "$5" "$1" "$3"
}
REGISTER=(register --username=a@b.rs --given_name=A --surname=B --national_id=0101990710006)

# The CLI's exit codes: unreachable server (3), usage (1).
set +e
"$QSIGN" --server=127.0.0.1:1 --state_dir="$T/none" "${REGISTER[@]}" >/dev/null 2>&1
[ $? -eq 3 ] || { echo "e2e: an unreachable server must exit 3"; exit 1; }
"$QSIGN" --state_dir="$T/none" frobnicate >/dev/null 2>&1
[ $? -eq 1 ] || { echo "e2e: an unknown command must exit 1"; exit 1; }
OUT=$(as portal --state_dir="$T/none" --operator_file=/dev/null \
  --json register --username=not-an-email --given_name=A --surname=B --national_id=1)
[ $? -eq 2 ] || { echo "e2e: a refused request must exit 2"; exit 1; }
# --json output is JSON a script can parse, naming the refused field.
printf '%s' "$OUT" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["exit_code"] == 2 and "username" in d["error"], d' \
  || { echo "e2e: --json error output is not the expected JSON: $OUT"; exit 1; }
OUT=$(as portal --state_dir="$T/none" --json register \
  --username=json.check@example.rs --given_name=Đorđe --surname="Petrović-O'Neil" \
  --national_id=0101990710008)
printf '%s' "$OUT" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert "check your e-mail" in d["next_step"] and d["link_expires_at"], d' \
  || { echo "e2e: --json register output is not the expected JSON: $OUT"; exit 1; }
# The same answer for an address that already asked (nothing tells whether it is registered).
OUT2=$(as portal --state_dir="$T/none" --json register \
  --username=json.check@example.rs --given_name=Đorđe --surname="Petrović-O'Neil" \
  --national_id=0101990710008)
[ "$(printf '%s' "$OUT2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["next_step"])')" = \
  "$(printf '%s' "$OUT" | python3 -c 'import json, sys; print(json.load(sys.stdin)["next_step"])')" ] \
  || { echo "e2e: a second registration of one address answered differently: $OUT2"; exit 1; }
# A made-up token finishes nothing.
OUT=$(as portal --state_dir="$T/none" confirm-registration --token="$(printf 'A%.0s' $(seq 1 43))" 2>&1)
expect $? 2 "$OUT" "token: unknown, used or expired" "confirm-registration with a made-up token"

# Mutual TLS as a user sees it. The consent app's certificate may not call the portal's RPCs.
OUT=$(as app --state_dir="$T/none" "${REGISTER[@]}" 2>&1)
expect $? 2 "$OUT" 'PERMISSION_DENIED: client "app" may not call /qsign.v1.Identity/RegisterAccount (RPC group identity.user)' \
  "the app's certificate calling register"
# Nor the portal's the operator's.
OUT=$(as portal --state_dir="$T/none" --operator_file="$T/secrets/operator.credential" \
  proof-identity --username=json.check@example.rs 2>&1)
expect $? 2 "$OUT" "PERMISSION_DENIED" "the portal's certificate calling proof-identity"
# A certificate from another CA: the handshake fails, the server is unreachable for this client.
OUT=$(QSIGN_TLS_CA="$T/tls/ca.crt" QSIGN_TLS_CERT="$T/tls-other/portal.crt" \
  QSIGN_TLS_KEY="$T/tls-other/portal.key" "$QSIGN" --server="127.0.0.1:$PORT" \
  --state_dir="$T/none" "${REGISTER[@]}" 2>&1)
expect $? 3 "$OUT" "cannot reach qsign at 127.0.0.1:$PORT" "a certificate from another CA"
# No certificate at all (plaintext): likewise.
OUT=$("$QSIGN" --server="127.0.0.1:$PORT" --state_dir="$T/none" "${REGISTER[@]}" 2>&1)
expect $? 3 "$OUT" "cannot reach qsign at 127.0.0.1:$PORT" "plaintext against the TLS listener"
# Half the TLS flags: a usage error.
OUT=$(QSIGN_TLS_CA="$T/tls/ca.crt" "$QSIGN" --server="127.0.0.1:$PORT" --state_dir="$T/none" \
  "${REGISTER[@]}" 2>&1)
expect $? 1 "$OUT" "--tls_ca, --tls_cert and --tls_key go together" "--tls_ca without a certificate"
# /metrics is HTTPS and wants a client certificate from the CA.
OUT=$(curl -sS --cacert "$T/tls/ca.crt" --cert "$T/tls/operator.crt" --key "$T/tls/operator.key" \
  "https://127.0.0.1:$METRICS_PORT/metrics" 2>&1)
RC=$?
expect "$RC" 0 "$(grep "^qsign_insecure_dev" <<<"$OUT")" "qsign_insecure_dev 0" \
  "/metrics over HTTPS with a client certificate"
curl -sS --cacert "$T/tls/ca.crt" "https://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1
[ $? -ne 0 ] || { echo "e2e: /metrics answered a client without a certificate"; exit 1; }
set -e

mkdir -p "$T/journey"
if ! QSIGN="$QSIGN" QSIGN_SERVER="127.0.0.1:$PORT" OCSP_URL="http://127.0.0.1:$HTTP_PORT/ocsp" \
  QSIGN_TSA_URL="http://127.0.0.1:$TSA_PORT/tsa" \
  OPERATOR_FILE="$T/secrets/operator.credential" TLS_DIR="$T/tls" WORK="$T/journey" \
  MAIL_DIR="$T/mail" "$SRC/scripts/journey.sh"; then
  echo "e2e: journey failed"
  exit 1
fi
