// qsign: the command-line client of a qsign deployment (portal, consent app and operator sides).
// Exit codes: 0 done, 1 usage or a local problem, 2 refused by the server (its status is shown),
// 3 server unreachable.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "consent/app_simulator.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/cli/cms.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

constexpr int kOk = 0;
constexpr int kUsage = 1;
constexpr int kRefused = 2;
constexpr int kUnreachable = 3;
constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";

constexpr char kUsageText[] =
    R"(usage: qsign [--server=HOST:PORT] [--state_dir=DIR] [--json] COMMAND ...

portal (a user; the session is kept in DIR/session, mode 0600):
  register --username=EMAIL --given_name=G --surname=S --national_id=13DIGITS [--email=E]
  login --username=EMAIL [--timeout=120]      prints the verification code, waits for the app
  status
  contract accept [--version=V]               the current contract unless --version
  cert issue [--key_algorithm=EC_P256]        writes DIR/certificate.pem and DIR/chain.pem
  cert renew [--certificate_id=ID]
  cert revoke [--certificate_id=ID] [--reason=key-compromise|superseded|cessation]
  cert revoke-all
  sign FILE [--out=FILE.p7s] [--timeout=120]  detached CMS/CAdES-B, approved in the app
consent app (simulated; its key lives in DIR/app, mode 0600):
  app enroll --activation_code=CODE --pin=PIN [--device_name=NAME]
  app watch [--approve-with-pin=PIN] [--count=N] [--timeout=SECONDS]
                                              without a PIN: asks for each request
  app deny [--timeout=SECONDS]                denies the next request
operator (credentials "<id>.<secret>" in --operator_file or $QSIGN_OPERATOR):
  proof-identity --username=EMAIL [--document_number=N] [--assurance=high|substantial|low]
  unblock-pin --username=EMAIL --new_pin=PIN

mutual TLS (a qsign server without insecure_dev): --tls_ca=CA.crt --tls_cert=CLIENT.crt
  --tls_key=CLIENT.key, or $QSIGN_TLS_CA, $QSIGN_TLS_CERT, $QSIGN_TLS_KEY; without them the
  connection is plaintext (a development server with insecure_dev only)

defaults: --server=$QSIGN_SERVER or 127.0.0.1:7443, --state_dir=$QSIGN_STATE_DIR or ~/.qsign
exit codes: 0 ok, 1 usage or local error, 2 refused by the server, 3 server unreachable
)";

// ---- Arguments. ----

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  }
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

// --name=value, --name value (when the next word is not a flag), --name (true).
Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      std::string value = "true";
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (name != "json" && name != "help" && i + 1 < argc &&
                 std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];
      }
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      args.flags[name] = value;
    } else {
      args.positional.push_back(a);
    }
  }
  return args;
}

// ---- Output. ----

struct Output {
  bool json = false;
  // Human lines, or JSON fields.
  std::vector<std::pair<std::string, std::string>> fields;
  void Add(const std::string& key, const std::string& value) { fields.emplace_back(key, value); }
  void Print(const std::string& headline) const {
    if (json) {
      // JSON string escaping (UTF-8 passes through), as the structured logs do.
      std::string out = "{";
      for (size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) out.push_back(',');
        AppendJsonString(fields[i].first, &out);
        out.push_back(':');
        AppendJsonString(fields[i].second, &out);
      }
      std::cout << out << "}" << std::endl;
      return;
    }
    if (!headline.empty()) std::cout << headline << std::endl;
    for (const auto& [k, v] : fields) std::cout << "  " << k << ": " << v << std::endl;
  }
};

// A failed command: its exit code and what to tell the user.
struct Failure {
  int code;
  std::string message;
};

int Report(const Failure& f, bool json) {
  if (json) {
    std::string out = "{\"error\":";
    AppendJsonString(f.message, &out);
    std::cout << out << ",\"exit_code\":" << f.code << "}" << std::endl;
  } else {
    std::cerr << "qsign: " << f.message << std::endl;
  }
  return f.code;
}

std::string Hint(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return " (log in again: qsign login --username=...)";
    case grpc::StatusCode::PERMISSION_DENIED:
      return " (this needs other credentials: an operator's, or the account owner's)";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return " (a step before this one is missing; see qsign status)";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return " (fix the argument named above; qsign --help lists them)";
    default:
      return "";
  }
}

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : absl::StrCat(i);
}

Failure FromGrpc(const std::string& what, const grpc::Status& s, const std::string& server) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return {kUnreachable,
            absl::StrCat(what, ": cannot reach qsign at ", server, " (", s.error_message(),
                         "); is qsignd running? set --server or $QSIGN_SERVER")};
  }
  return {kRefused, absl::StrCat(what, ": refused: ", CodeName(s.error_code()), ": ",
                                 s.error_message(), Hint(s.error_code()))};
}

