#!/usr/bin/env bash
# The qsign CLI's command line without a server: the spellings, messages and exit codes that
# scripts/journey.sh, tests/e2e and users rely on (usage 1, unreachable 3, --help 0).
# Usage: qsign_usage_test.sh QSIGN_CLI
set -uo pipefail
QSIGN=$1
T=$(mktemp -d /tmp/qsign-usage.XXXXXX)
trap 'rm -rf "$T"' EXIT
unset QSIGN_SERVER QSIGN_STATE_DIR QSIGN_TLS_CA QSIGN_TLS_CERT QSIGN_TLS_KEY QSIGN_OPERATOR
failed=0
# expect WANT_RC TEXT ARGS...: the CLI exits WANT_RC and says TEXT (stdout or stderr).
expect() {
  local want=$1 text=$2
  shift 2
  local out rc
  out=$("$QSIGN" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || [[ $out != *"$text"* ]]; then
    echo "FAIL: qsign $*: exit $rc (want $want), output: $out (want \"$text\")"
    failed=1
  fi
}
REGISTER=(register --username=a@b.rs --given_name=A --surname=B --national_id=0101990710006)

expect 0 "usage: qsign [--server=HOST:PORT]" --help
expect 0 "usage: qsign" sign FILE --help
expect 1 "usage: qsign" --json
expect 1 "unknown command: frobnicate" frobnicate
expect 1 "unknown command: cert" cert
expect 1 "unknown command: cert frob" cert frob
expect 1 "not expected: --bogus" --state_dir="$T" status --bogus
# Both spellings, = or a space, global options before or after the command.
expect 1 "not logged in (no $T/session)" --state_dir="$T" status
expect 1 "not logged in (no $T/session)" --state-dir "$T" status
expect 1 "not logged in (no $T/session)" status --state_dir "$T"
expect 1 "no enrolled app in $T/app" --state_dir="$T" app watch --approve_with_pin=1
expect 1 "no enrolled app in $T/app" --state_dir="$T" app watch --approve-with-pin
expect 1 '{"error":"not logged in' --json --state_dir="$T" status
expect 1 '"exit_code":1}' status --json --state_dir="$T"
QSIGN_STATE_DIR="$T/env" expect 1 "not logged in (no $T/env/session)" status
# A bare flag is "true", which a required value is not.
expect 1 "--username is required" register --username
expect 1 "--given_name is required" register --username=a@b.rs
expect 1 "--timeout: seconds, a positive number" --state_dir="$T" login --username=a --timeout=0
expect 1 "sign: name one FILE" --state_dir="$T" sign
expect 1 "sign: name one FILE" --state_dir="$T" sign a b
expect 1 "operator credentials needed" proof-identity --username=a@b.rs
expect 1 "operator credentials needed" --operator_file=/dev/null unblock-pin --username=a
# TLS: all three files or none; from flags or the environment.
expect 1 "--tls_ca, --tls_cert and --tls_key go together" --tls_ca=/x "${REGISTER[@]}"
QSIGN_TLS_CA=/x expect 1 "--tls_ca, --tls_cert and --tls_key go together" "${REGISTER[@]}"
expect 1 "tls.cert_file: $T/none.crt" --tls_ca="$T/ca" --tls_cert="$T/none.crt" \
  --tls_key="$T/none.key" "${REGISTER[@]}"
expect 3 "cannot reach qsign at 127.0.0.1:1" --server=127.0.0.1:1 "${REGISTER[@]}"
QSIGN_SERVER=127.0.0.1:1 expect 3 "cannot reach qsign at 127.0.0.1:1" "${REGISTER[@]}"
# --json failures are one JSON object a script can parse.
out=$("$QSIGN" --json --server=127.0.0.1:1 "${REGISTER[@]}")
printf '%s' "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["exit_code"] == 3 and "cannot reach" in d["error"], d' \
  || { echo "FAIL: --json unreachable: $out"; failed=1; }
[ "$failed" -eq 0 ] && echo "qsign_usage_test: every case passed"
exit "$failed"
