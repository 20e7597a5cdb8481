// qsign: the command-line client of a qsign deployment, one persona per file: the portal user
// (portal.h, sign.h), the consent app (app.h) and the registration officer (operator.h).
// Exit codes: 0 done, 1 usage or a local problem, 2 refused by the server (its status is shown),
// 3 server unreachable, 4 signature not valid (verify).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/cli/app.h"
#include "tools/cli/args.h"
#include "tools/cli/channel.h"
#include "tools/cli/context.h"
#include "tools/cli/operator.h"
#include "tools/cli/portal.h"
#include "tools/cli/sign.h"
#include "tools/cli/verify.h"

namespace qsign::cli {
namespace {

constexpr char kUsageText[] =
    R"(usage: qsign [--server=HOST:PORT] [--state_dir=DIR] [--json] COMMAND ...

portal (a user; the session is kept in DIR/session, mode 0600):
  register --username=EMAIL --given_name=G --surname=S --national_id=13DIGITS [--email=E]
                                              e-mails a link to EMAIL that finishes it:
  confirm-registration --token=TOKEN          the token= part of that link
  login --username=EMAIL [--timeout=120]      prints the verification code, waits for the app
  status
  contract accept [--version=V]               the current contract unless --version
  cert issue [--key_algorithm=EC_P256]        writes DIR/certificate.pem and DIR/chain.pem
  cert renew [--certificate_id=ID]
  cert revoke [--certificate_id=ID] [--reason=key-compromise|superseded|cessation]
  cert revoke-all
  sign FILE [--format=pades|cades] [--level=B-B|B-T|B-LT] [--visible] [--tsa_url=URL]
      [--out=OUT] [--timeout=120]             approved in the app. A PDF: PAdES into
                                              FILE-signed.pdf (--visible: the name on page 1);
                                              other files: detached CAdES FILE.p7s. B-T adds a
                                              signature timestamp, B-LT also certificates and
                                              OCSP responses ($QSIGN_TSA_URL or
                                              http://127.0.0.1:8318/tsa)
verify (offline, no server):
  verify FILE.p7s [--content=FILE] [--ca_file=PEM] [--at=RFC3339]
  verify FILE.pdf [--ca_file=PEM] [--at=RFC3339]
                                              validation report; the trust anchor is the
                                              self-signed certificate in --ca_file (default
                                              DIR/chain.pem); exit 4 when not TOTAL-PASSED
                                              (a PDF: also when changed after signing)
consent app (simulated; its key lives in DIR/app, mode 0600):
  app enroll --activation_code=CODE --pin=PIN [--device_name=NAME]
  app watch [--approve-with-pin=PIN] [--count=N] [--timeout=SECONDS]
                                              without a PIN: asks for each request
  app deny [--timeout=SECONDS]                denies the next request
  app change-pin --old_pin=PIN --new_pin=PIN  the old PIN counts as a try
  app reset-pin --new_pin=PIN                 after an officer's unblock-pin (within 24 h)
operator (credentials "<id>.<secret>" in --operator_file or $QSIGN_OPERATOR):
  proof-identity --username=EMAIL [--document_number=N] [--assurance=high|substantial|low]
  unblock-pin --username=EMAIL [--note=TEXT]  after re-proofing; the user then runs
                                              app reset-pin (the officer never sees a PIN)

mutual TLS (a qsign server without insecure_dev): --tls_ca=CA.crt --tls_cert=CLIENT.crt
  --tls_key=CLIENT.key, or $QSIGN_TLS_CA, $QSIGN_TLS_CERT, $QSIGN_TLS_KEY; without them the
  connection is plaintext (a development server with insecure_dev only)

defaults: --server=$QSIGN_SERVER or 127.0.0.1:7443, --state_dir=$QSIGN_STATE_DIR or ~/.qsign
exit codes: 0 ok, 1 usage or local error, 2 refused by the server, 3 server unreachable,
  4 signature not valid (verify)
)";

// The names of the commands parsed, "cert" or "cert renew"; *leaf tells whether the last one
// runs (rather than being a group such as "cert").
std::string ParsedCommand(const CLI::App& app, bool* leaf) {
  std::vector<std::string> names;
  const CLI::App* sub = &app;
  while (!sub->get_subcommands().empty()) {
    sub = sub->get_subcommands().front();
    names.push_back(sub->get_name());
  }
  *leaf = !names.empty() && sub->get_subcommands([](const CLI::App*) { return true; }).empty();
  return absl::StrJoin(names, " ");
}

int Main(int argc, char** argv) {
  CLI::App qsign("the command-line client of a qsign deployment", "qsign");
  qsign.set_help_flag("--help", "this text");
  qsign.require_subcommand(0, 1);

  std::string server = "127.0.0.1:7443";
  AddOption(&qsign, "server", &server, "HOST:PORT of qsign")->envname("QSIGN_SERVER");
  const char* home = std::getenv("HOME");
  std::string state_dir = absl::StrCat(home != nullptr ? home : ".", "/.qsign");
  AddOption(&qsign, "state_dir", &state_dir, "the CLI's files")->envname("QSIGN_STATE_DIR");
  bool json = false;
  qsign.add_flag("--json", json, "one JSON object per result");
  TlsFiles tls;
  AddOption(&qsign, "tls_ca", &tls.ca, "the CA of the server")->envname("QSIGN_TLS_CA");
  AddOption(&qsign, "tls_cert", &tls.cert, "the client certificate")->envname("QSIGN_TLS_CERT");
  AddOption(&qsign, "tls_key", &tls.key, "its key")->envname("QSIGN_TLS_KEY");

  Command command;
  PortalCommands portal;
  portal.Add(&qsign, &command);
  SignCommand sign;
  sign.Add(&qsign, &command);
  VerifyCommand verify;
  verify.Add(&qsign, &command);
  AppCommands app;
  app.Add(&qsign, &command);
  OperatorCommands op;
  op.Add(&qsign, &command);

  try {
    qsign.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << kUsageText;
    return kOk;
  } catch (const CLI::ExtrasError& e) {
    // Words no command takes: an unknown command ("frobnicate", "cert frob"), or an unknown flag.
    bool leaf = false;
    const std::string parsed = ParsedCommand(qsign, &leaf);
    const std::vector<std::string> rest = qsign.remaining();
    if (leaf || rest.empty() || rest[0].rfind("-", 0) == 0) {
      return Output(json).Report(Usage(e.what()));
    }
    const std::string words = absl::StrJoin(rest, " ");
    return Output(json).Report(Usage(absl::StrCat(
        "unknown command: ", parsed.empty() ? words : absl::StrCat(parsed, " ", words))));
  } catch (const CLI::ParseError& e) {
    return Output(json).Report(Usage(e.what()));
  }
  if (!command) {
    bool leaf = false;
    const std::string parsed = ParsedCommand(qsign, &leaf);
    if (parsed.empty()) {
      std::cout << kUsageText;
      return kUsage;
    }
    return Output(json).Report(Usage(absl::StrCat("unknown command: ", parsed)));
  }

  Context ctx{server, StateDir(state_dir), Output(json), nullptr};
  if (Result f = Connect(server, tls, &ctx.channel)) return ctx.out.Report(*f);
  Result result = command(ctx);
  return result ? ctx.out.Report(*result) : kOk;
}

}  // namespace
}  // namespace qsign::cli

int main(int argc, char** argv) { return qsign::cli::Main(argc, argv); }