Failure FromStatus(const std::string& what, const absl::Status& s, const std::string& server) {
  if (s.code() == absl::StatusCode::kUnavailable) {
    return {kUnreachable, absl::StrCat(what, ": cannot reach qsign at ", server, " (", s.message(),
                                       "); is qsignd running?")};
  }
  return {kRefused, absl::StrCat(what, ": ", s.ToString())};
}

// ---- Files in the state directory. ----

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  {
    const mode_t old = ::umask(0077);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ::umask(old);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
  }
  if (::chmod(tmp.c_str(), mode) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& dir) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    partial += std::string(part) + "/";
    if (part.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create"));
    }
  }
  return absl::OkStatus();
}

// key=value lines.
std::map<std::string, std::string> ParseKv(const std::string& text) {
  std::map<std::string, std::string> kv;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(line, absl::MaxSplits('=', 1));
    kv[p.first] = p.second;
  }
  return kv;
}

std::string FormatKv(const std::map<std::string, std::string>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) absl::StrAppend(&out, k, "=", v, "\n");
  return out;
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

// ---- The command context. ----

class Cli {
 public:
  Cli(Args args) : args_(std::move(args)) {
    const char* env_server = std::getenv("QSIGN_SERVER");
    server_ = args_.Get("server", env_server ? env_server : "127.0.0.1:7443");
    const char* env_dir = std::getenv("QSIGN_STATE_DIR");
    const char* home = std::getenv("HOME");
    state_dir_ =
        args_.Get("state_dir", env_dir ? env_dir : absl::StrCat(home ? home : ".", "/.qsign"));
    out_.json = args_.Has("json");
  }

  int Run();

 private:
  using Result = std::optional<Failure>;

  // Plaintext, or mutual TLS when --tls_ca/--tls_cert/--tls_key (or $QSIGN_TLS_*) are given.
  Result Connect();
  std::string FlagOrEnv(const std::string& flag, const char* env) const {
    const char* value = std::getenv(env);
    return args_.Get(flag, value != nullptr ? value : "");
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& authorization = "",
                                           absl::Duration timeout = absl::Seconds(30)) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
    return ctx;
  }
  Failure Usage(const std::string& what) const {
    return {kUsage, absl::StrCat(what, " (qsign --help shows every command)")};
  }
  absl::StatusOr<std::string> Required(const std::string& flag) const {
    std::string v = args_.Get(flag);
    if (v.empty() || v == "true") {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " is required"));
    }
    return v;
  }
  std::string SessionPath() const { return state_dir_ + "/session"; }
  std::string AppDir() const { return state_dir_ + "/app"; }
  // "Bearer <token>" from the stored session and the account id.
  Result LoadSession(std::string* bearer, std::string* account_id) const;
  Result Operator(std::string* authorization) const;
  Result AccountIdByUsername(const std::string& authorization, const std::string& username,
                             std::string* account_id);
  Result LoadApp(std::unique_ptr<consent::ConsentAppSimulator>* app);

  Result Register();
  Result ProofIdentity();
  Result UnblockPin();
  Result Login();
  Result Status();
  Result ContractAccept();
  Result CertIssue();
  Result CertRenew();
  Result CertRevoke();
  Result CertRevokeAll();
  Result Sign();
  Result AppEnroll();
  Result AppWatch();
  Result AppDeny();
  Result WriteCertificateFiles(const pb::Certificate& cert);

  Args args_;
  std::string server_;
  std::string state_dir_;
  Output out_;
  std::shared_ptr<grpc::Channel> channel_;
};

Cli::Result Cli::LoadSession(std::string* bearer, std::string* account_id) const {
  auto text = ReadFile(SessionPath());
  if (!text.ok()) {
    return Failure{kUsage, absl::StrCat("not logged in (no ", SessionPath(),
                                        "): run qsign login --username=EMAIL first")};
  }
  auto kv = ParseKv(*text);
  if (kv["token"].empty()) {
    return Failure{kUsage, "the stored session is empty: run qsign login --username=EMAIL"};
  }
  *bearer = absl::StrCat("Bearer ", kv["token"]);
  *account_id = kv["account_id"];
  return std::nullopt;
}

Cli::Result Cli::Operator(std::string* authorization) const {
  std::string cred;
  if (args_.Has("operator_file")) {
    auto text = ReadFile(args_.Get("operator_file"));
    if (!text.ok()) return Failure{kUsage, std::string(text.status().message())};
    cred = std::string(absl::StripAsciiWhitespace(*text));
  } else if (const char* env = std::getenv("QSIGN_OPERATOR"); env != nullptr) {
    cred = env;
  }
  if (cred.empty() || cred.find('.') == std::string::npos) {
    return Failure{kUsage,
                   "operator credentials needed: --operator_file=FILE holding \"<id>.<secret>\" "
                   "or QSIGN_OPERATOR=<id>.<secret>"};
  }
  *authorization = absl::StrCat("Operator ", cred);
  return std::nullopt;
}

Cli::Result Cli::AccountIdByUsername(const std::string& authorization, const std::string& username,
                                     std::string* account_id) {
  auto stub = pb::Identity::NewStub(channel_);
  pb::GetAccountRequest req;
  req.set_username(username);
  pb::Account account;
  auto ctx = Ctx(authorization);
  grpc::Status s = stub->GetAccount(ctx.get(), req, &account);
  if (!s.ok()) return FromGrpc("Identity.GetAccount", s, server_);
  *account_id = account.account_id();
  return std::nullopt;
}

// ---- Portal side. ----

Cli::Result Cli::Register() {
  pb::RegisterAccountRequest req;
  for (const char* flag : {"username", "given_name", "surname", "national_id"}) {
    auto v = Required(flag);
    if (!v.ok()) return Usage(std::string(v.status().message()));
  }
  req.set_username(args_.Get("username"));
  req.set_given_name(args_.Get("given_name"));
  req.set_surname(args_.Get("surname"));
  req.set_national_id(args_.Get("national_id"));
  req.set_certificate_email(args_.Get("email"));
  auto stub = pb::Identity::NewStub(channel_);
  pb::Account account;
  auto ctx = Ctx();
  grpc::Status s = stub->RegisterAccount(ctx.get(), req, &account);
  if (!s.ok()) return FromGrpc("register", s, server_);
  out_.Add("account_id", account.account_id());
  out_.Add("username", account.username());
  out_.Print("registered; next: an operator proofs the identity (qsign proof-identity)");
  return std::nullopt;
}

Cli::Result Cli::ProofIdentity() {
  std::string op;
  if (auto f = Operator(&op)) return f;
  auto username = Required("username");
  if (!username.ok()) return Usage(std::string(username.status().message()));
  std::string account_id;
  if (auto f = AccountIdByUsername(op, *username, &account_id)) return f;
  pb::ProofIdentityRequest req;
  req.set_account_id(account_id);
  const std::string level = args_.Get("assurance", "high");
  req.set_assurance_level(level == "low"           ? pb::ASSURANCE_LEVEL_LOW
                          : level == "substantial" ? pb::ASSURANCE_LEVEL_SUBSTANTIAL
                                                   : pb::ASSURANCE_LEVEL_HIGH);
  req.mutable_evidence()->set_document_type(pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
  req.mutable_evidence()->set_document_number(args_.Get("document_number", "000000000"));
  req.mutable_evidence()->set_note(args_.Get("note", "proofed with qsign proof-identity"));
  auto stub = pb::Identity::NewStub(channel_);
  pb::ProofIdentityResponse resp;
  auto ctx = Ctx(op);
  grpc::Status s = stub->ProofIdentity(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc("proof-identity", s, server_);
  out_.Add("account_id", account_id);
  out_.Add("activation_code", resp.activation_code());
  out_.Add("activation_code_expires_at", FormatTime(resp.activation_code_expires_at()));
  out_.Print("identity proofed; give the activation code to the user for qsign app enroll");
  return std::nullopt;
}

Cli::Result Cli::UnblockPin() {
  std::string op;
  if (auto f = Operator(&op)) return f;
  auto username = Required("username");
  if (!username.ok()) return Usage(std::string(username.status().message()));
  auto pin = Required("new_pin");
  if (!pin.ok()) return Usage(std::string(pin.status().message()));
  std::string account_id;
  if (auto f = AccountIdByUsername(op, *username, &account_id)) return f;
  pb::UnblockPinRequest req;
  req.set_account_id(account_id);
  req.set_new_pin(*pin);
  req.set_note(args_.Get("note", "unblocked with qsign unblock-pin"));
  auto stub = pb::Consent::NewStub(channel_);
  pb::UnblockPinResponse resp;
  auto ctx = Ctx(op);
  grpc::Status s = stub->UnblockPin(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc("unblock-pin", s, server_);
  out_.Add("account_id", account_id);
  out_.Print("PIN unblocked; the user approves with the new PIN");
  return std::nullopt;
}

Cli::Result Cli::Login() {
  auto username = Required("username");
  if (!username.ok()) return Usage(std::string(username.status().message()));
  int timeout = 120;
  if (!absl::SimpleAtoi(args_.Get("timeout", "120"), &timeout) || timeout <= 0) {
    return Usage("--timeout: seconds, a positive number");
  }
  auto stub = pb::Identity::NewStub(channel_);
  pb::StartLoginRequest start;
  start.set_username(*username);
  start.mutable_client()->set_user_agent("qsign-cli");
  pb::StartLoginResponse started;
  {
    auto ctx = Ctx();
    grpc::Status s = stub->StartLogin(ctx.get(), start, &started);
    if (!s.ok()) return FromGrpc("login", s, server_);
  }
  if (out_.json) {
    std::cout << "{\"verification_code\":\"" << started.verification_code() << "\"}" << std::endl;
  } else {
    std::cout << "verification code: " << started.verification_code()
              << "  (check that your consent app shows the same code, then approve with your "
                 "PIN)"
              << std::endl;
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(timeout);
  while (absl::Now() < give_up) {
    pb::AwaitLoginRequest req;
    req.set_login_id(started.login_id());
    req.mutable_max_wait()->set_seconds(20);
    pb::AwaitLoginResponse resp;
    auto ctx = Ctx("", absl::Seconds(40));
    grpc::Status s = stub->AwaitLogin(ctx.get(), req, &resp);
    if (!s.ok()) return FromGrpc("login", s, server_);
    switch (resp.state()) {
      case pb::LOGIN_STATE_PENDING:
        continue;
      case pb::LOGIN_STATE_APPROVED: {
        if (auto st = MakeDir(state_dir_); !st.ok()) {
          return Failure{kUsage, std::string(st.message())};
        }
        if (auto st = WriteFile(SessionPath(),
                                FormatKv({{"token", resp.session_token()},
                                          {"account_id", resp.account_id()},
                                          {"username", *username}}),
                                0600);
            !st.ok()) {
          return Failure{kUsage, std::string(st.message())};
        }
        out_.Add("account_id", resp.account_id());
        out_.Add("session_expires_at", FormatTime(resp.session_expires_at()));
        out_.Add("session_file", SessionPath());
        out_.Print("logged in");
        return std::nullopt;
      }
      case pb::LOGIN_STATE_DENIED:
        return Failure{kRefused, "login: denied in the consent app; start again if that was you"};
      case pb::LOGIN_STATE_EXPIRED:
        return Failure{kRefused, "login: expired before it was approved; run qsign login again"};
      default:
        return Failure{kRefused, "login: unexpected state from the server"};
    }
  }
  return Failure{kRefused, "login: not approved in time; is the consent app watching?"};
}

Cli::Result Cli::Status() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto stub = pb::Lifecycle::NewStub(channel_);
  pb::GetStatusRequest req;
  pb::GetStatusResponse resp;
  auto ctx = Ctx(bearer);
  grpc::Status s = stub->GetStatus(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc("status", s, server_);
  out_.Add("account_id", account_id);
  out_.Add("certificate", absl::AsciiStrToLower(std::string(
                              pb::AccountCertificateState_Name(resp.state()).substr(26))));
  if (resp.has_certificate()) {
    out_.Add("certificate_id", resp.certificate().certificate_id());
    out_.Add("serial", resp.certificate().serial_hex());
    out_.Add("subject", resp.certificate().subject_dn());
    out_.Add("valid_until", FormatTime(resp.certificate().not_after()));
  }
  out_.Add("current_contract", resp.current_contract_version());
  out_.Add("accepted_contract", resp.accepted_contract_version().empty()
                                    ? "(none: qsign contract accept)"
                                    : resp.accepted_contract_version());
  out_.Print("status");
  return std::nullopt;
}

Cli::Result Cli::ContractAccept() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto stub = pb::Lifecycle::NewStub(channel_);
  pb::GetContractRequest get;
  get.set_version(args_.Get("version"));
  pb::Contract contract;
  {
    auto ctx = Ctx(bearer);
    grpc::Status s = stub->GetContract(ctx.get(), get, &contract);
    if (!s.ok()) return FromGrpc("contract", s, server_);
  }
  pb::AcceptContractRequest req;
  req.set_version(contract.version());
  req.set_text_sha256(Sha256(contract.text()));
  pb::ContractAcceptance accepted;
  auto ctx = Ctx(bearer);
  grpc::Status s = stub->AcceptContract(ctx.get(), req, &accepted);
  if (!s.ok()) return FromGrpc("contract accept", s, server_);
  out_.Add("version", accepted.version());
  out_.Add("accepted_at", FormatTime(accepted.accepted_at()));
  out_.Print("contract accepted; next: qsign cert issue");
  return std::nullopt;
}

Cli::Result Cli::WriteCertificateFiles(const pb::Certificate& cert) {
  auto pem = CertificatePem(cert.certificate_der());
  if (!pem.ok()) return Failure{kRefused, std::string(pem.status().message())};
  std::string chain;
  for (const std::string& der : cert.issuer_chain_der()) {
    auto p = CertificatePem(der);
    if (!p.ok()) return Failure{kRefused, std::string(p.status().message())};
    chain += *p;
  }
  if (auto st = MakeDir(state_dir_); !st.ok()) return Failure{kUsage, std::string(st.message())};
  for (const auto& [name, data] : std::vector<std::pair<std::string, std::string>>{
           {"certificate.pem", *pem}, {"chain.pem", chain}}) {
    if (auto st = WriteFile(state_dir_ + "/" + name, data, 0644); !st.ok()) {
      return Failure{kUsage, std::string(st.message())};
    }
  }
  out_.Add("certificate_id", cert.certificate_id());
  out_.Add("serial", cert.serial_hex());
  out_.Add("subject", cert.subject_dn());
  out_.Add("not_after", FormatTime(cert.not_after()));
  out_.Add("certificate_file", state_dir_ + "/certificate.pem");
  out_.Add("chain_file", state_dir_ + "/chain.pem");
  return std::nullopt;
}

Cli::Result Cli::CertIssue() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  pb::IssueRequest req;
  req.set_client_request_id(absl::StrCat("cli-", absl::ToUnixNanos(absl::Now())));
  pb::KeyAlgorithm alg = pb::KEY_ALGORITHM_EC_P256;
  if (!pb::KeyAlgorithm_Parse(absl::StrCat("KEY_ALGORITHM_", args_.Get("key_algorithm", "EC_P256")),
                              &alg)) {
    return Usage("--key_algorithm: EC_P256, EC_P384, RSA_2048, RSA_3072 or RSA_4096");
  }
  req.set_key_algorithm(alg);
  auto stub = pb::Lifecycle::NewStub(channel_);
  pb::Certificate cert;
  auto ctx = Ctx(bearer, absl::Seconds(60));
  grpc::Status s = stub->Issue(ctx.get(), req, &cert);
  if (!s.ok()) return FromGrpc("cert issue", s, server_);
  if (auto f = WriteCertificateFiles(cert)) return f;
  out_.Print("certificate issued (key in the HSM); next: qsign sign FILE");
  return std::nullopt;
}

// The account's current certificate, or --certificate_id.
absl::StatusOr<pb::GetStatusResponse> CurrentStatus(pb::Lifecycle::Stub* stub,
                                                    grpc::ClientContext* ctx) {
  pb::GetStatusRequest req;
  pb::GetStatusResponse resp;
  grpc::Status s = stub->GetStatus(ctx, req, &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return resp;
}

Cli::Result Cli::CertRenew() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto stub = pb::Lifecycle::NewStub(channel_);
  std::string id = args_.Get("certificate_id");
  if (id.empty()) {
    auto ctx = Ctx(bearer);
    auto st = CurrentStatus(stub.get(), ctx.get());
    if (!st.ok()) return FromStatus("cert renew", st.status(), server_);
    id = st->certificate().certificate_id();
  }
  pb::RenewRequest req;
  req.set_client_request_id(absl::StrCat("cli-", absl::ToUnixNanos(absl::Now())));
  req.set_certificate_id(id);
  pb::Certificate cert;
  auto ctx = Ctx(bearer, absl::Seconds(60));
  grpc::Status s = stub->Renew(ctx.get(), req, &cert);
  if (!s.ok()) return FromGrpc("cert renew", s, server_);
  if (auto f = WriteCertificateFiles(cert)) return f;
  out_.Print("certificate renewed");
  return std::nullopt;
}

Cli::Result Cli::CertRevoke() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto stub = pb::Lifecycle::NewStub(channel_);
  std::string id = args_.Get("certificate_id");
  if (id.empty()) {
    auto ctx = Ctx(bearer);
    auto st = CurrentStatus(stub.get(), ctx.get());
    if (!st.ok()) return FromStatus("cert revoke", st.status(), server_);
    id = st->certificate().certificate_id();
    if (id.empty()) return Failure{kRefused, "cert revoke: the account has no certificate"};
  }
  pb::RevokeRequest req;
  req.set_certificate_id(id);
  const std::string reason = args_.Get("reason", "cessation");
  req.set_reason(reason == "key-compromise" ? pb::REVOCATION_REASON_KEY_COMPROMISE
                 : reason == "superseded"   ? pb::REVOCATION_REASON_SUPERSEDED
                                            : pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  pb::Certificate cert;
  auto ctx = Ctx(bearer, absl::Seconds(60));
  grpc::Status s = stub->Revoke(ctx.get(), req, &cert);
  if (!s.ok()) return FromGrpc("cert revoke", s, server_);
  out_.Add("certificate_id", cert.certificate_id());
  out_.Add("serial", cert.serial_hex());
  out_.Add("revoked_at", FormatTime(cert.revoked_at()));
  out_.Print("certificate revoked (its key is destroyed in the HSM)");
  return std::nullopt;
}

Cli::Result Cli::CertRevokeAll() {
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto stub = pb::Lifecycle::NewStub(channel_);
  pb::RevokeAllRequest req;
  req.set_account_id(account_id);
  req.set_reason(pb::REVOCATION_REASON_CESSATION_OF_OPERATION);
  pb::RevokeAllResponse resp;
  auto ctx = Ctx(bearer, absl::Seconds(60));
  grpc::Status s = stub->RevokeAll(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc("cert revoke-all", s, server_);
  out_.Add("certificates_revoked", absl::StrCat(resp.revoked_certificates_size()));
  out_.Add("devices_deactivated", absl::StrCat(resp.devices_deactivated()));
  out_.Add("sessions_ended", absl::StrCat(resp.sessions_ended()));
  out_.Print("everything revoked; the account must be proofed and enrolled again to sign");
  return std::nullopt;
}

Cli::Result Cli::Sign() {
  if (args_.positional.size() != 2) return Usage("sign: name one FILE");
  const std::string file = args_.positional[1];
  const std::string out_path = args_.Get("out", file + ".p7s");
  int timeout = 120;
  if (!absl::SimpleAtoi(args_.Get("timeout", "120"), &timeout) || timeout <= 0) {
    return Usage("--timeout: seconds, a positive number");
  }
  std::string bearer, account_id;
  if (auto f = LoadSession(&bearer, &account_id)) return f;
  auto content = ReadFile(file);
  if (!content.ok()) return Failure{kUsage, std::string(content.status().message())};
  const std::string digest = Sha256(*content);

  auto lifecycle = pb::Lifecycle::NewStub(channel_);
  pb::GetStatusResponse status;
  {
    auto ctx = Ctx(bearer);
    auto st = CurrentStatus(lifecycle.get(), ctx.get());
    if (!st.ok()) return FromStatus("sign", st.status(), server_);
    status = *std::move(st);
  }
  if (status.state() != pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE) {
    return Failure{kRefused, "sign: no active certificate; run qsign cert issue first"};
  }
  const pb::Certificate& cert = status.certificate();
  std::vector<std::string> chain(cert.issuer_chain_der().begin(), cert.issuer_chain_der().end());
  std::string base_name = file.substr(file.find_last_of('/') + 1);

  auto consent = pb::Consent::NewStub(channel_);
  auto signer = pb::Signer::NewStub(channel_);
  std::optional<Failure> failure;
  RemoteSignFn remote = [&](const std::string& to_sign) -> absl::StatusOr<std::string> {
    pb::AuthorizeRequest auth;
    auth.set_credential_id(cert.certificate_id());
    auth.set_hash_algorithm_oid(kSha256Oid);
    auth.add_hashes(to_sign);
    auth.set_num_signatures(1);
    auto* doc = auth.add_documents();
    doc->set_label(base_name.substr(0, 64));
    doc->set_document_name(base_name);
    doc->set_document_digest(digest);
    pb::AuthorizeResponse authorized;
    {
      auto ctx = Ctx(bearer);
      grpc::Status s = consent->Authorize(ctx.get(), auth, &authorized);
      if (!s.ok()) {
        failure = FromGrpc("sign: Consent.Authorize", s, server_);
        return absl::AbortedError("");
      }
    }
    if (!out_.json) {
      std::cout << "approve signing " << base_name << " in your consent app..." << std::endl;
    }
    std::string sad;
    const absl::Time give_up = absl::Now() + absl::Seconds(timeout);
    while (sad.empty()) {
      if (absl::Now() > give_up) {
        failure = Failure{kRefused, "sign: not approved in time; is the consent app watching?"};
        return absl::AbortedError("");
      }
      pb::AwaitAuthorizationRequest await;
      await.set_request_id(authorized.request_id());
      await.mutable_max_wait()->set_seconds(20);
      pb::AwaitAuthorizationResponse resp;
      auto ctx = Ctx(bearer, absl::Seconds(40));
      grpc::Status s = consent->AwaitAuthorization(ctx.get(), await, &resp);
      if (!s.ok()) {
        failure = FromGrpc("sign: Consent.AwaitAuthorization", s, server_);
        return absl::AbortedError("");
      }
      if (resp.state() == pb::CONSENT_REQUEST_STATE_APPROVED) {
        sad = resp.sad();
      } else if (resp.state() != pb::CONSENT_REQUEST_STATE_PENDING) {
        failure = Failure{kRefused, absl::StrCat("sign: the request was not approved (",
                                                 pb::ConsentRequestState_Name(resp.state()),
                                                 "); run qsign sign again")};
        return absl::AbortedError("");
      }
    }
    pb::SignHashRequest sign;
    sign.set_credential_id(cert.certificate_id());
    sign.set_hash_algorithm_oid(kSha256Oid);
    sign.set_sign_algorithm_oid(cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P256 ||
                                        cert.key_algorithm() == pb::KEY_ALGORITHM_EC_P384
                                    ? "1.2.840.10045.4.3.2"
                                    : "1.2.840.113549.1.1.11");
    sign.add_hashes(to_sign);
    sign.set_sad(sad);
    pb::SignHashResponse signed_resp;
    auto ctx = Ctx(bearer);
    grpc::Status s = signer->SignHash(ctx.get(), sign, &signed_resp);
    if (!s.ok()) {
      failure = FromGrpc("sign: Signer.SignHash", s, server_);
      return absl::AbortedError("");
    }
    if (signed_resp.signatures_size() != 1) {
      return absl::InternalError("Signer.SignHash answered no signature");
    }
    return signed_resp.signatures(0);
  };
  auto p7s = DetachedCadesB(digest, cert.certificate_der(), chain, absl::Now(), remote);
  if (failure) return failure;
  if (!p7s.ok()) return Failure{kUsage, absl::StrCat("sign: ", p7s.status().ToString())};
  if (auto st = WriteFile(out_path, *p7s, 0644); !st.ok()) {
    return Failure{kUsage, std::string(st.message())};
  }
  out_.Add("file", file);
  out_.Add("signature", out_path);
  out_.Add("sha256", absl::BytesToHexString(digest));
  out_.Add("certificate_id", cert.certificate_id());
  out_.Print(absl::StrCat("signed; check with: openssl cms -verify -binary -inform DER -in ",
                          out_path, " -content ", file, " -CAfile ", state_dir_,
                          "/chain.pem -out /dev/null"));
  return std::nullopt;
}

// ---- Consent app side. ----

Cli::Result Cli::LoadApp(std::unique_ptr<consent::ConsentAppSimulator>* app) {
  auto pem = ReadFile(AppDir() + "/device-key.pem");
  auto ids = ReadFile(AppDir() + "/device");
  if (!pem.ok() || !ids.ok()) {
    return Failure{kUsage, absl::StrCat("no enrolled app in ", AppDir(),
                                        ": run qsign app enroll --activation_code=... first")};
  }
  auto kv = ParseKv(*ids);
  auto loaded = consent::ConsentAppSimulator::FromPrivateKeyPem(channel_, *pem, kv["device_id"],
                                                                kv["account_id"]);
  if (!loaded.ok()) return Failure{kUsage, loaded.status().ToString()};
  *app = *std::move(loaded);
  return std::nullopt;
}

Cli::Result Cli::AppEnroll() {
  auto code = Required("activation_code");
  if (!code.ok()) return Usage(std::string(code.status().message()));
  auto pin = Required("pin");
  if (!pin.ok()) return Usage(std::string(pin.status().message()));
  auto app = consent::ConsentAppSimulator::New(channel_);
  if (!app.ok()) return Failure{kUsage, app.status().ToString()};
  absl::Status s = (*app)->Enroll(*code, args_.Get("device_name", "qsign CLI app"), *pin);
  if (!s.ok()) return FromStatus("app enroll", s, server_);
  auto pem = (*app)->PrivateKeyPem();
  if (!pem.ok()) return Failure{kUsage, pem.status().ToString()};
  if (auto st = MakeDir(AppDir()); !st.ok()) return Failure{kUsage, std::string(st.message())};
  if (auto st = WriteFile(AppDir() + "/device-key.pem", *pem, 0600); !st.ok()) {
    return Failure{kUsage, std::string(st.message())};
  }
  if (auto st = WriteFile(
          AppDir() + "/device",
          FormatKv({{"device_id", (*app)->device_id()}, {"account_id", (*app)->account_id()}}),
          0600);
      !st.ok()) {
    return Failure{kUsage, std::string(st.message())};
  }
  out_.Add("device_id", (*app)->device_id());
  out_.Add("account_id", (*app)->account_id());
  out_.Add("app_dir", AppDir());
  out_.Print("app enrolled; keep qsign app watch running to receive requests");
  return std::nullopt;
}

void ShowRequest(const pb::ConsentRequest& r, bool json) {
  if (json) return;
  std::cout << "request " << r.request_id() << " ("
            << (r.kind() == pb::CONSENT_REQUEST_KIND_LOGIN ? "login" : "sign") << "):\n  "
            << absl::StrReplaceAll(r.display_text(), {{"\n", "\n  "}}) << std::endl;
}

Cli::Result Cli::AppWatch() {
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (auto f = LoadApp(&app)) return f;
  int count = 0, timeout = 0;  // 0: forever.
  if (!absl::SimpleAtoi(args_.Get("count", "0"), &count) ||
      !absl::SimpleAtoi(args_.Get("timeout", "0"), &timeout) || count < 0 || timeout < 0) {
    return Usage("--count and --timeout: non-negative numbers");
  }
  const std::string pin = args_.Get("approve_with_pin");
  absl::Status s = app->StartWatching();
  if (!s.ok()) return FromStatus("app watch", s, server_);
  if (!out_.json) std::cout << "app: watching for requests (Ctrl-C stops)" << std::endl;
  const absl::Time until =
      timeout == 0 ? absl::InfiniteFuture() : absl::Now() + absl::Seconds(timeout);
  int decided = 0;
  while (count == 0 || decided < count) {
    if (absl::Now() >= until) break;
    auto r = app->NextRequest(std::min(absl::Seconds(5), until - absl::Now()));
    if (r.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
    if (!r.ok()) {
      // The device was deactivated (revoke-all, new enrolment) or the server went away.
      if (r.status().code() == absl::StatusCode::kPermissionDenied) {
        out_.Add("decided", absl::StrCat(decided));
        out_.Print("app: this device is no longer active (revoked or replaced); enrol again");
        return std::nullopt;
      }
      return FromStatus("app watch", r.status(), server_);
    }
    ShowRequest(*r, out_.json);
    std::string use_pin = pin;
    bool approve = true;
    if (pin.empty() || pin == "true") {
      std::cout << "approve? [y/N] " << std::flush;
      std::string answer;
      if (!std::getline(std::cin, answer)) break;
      approve = answer == "y" || answer == "Y" || answer == "yes";
      if (approve) {
        std::cout << "PIN: " << std::flush;
        if (!std::getline(std::cin, use_pin)) break;
      }
    }
    auto decided_resp = approve ? app->Approve(*r, use_pin) : app->Deny(*r);
    if (!decided_resp.ok()) return FromStatus("app approve", decided_resp.status(), server_);
    ++decided;
    if (out_.json) {
      std::cout << "{\"request_id\":\"" << r->request_id() << "\",\"decision\":\""
                << (approve ? "approve" : "deny") << "\",\"result\":\""
                << pb::ApproveResult_Name(decided_resp->result()) << "\"}" << std::endl;
    } else {
      std::cout << "app: " << (approve ? "approved" : "denied") << " -> "
                << pb::ApproveResult_Name(decided_resp->result()) << std::endl;
    }
  }
  app->StopWatching();
  return std::nullopt;
}

Cli::Result Cli::AppDeny() {
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (auto f = LoadApp(&app)) return f;
  int timeout = 60;
  if (!absl::SimpleAtoi(args_.Get("timeout", "60"), &timeout) || timeout <= 0) {
    return Usage("--timeout: seconds, a positive number");
  }
  absl::Status s = app->StartWatching();
  if (!s.ok()) return FromStatus("app deny", s, server_);
  auto r = app->NextRequest(absl::Seconds(timeout));
  if (!r.ok()) return FromStatus("app deny: waiting for a request", r.status(), server_);
  ShowRequest(*r, out_.json);
  auto resp = app->Deny(*r);
  app->StopWatching();
  if (!resp.ok()) return FromStatus("app deny", resp.status(), server_);
  out_.Add("request_id", r->request_id());
  out_.Print("denied");
  return std::nullopt;
}

Cli::Result Cli::Connect() {
  const std::string ca = FlagOrEnv("tls_ca", "QSIGN_TLS_CA");
  const std::string cert = FlagOrEnv("tls_cert", "QSIGN_TLS_CERT");
  const std::string key = FlagOrEnv("tls_key", "QSIGN_TLS_KEY");
  if (ca.empty() && cert.empty() && key.empty()) {
    channel_ = grpc::CreateChannel(server_, grpc::InsecureChannelCredentials());
    return std::nullopt;
  }
  if (ca.empty() || cert.empty() || key.empty()) {
    return Usage("--tls_ca, --tls_cert and --tls_key go together");
  }
  grpc::SslCredentialsOptions options;
  for (auto [path, field] : {std::pair{&ca, &options.pem_root_certs},
                             std::pair{&cert, &options.pem_cert_chain},
                             std::pair{&key, &options.pem_private_key}}) {
    auto pem = ReadFile(*path);
    if (!pem.ok()) return Failure{kUsage, std::string(pem.status().message())};
    *field = *std::move(pem);
  }
  channel_ = grpc::CreateChannel(server_, grpc::SslCredentials(options));
  return std::nullopt;
}

int Cli::Run() {
  const auto& p = args_.positional;
  if (args_.Has("help") || p.empty()) {
    std::cout << kUsageText;
    return p.empty() && !args_.Has("help") ? kUsage : kOk;
  }
  if (Result r = Connect(); r.has_value()) return Report(*r, out_.json);
  const std::string cmd = p[0];
  const std::string sub = p.size() > 1 ? p[1] : "";
  Result r;
  if (cmd == "register") {
    r = Register();
  } else if (cmd == "proof-identity") {
    r = ProofIdentity();
  } else if (cmd == "unblock-pin") {
    r = UnblockPin();
  } else if (cmd == "login") {
    r = Login();
  } else if (cmd == "status") {
    r = Status();
  } else if (cmd == "contract" && sub == "accept") {
    r = ContractAccept();
  } else if (cmd == "cert" && sub == "issue") {
    r = CertIssue();
  } else if (cmd == "cert" && sub == "renew") {
    r = CertRenew();
  } else if (cmd == "cert" && sub == "revoke") {
    r = CertRevoke();
  } else if (cmd == "cert" && sub == "revoke-all") {
    r = CertRevokeAll();
  } else if (cmd == "sign") {
    r = Sign();
  } else if (cmd == "app" && sub == "enroll") {
    r = AppEnroll();
  } else if (cmd == "app" && sub == "watch") {
    r = AppWatch();
  } else if (cmd == "app" && sub == "deny") {
    r = AppDeny();
  } else {
    r = Usage(absl::StrCat("unknown command: ", absl::StrJoin(p, " ")));
  }
  return r ? Report(*r, out_.json) : kOk;
}

}  // namespace
}  // namespace qsign::cli

int main(int argc, char** argv) {
  qsign::cli::Cli cli(qsign::cli::ParseArgs(argc, argv));
  return cli.Run();
}
