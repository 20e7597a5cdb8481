#include "common/daemon/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/client_address.h"
#include "common/daemon/token_roles.h"
#include "common/file.h"
#include "common/oids.h"
#include "common/secret.h"
#include "common/strings.h"
#include "common/tls.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "hsm/hsm.h"

namespace qsign {
namespace {

namespace cfg = ::qsign::config::v1;

constexpr char kDefaultListen[] = "127.0.0.1:7443";
constexpr char kDefaultModule[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kDefaultSadKey[] = "qsign-sad-1";
constexpr char kDefaultSessionKey[] = "qsign-session-1";
constexpr char kDefaultDeviceCaKey[] = "qsign-device-ca-1";
constexpr char kDefaultLifecycleHttp[] = "127.0.0.1:8080";
constexpr char kDefaultGatewayHttp[] = "127.0.0.1:8480";
constexpr char kDefaultTsaHttp[] = "127.0.0.1:8318";
constexpr char kDefaultWebHttp[] = "127.0.0.1:8443";

// Keeps the first parse error with its 1-based position and, when the message does not say, the
// field named on that line ("2:14: max_batch: Expected integer, got: \"ten\"").
class FirstErrorCollector final : public google::protobuf::io::ErrorCollector {
 public:
  explicit FirstErrorCollector(std::string_view text) : text_(text) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    const std::string field = FieldOnLine(line);
    const bool named =
        !field.empty() && message.find(absl::StrCat("\"", field, "\"")) == std::string::npos;
    error_ = absl::StrCat(line + 1, ":", column + 1, ": ", named ? absl::StrCat(field, ": ") : "",
                          message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string FieldOnLine(int line) const {
    size_t start = 0;
    for (int i = 0; i < line && start != std::string_view::npos; ++i) {
      start = text_.find('\n', start);
      if (start != std::string_view::npos) ++start;
    }
    if (start == std::string_view::npos) return "";
    std::string_view rest = text_.substr(start);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    size_t n = 0;
    while (n < rest.size() && (absl::ascii_isalnum(rest[n]) || rest[n] == '_')) ++n;
    if (n == 0) return "";
    std::string_view after = rest.substr(n);
    while (!after.empty() && after.front() == ' ') after.remove_prefix(1);
    if (after.empty() || (after.front() != ':' && after.front() != '{')) return "";
    return std::string(rest.substr(0, n));
  }

  std::string_view text_;
  std::string error_;
};

void DefaultString(std::string* field, std::string_view value) {
  if (field->empty()) *field = std::string(value);
}

// "0.4.0.2023.1.1": two or more arcs of digits.
bool IsDottedOid(std::string_view oid) {
  const std::vector<std::string> arcs = absl::StrSplit(Av(oid), '.');
  if (arcs.size() < 2) return false;
  for (const std::string& arc : arcs) {
    if (arc.empty() || arc.size() > 20 ||
        !std::all_of(arc.begin(), arc.end(), absl::ascii_isdigit)) {
      return false;
    }
  }
  return true;
}

// Zero means "the default"; a negative value stays, for the range check to refuse.
int32_t Or(int32_t value, int32_t default_value) { return value == 0 ? default_value : value; }

// Collects every problem of a config, each naming its field.
class Validator {
 public:
  explicit Validator(const cfg::ServerConfig& config) : c_(config) {}

  absl::Status Run() {
    Top();
    if (c_.has_signer()) Signer();
    if (c_.has_consent()) Consent();
    if (c_.has_identity()) Identity();
    if (c_.has_lifecycle()) Lifecycle();
    if (c_.has_gateway()) Gateway();
    if (c_.has_tsa()) Tsa();
    if (c_.has_web()) Web();
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }

 private:
  void Error(std::string_view field, std::string_view rule) {
    errors_.push_back(absl::StrCat(Av(field), ": ", Av(rule)));
  }

  void Required(std::string_view field, const std::string& value) {
    if (value.empty()) Error(field, "required");
  }

  void HostPort(std::string_view field, const std::string& value) {
    if (auto hp = ParseHostPort(value); !hp.ok()) {
      Error(field, absl::StrCat("\"", value, "\": ", hp.status().message()));
    }
  }

  void Range(std::string_view field, int64_t value, int64_t lo, int64_t hi) {
    if (value < lo || value > hi) Error(field, absl::StrCat(value, ": must be ", lo, "..", hi));
  }

  // A file the process reads at start-up (certificates, credential tables): must be a readable
  // regular file.
  void ReadableFile(std::string_view field, const std::string& path) {
    if (path.empty()) return;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Error(field, absl::StrCat(path, ": cannot open (", std::strerror(errno), ")"));
      return;
    }
    struct stat st {};
    const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!regular) Error(field, absl::StrCat(path, ": not a regular file"));
  }

  // A secret file: read (and wiped) the way the service will read it.
  void SecretFile(std::string_view field, const std::string& path, size_t min_bytes = 1) {
    if (path.empty()) return;
    auto secret = ReadSecretFile(path);
    if (secret.ok()) {
      if (secret->value().size() < min_bytes) {
        Error(field, absl::StrCat(path, ": shorter than ", min_bytes, " bytes"));
      }
      return;
    }
    switch (secret.status().code()) {
      case absl::StatusCode::kNotFound:
      case absl::StatusCode::kPermissionDenied: {
        // ReadSecretFile's message ends with the reason; never the content.
        const std::string_view msg = Sv(secret.status().message());
        const size_t colon = msg.rfind(": ");
        Error(field, absl::StrCat(path, ": cannot open",
                                  colon == std::string_view::npos
                                      ? ""
                                      : absl::StrCat(" (", Av(msg.substr(colon + 2)), ")")));
        return;
      }
      case absl::StatusCode::kInvalidArgument:
        Error(field, absl::StrCat(path, ": empty"));
        return;
      default:
        Error(field, absl::StrCat(path, ": cannot read"));
    }
  }

  void Url(std::string_view field, const std::string& value,
           std::initializer_list<std::string_view> schemes) {
    if (value.empty()) return;
    for (std::string_view scheme : schemes) {
      const std::string prefix = absl::StrCat(Av(scheme), "://");
      if (absl::StartsWith(value, prefix) && value.size() > prefix.size()) return;
    }
    std::vector<std::string> names;
    for (std::string_view scheme : schemes) names.push_back(absl::StrCat(Av(scheme), "://"));
    Error(field, absl::StrCat("\"", value, "\": must start with ", absl::StrJoin(names, " or ")));
  }

  void Ids(std::string_view field, const google::protobuf::RepeatedPtrField<std::string>& ids) {
    std::set<std::string> seen;
    for (int i = 0; i < ids.size(); ++i) {
      const std::string name = absl::StrCat(Av(field), "[", i, "]");
      if (ids[i].empty()) {
        Error(name, "empty");
      } else if (!seen.insert(ids[i]).second) {
        Error(name, absl::StrCat("\"", ids[i], "\": listed twice"));
      }
    }
  }

  // `service` calls `peer`: it must run here or be reachable at peers.<peer>.
  void NeedsPeer(std::string_view service, std::string_view peer) {
    if (RunsHere(c_, peer) || !PeerTarget(c_, peer).empty()) return;
    Error(absl::StrCat("peers.", Av(peer)),
          absl::StrCat("required (", Av(service), " calls ", Av(peer),
                       ", which does not run in this process)"));
  }

  void Peer(std::string_view service, const std::string& target) {
    if (target.empty()) return;
    const std::string field = absl::StrCat("peers.", Av(service));
    if (RunsHere(c_, service)) {
      Error(field, absl::StrCat(Av(service), " runs in this process (remove the peer or the ",
                                Av(service), " section)"));
      return;
    }
    if (absl::StartsWith(target, "unix:")) return;
    std::string_view rest = target;
    bool list = false;  // ipv4:/ipv6: name one or more addresses (replicas), comma-separated.
    for (std::string_view scheme : {"dns:///", "ipv4:", "ipv6:"}) {
      if (absl::StartsWith(Av(rest), Av(scheme))) {
        rest.remove_prefix(scheme.size());
        list = scheme != "dns:///";
        break;
      }
    }
    std::vector<std::string> addresses = {std::string(rest)};
    if (list) addresses = absl::StrSplit(Av(rest), ',');
    for (const std::string& address : addresses) {
      if (auto hp = ParseHostPort(address); !hp.ok()) {
        Error(field, absl::StrCat("\"", target,
                                  "\": expected host:port, dns:///host:port, "
                                  "ipv4:host:port[,host:port...] or unix:path"));
        return;
      }
    }
  }

  void Top() {
    if (ConfiguredServices(c_).empty()) {
      Error("config",
            "no service section (signer, consent, identity, lifecycle, gateway, tsa, web)");
    }
    HostPort("listen", c_.listen());
    if (c_.has_tls() && c_.insecure_dev()) {
      Error("tls", "refused together with insecure_dev (choose one)");
    } else if (!c_.has_tls() && !c_.insecure_dev()) {
      Error("tls", "required unless insecure_dev");
    }
    if (c_.has_tls()) {
      Required("tls.cert_file", c_.tls().cert_file());
      ReadableFile("tls.cert_file", c_.tls().cert_file());
      Required("tls.key_file", c_.tls().key_file());
      SecretFile("tls.key_file", c_.tls().key_file());
      Required("tls.client_ca_file", c_.tls().client_ca_file());
      ReadableFile("tls.client_ca_file", c_.tls().client_ca_file());
    }
    if (c_.insecure_dev() && c_.allow_size() > 0) {
      Error("allow", "has no effect with insecure_dev (allow-lists need tls)");
    }
    const size_t errors_before_allow = errors_.size();
    std::set<std::string> groups;
    for (int i = 0; i < c_.allow_size(); ++i) {
      const cfg::Allow& allow = c_.allow(i);
      const std::string field = absl::StrCat("allow[", i, "]");
      if (allow.group().empty()) {
        Error(absl::StrCat(field, ".group"), "required");
      } else if (!groups.insert(allow.group()).second) {
        Error(absl::StrCat(field, ".group"), absl::StrCat("\"", allow.group(), "\": listed twice"));
      }
      if (allow.clients().empty()) Error(absl::StrCat(field, ".clients"), "at least one client");
      Ids(absl::StrCat(field, ".clients"), allow.clients());
    }
    if (errors_.size() == errors_before_allow) {
      // Group names are the RPC groups of common/tls.
      if (auto policy = tls::AccessPolicy::New(c_.allow()); !policy.ok()) {
        errors_.emplace_back(policy.status().message());
      }
    }

    const bool backend = c_.has_signer() || c_.has_consent() || c_.has_identity() ||
                         c_.has_lifecycle() || c_.has_tsa();
    if (backend) {
      Required("database.conninfo", c_.database().conninfo());
      Range("database.pool_size", c_.database().pool_size(), 1, 1000);
      // A bare name is left to the dynamic loader's search path.
      if (c_.hsm().module().find('/') != std::string::npos) {
        ReadableFile("hsm.module", c_.hsm().module());
      }
      Range("hsm.sessions", c_.hsm().sessions(), 1, 1024);
    } else if (c_.has_web() && !c_.database().conninfo().empty()) {
      // The web alone: a database shares its browser sessions between replicas (optional).
      Range("database.pool_size", c_.database().pool_size(), 1, 1000);
    }
    Tokens();
    ReadableFile("operators_file", c_.operators_file());
    ReadableFile("services_file", c_.services_file());

    const cfg::Observability& o = c_.observability();
    if (!o.metrics_listen().empty()) HostPort("observability.metrics_listen", o.metrics_listen());
    if (!o.health_listen().empty()) HostPort("observability.health_listen", o.health_listen());
    if (!o.health_listen().empty() && !backend) {
      Error("observability.health_listen", "no gRPC service runs in this process");
    }
    Range("observability.grace_seconds", o.grace_seconds(), 1, 3600);

    const cfg::SessionVerification& v = c_.session_verification();
    Range("session_verification.refresh_interval_ms", v.refresh_interval_ms(), 10, 30000);
    Range("session_verification.max_staleness_ms", v.max_staleness_ms(), 100, 60000);
    if (v.max_staleness_ms() <= v.refresh_interval_ms()) {
      Error("session_verification.max_staleness_ms",
            absl::StrCat(v.max_staleness_ms(), ": must be more than refresh_interval_ms (",
                         v.refresh_interval_ms(), ")"));
    }

    {
      const cfg::ClientAddress& a = c_.client_address();
      auto resolver = ClientAddressResolver::New(
          a.header(),
          std::vector<std::string>(a.trusted_proxies().begin(), a.trusted_proxies().end()));
      if (!resolver.ok()) errors_.emplace_back(resolver.status().message());
    }

    {
      const cfg::HttpLimits& h = c_.http();
      Range("http.max_connections", h.max_connections(), 16, 1000000);
      Range("http.max_connections_per_address", h.max_connections_per_address(), 0, 1000000);
      Range("http.max_header_bytes", h.max_header_bytes(), 1024, 1 << 20);
      Range("http.idle_timeout_seconds", h.idle_timeout_seconds(), 1, 3600);
    }

    Peer("signer", c_.peers().signer());
    Peer("identity", c_.peers().identity());
    Peer("consent", c_.peers().consent());
    Peer("lifecycle", c_.peers().lifecycle());
    Peer("tsa", c_.peers().tsa());
    const std::string& lb = c_.peers().load_balancing();
    if (!lb.empty() && lb != "round_robin" && lb != "pick_first") {
      Error("peers.load_balancing",
            absl::StrCat("\"", lb, "\": expected \"round_robin\" or \"pick_first\""));
    }
  }

  // One token per role this process needs, each its own label and PIN file (key separation).
  void Tokens() {
    const std::vector<std::string_view> needed = NeededTokenRoles(c_);
    std::map<std::string, int, std::less<>> by_role;
    std::map<std::string, int, std::less<>> by_label;
    std::map<std::string, int, std::less<>> by_pin_file;
    for (int i = 0; i < c_.hsm().token_size(); ++i) {
      const cfg::HsmToken& t = c_.hsm().token(i);
      const std::string field = absl::StrCat("hsm.token[", i, "]");
      auto earlier = [&](const std::map<std::string, int, std::less<>>& seen,
                         const std::string& value) -> std::string {
        auto it = seen.find(value);
        if (it == seen.end()) return "";
        return absl::StrCat("hsm.token[", it->second, "] (role \"",
                            c_.hsm().token(it->second).role(), "\")");
      };
      const daemon::TokenRole* known = nullptr;
      for (const daemon::TokenRole& role : daemon::kTokenRoles) {
        if (role.role == t.role()) known = &role;
      }
      if (t.role().empty()) {
        Error(field + ".role", "required");
      } else if (known != nullptr && known->section.empty()) {
        Error(field + ".role", absl::StrCat("\"", t.role(), "\": no service opens this token (",
                                            Av(known->holds), ")"));
      } else if (known == nullptr) {
        std::vector<std::string> names;
        for (const daemon::TokenRole& role : daemon::kTokenRoles) names.emplace_back(role.role);
        Error(field + ".role",
              absl::StrCat("\"", t.role(), "\": unknown role (", absl::StrJoin(names, ", "), ")"));
      } else if (std::string other = earlier(by_role, t.role()); !other.empty()) {
        Error(field + ".role", absl::StrCat("\"", t.role(), "\": also ", other));
      } else if (std::find(needed.begin(), needed.end(), t.role()) == needed.end()) {
        Error(field + ".role",
              absl::StrCat("\"", t.role(), "\": no ", t.role(),
                           " section in this process (a process opens only its own roles' "
                           "tokens)"));
      }
      by_role.emplace(t.role(), i);
      if (t.label().empty() || t.label().size() > 32) {
        Error(field + ".label", absl::StrCat("\"", t.label(), "\": must be 1 to 32 bytes"));
      } else if (std::string other = earlier(by_label, t.label()); !other.empty()) {
        Error(field + ".label", absl::StrCat("\"", t.label(), "\": the same token as ", other,
                                             "; every role needs its own token"));
      }
      by_label.emplace(t.label(), i);
      Required(field + ".pin_file", t.pin_file());
      if (std::string other = earlier(by_pin_file, t.pin_file());
          !t.pin_file().empty() && !other.empty()) {
        Error(field + ".pin_file", absl::StrCat(t.pin_file(), ": the same PIN file as ", other,
                                                "; every role needs its own PIN"));
      }
      by_pin_file.emplace(t.pin_file(), i);
      SecretFile(field + ".pin_file", t.pin_file());
      Range(field + ".sessions", t.sessions(), 1, 1024);
    }
    for (std::string_view role : needed) {
      if (by_role.find(role) == by_role.end()) {
        Error("hsm.token", absl::StrCat("no token for role \"", Av(role), "\" (the ", Av(role),
                                        " section needs its own token and PIN)"));
      }
    }
  }

  void Signer() {
    const cfg::SignerService& s = c_.signer();
    if (s.sad_keys().empty()) {
      Error("signer.sad_keys",
            "required: the public key of every trusted SAD key, pinned (key_id, public_key_file)");
    }
    std::set<std::string> sad_ids;
    for (int i = 0; i < s.sad_keys_size(); ++i) {
      const cfg::SadKey& k = s.sad_keys(i);
      const std::string field = absl::StrCat("signer.sad_keys[", i, "]");
      if (k.key_id().empty()) {
        Error(field + ".key_id", "required");
      } else if (!sad_ids.insert(k.key_id()).second) {
        Error(field + ".key_id", absl::StrCat("\"", k.key_id(), "\": listed twice"));
      }
      Required(field + ".public_key_file", k.public_key_file());
      // On a laptop's first start consent (built first) writes the file the signer then reads.
      const bool written_by_consent_here =
          c_.has_consent() && c_.create_missing_keys() &&
          k.public_key_file() == c_.consent().sad_public_key_file();
      if (!written_by_consent_here) ReadableFile(field + ".public_key_file", k.public_key_file());
    }
    Range("signer.max_batch", s.max_batch(), 1, 1000);
    Range("signer.max_hashes_per_authorization", s.max_hashes_per_authorization(), 1, 1000);
    Range("signer.orphan_key_sweep_seconds", s.orphan_key_sweep_seconds(), 0, 86400);
    Range("signer.key_pool_size", s.key_pool_size(), 0, 64);
    Range("signer.key_pool_max_age_seconds", s.key_pool_max_age_seconds(), 60, 86400);
    std::set<std::string> pool_types;
    for (int i = 0; i < s.key_pool_key_types_size(); ++i) {
      const std::string field = absl::StrCat("signer.key_pool_key_types[", i, "]");
      if (auto type = hsm::ParseKeyType(s.key_pool_key_types(i)); !type.ok()) {
        Error(field, Sv(type.status().message()));
      } else if (!pool_types.insert(s.key_pool_key_types(i)).second) {
        Error(field, absl::StrCat("\"", s.key_pool_key_types(i), "\": listed twice"));
      }
    }
  }

  void Consent() {
    const cfg::ConsentService& s = c_.consent();
    Required("consent.sad_key_id", s.sad_key_id());
    Required("consent.pin_pepper_file", s.pin_pepper_file());
    SecretFile("consent.pin_pepper_file", s.pin_pepper_file(), 32);
    Range("consent.pin_argon2_t", s.pin_argon2_t(), 1, 16);
    Range("consent.pin_argon2_m_kib", s.pin_argon2_m_kib(), 8, 4 << 20);
    Range("consent.enrollments_per_address_per_minute", s.enrollments_per_address_per_minute(), 0,
          1'000'000);
    Range("consent.approvals_per_device_per_minute", s.approvals_per_device_per_minute(), 0,
          1'000'000);
    Range("consent.authorizations_per_account_per_minute",
          s.authorizations_per_account_per_minute(), 0, 1'000'000);
    SecretFile("consent.client_secret_file", s.client_secret_file());
    // Written with create_missing_keys when missing; otherwise read and checked at start-up.
    if (!c_.create_missing_keys()) {
      ReadableFile("consent.sad_public_key_file", s.sad_public_key_file());
    }
    const bool lifecycle_reachable = RunsHere(c_, "lifecycle") || !c_.peers().lifecycle().empty();
    if (!lifecycle_reachable) {
      // consent's own device CA; with create_missing_keys the certificate is written there.
      Required("consent.device_ca_cert_file", s.device_ca_cert_file());
      if (!c_.create_missing_keys()) {
        ReadableFile("consent.device_ca_cert_file", s.device_ca_cert_file());
      }
    }
    Url("consent.push_webhook_url", s.push_webhook_url(), {"https", "http"});
    if (s.push_webhook_url().empty() && !s.push_webhook_secret_file().empty()) {
      Error("consent.push_webhook_secret_file", "set without consent.push_webhook_url");
    }
    SecretFile("consent.push_webhook_secret_file", s.push_webhook_secret_file());
    NeedsPeer("consent", "identity");
    NeedsPeer("consent", "signer");
  }

  void Identity() {
    const cfg::IdentityService& s = c_.identity();
    Ids("identity.session_key_ids", s.session_key_ids());
    SecretFile("identity.client_secret_file", s.client_secret_file());
    NeedsPeer("identity", "consent");
    Range("identity.logins_per_account_per_minute", s.logins_per_account_per_minute(), 0,
          1'000'000);
    Range("identity.logins_per_address_per_minute", s.logins_per_address_per_minute(), 0,
          1'000'000);
    Range("identity.registrations_per_address_per_hour", s.registrations_per_address_per_hour(), 0,
          1'000'000);
    Range("identity.corrections_per_operator_per_hour", s.corrections_per_operator_per_hour(), 0,
          1'000'000);
    if (!s.smtp_url().empty()) Url("identity.smtp_url", s.smtp_url(), {"smtp", "smtps"});
    if (!s.smtp_url().empty() && !s.mail_drop_dir().empty()) {
      Error("identity.mail_drop_dir", "set smtp_url or mail_drop_dir, not both");
    }
    if (!s.registration_url().empty()) {
      Url("identity.registration_url", s.registration_url(), {"http", "https"});
    }
  }

  void Lifecycle() {
    const cfg::LifecycleService& s = c_.lifecycle();
    HostPort("lifecycle.http_listen", s.http_listen());
    Range("lifecycle.ocsp_signatures_per_second", s.ocsp_signatures_per_second(), 0, 1'000'000);
    Url("lifecycle.public_base_url", s.public_base_url(), {"http", "https"});
    if (auto type = hsm::ParseKeyType(s.ca_key_type()); !type.ok()) {
      Error("lifecycle.ca_key_type", absl::StrCat("\"", s.ca_key_type(), "\": unknown key type"));
    }
    Url("lifecycle.pds_url", s.pds_url(), {"https", "http"});
    SecretFile("lifecycle.client_secret_file", s.client_secret_file());
    Url("lifecycle.smtp_url", s.smtp_url(), {"smtp", "smtps"});
    NeedsPeer("lifecycle", "signer");
    NeedsPeer("lifecycle", "identity");
    NeedsPeer("lifecycle", "consent");
  }

  // <section>.http_listen with its http_cert_file and http_key_file: HTTPS, required unless
  // insecure_dev.
  void HttpsListener(std::string_view section, const std::string& listen, const std::string& cert,
                     const std::string& key) {
    const std::string cert_field = absl::StrCat(Av(section), ".http_cert_file");
    const std::string key_field = absl::StrCat(Av(section), ".http_key_file");
    HostPort(absl::StrCat(Av(section), ".http_listen"), listen);
    if (!c_.insecure_dev()) {
      Required(cert_field, cert);
      Required(key_field, key);
    }
    ReadableFile(cert_field, cert);
    SecretFile(key_field, key);
    if (cert.empty() != key.empty()) {
      Error(cert.empty() ? cert_field : key_field, "required with the other one");
    }
  }

  void Gateway() {
    const cfg::GatewayService& s = c_.gateway();
    HttpsListener("gateway", s.http_listen(), s.http_cert_file(), s.http_key_file());
    Url("gateway.public_url", s.public_url(), {"https", "http"});
    Required("gateway.client_secret_file", s.client_secret_file());
    SecretFile("gateway.client_secret_file", s.client_secret_file());
    Required("gateway.relying_parties_file", s.relying_parties_file());
    ReadableFile("gateway.relying_parties_file", s.relying_parties_file());
    SecretFile("gateway.token_key_file", s.token_key_file(), 32);
    Range("gateway.token_lifetime_seconds", s.token_lifetime_seconds(), 1, 86400);
    Range("gateway.authorize_wait_seconds", s.authorize_wait_seconds(), 1, 30);
    Range("gateway.authorize_check_wait_seconds", s.authorize_check_wait_seconds(), 1, 30);
    Range("gateway.rpc_timeout_seconds", s.rpc_timeout_seconds(), 1, 300);
    Range("gateway.max_body_bytes", s.max_body_bytes(), 1024, 64 << 20);
    Range("gateway.http_threads", s.http_threads(), 1, 1024);
    Url("gateway.tsa_url", s.tsa_url(), {"http", "https"});
    Range("gateway.signdoc_wait_seconds", s.signdoc_wait_seconds(), 1, 600);
    Range("gateway.signdoc_max_document_bytes", s.signdoc_max_document_bytes(), 1024, 64 << 20);
    Range("gateway.signdoc_max_documents", s.signdoc_max_documents(), 1, 100);
    if (s.region().size() != 2 || !absl::ascii_isupper(s.region()[0]) ||
        !absl::ascii_isupper(s.region()[1])) {
      Error("gateway.region", absl::StrCat("\"", s.region(), "\": ISO 3166-1 alpha-2, e.g. RS"));
    }
    NeedsPeer("gateway", "signer");
    NeedsPeer("gateway", "consent");
  }

  void Tsa() {
    const cfg::TsaService& s = c_.tsa();
    HostPort("tsa.http_listen", s.http_listen());
    Required("tsa.key_id", s.key_id());
    if (!IsDottedOid(s.policy_oid())) {
      Error("tsa.policy_oid", absl::StrCat("\"", s.policy_oid(), "\": a dotted OID"));
    }
    Range("tsa.accuracy_ms", s.accuracy_ms(), 1, 60000);
    if (s.name().empty() || s.name().size() > 64) Error("tsa.name", "1..64 characters");
    Required("tsa.client_secret_file", s.client_secret_file());
    SecretFile("tsa.client_secret_file", s.client_secret_file());
    Range("tsa.http_threads", s.http_threads(), 1, 1024);
    NeedsPeer("tsa", "lifecycle");
  }

  void Web() {
    const cfg::WebService& s = c_.web();
    HttpsListener("web", s.http_listen(), s.http_cert_file(), s.http_key_file());
    Range("web.session_idle_minutes", s.session_idle_minutes(), 1, 720);
    Range("web.rpc_timeout_seconds", s.rpc_timeout_seconds(), 1, 300);
    Range("web.max_upload_bytes", s.max_upload_bytes(), 1024, 256 << 20);
    Range("web.http_threads", s.http_threads(), 1, 1024);
    Range("web.max_sessions", s.max_sessions(), 1, 10'000'000);
    Range("web.audit_page_size", s.audit_page_size(), 1, 200);
    Url("web.tsa_url", s.tsa_url(), {"http", "https"});
    {
      const cfg::ClientAddress& a = s.client_address();
      auto resolver = ClientAddressResolver::New(
          a.header(),
          std::vector<std::string>(a.trusted_proxies().begin(), a.trusted_proxies().end()),
          "web.client_address");
      if (!resolver.ok()) errors_.emplace_back(resolver.status().message());
    }
    NeedsPeer("web", "identity");
    NeedsPeer("web", "consent");
    NeedsPeer("web", "lifecycle");
    NeedsPeer("web", "signer");
  }

  const cfg::ServerConfig& c_;
  std::vector<std::string> errors_;
};

}  // namespace

std::vector<std::string_view> NeededTokenRoles(const cfg::ServerConfig& config) {
  const std::vector<std::string> sections = ConfiguredServices(config);
  std::vector<std::string_view> roles;
  for (const daemon::TokenRole& role : daemon::kTokenRoles) {
    if (std::find(sections.begin(), sections.end(), role.section) != sections.end()) {
      roles.push_back(role.role);
    }
  }
  return roles;
}

std::vector<std::string> ConfiguredServices(const cfg::ServerConfig& config) {
  std::vector<std::string> names;
  if (config.has_signer()) names.push_back("signer");
  if (config.has_consent()) names.push_back("consent");
  if (config.has_identity()) names.push_back("identity");
  if (config.has_lifecycle()) names.push_back("lifecycle");
  if (config.has_gateway()) names.push_back("gateway");
  if (config.has_tsa()) names.push_back("tsa");
  if (config.has_web()) names.push_back("web");
  return names;
}

bool RunsHere(const cfg::ServerConfig& config, std::string_view service) {
  if (service == "signer") return config.has_signer();
  if (service == "consent") return config.has_consent();
  if (service == "identity") return config.has_identity();
  if (service == "lifecycle") return config.has_lifecycle();
  if (service == "tsa") return config.has_tsa();
  return false;
}

std::string PeerTarget(const cfg::ServerConfig& config, std::string_view service) {
  if (service == "signer") return config.peers().signer();
  if (service == "consent") return config.peers().consent();
  if (service == "identity") return config.peers().identity();
  if (service == "lifecycle") return config.peers().lifecycle();
  if (service == "tsa") return config.peers().tsa();
  return "";
}

absl::StatusOr<cfg::ServerConfig> ParseConfigText(std::string_view text,
                                                  std::string_view source_name) {
  cfg::ServerConfig config;
  FirstErrorCollector errors(text);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &config)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(source_name), ":", errors.error().empty() ? "0:0: cannot parse" : errors.error()));
  }
  return config;
}

void ApplyConfigDefaults(cfg::ServerConfig& c) {
  DefaultString(c.mutable_listen(), kDefaultListen);
  c.mutable_database()->set_pool_size(Or(c.database().pool_size(), 16));
  DefaultString(c.mutable_hsm()->mutable_module(), kDefaultModule);
  c.mutable_hsm()->set_sessions(Or(c.hsm().sessions(), 8));
  for (cfg::HsmToken& t : *c.mutable_hsm()->mutable_token()) {
    t.set_sessions(Or(t.sessions(), c.hsm().sessions()));
  }
  if (!c.hsm().has_serialize_object_creation()) {
    c.mutable_hsm()->set_serialize_object_creation(hsm::IsSoftHsm2(c.hsm().module()));
  }
  DefaultString(c.mutable_peers()->mutable_load_balancing(), "round_robin");
  c.mutable_observability()->set_grace_seconds(Or(c.observability().grace_seconds(), 10));
  cfg::HttpLimits& h = *c.mutable_http();
  h.set_max_connections(Or(h.max_connections(), 4096));
  if (!h.has_max_connections_per_address()) h.set_max_connections_per_address(256);
  h.set_max_header_bytes(Or(h.max_header_bytes(), 16384));
  h.set_idle_timeout_seconds(Or(h.idle_timeout_seconds(), 5));
  cfg::SessionVerification& v = *c.mutable_session_verification();
  v.set_refresh_interval_ms(Or(v.refresh_interval_ms(), 500));
  v.set_max_staleness_ms(Or(v.max_staleness_ms(), 5000));
  if (c.has_signer()) {
    cfg::SignerService& s = *c.mutable_signer();
    s.set_max_batch(Or(s.max_batch(), 100));
    s.set_max_hashes_per_authorization(Or(s.max_hashes_per_authorization(), 100));
    if (!s.has_orphan_key_sweep_seconds()) s.set_orphan_key_sweep_seconds(300);
    if (!s.has_key_pool_size()) s.set_key_pool_size(0);
    if (!s.has_key_pool_max_age_seconds()) s.set_key_pool_max_age_seconds(3600);
    if (s.key_pool_key_types().empty()) s.add_key_pool_key_types("EC_P256");
  }
  if (c.has_consent()) {
    cfg::ConsentService& s = *c.mutable_consent();
    DefaultString(s.mutable_sad_key_id(), kDefaultSadKey);
    DefaultString(s.mutable_pin_pepper_id(), "k1");
    s.set_pin_argon2_t(Or(s.pin_argon2_t(), 1));
    s.set_pin_argon2_m_kib(Or(s.pin_argon2_m_kib(), 1024));
    DefaultString(s.mutable_client_id(), "consent");
    DefaultString(s.mutable_device_ca_key_id(), kDefaultDeviceCaKey);
    if (!s.has_enrollments_per_address_per_minute()) s.set_enrollments_per_address_per_minute(30);
    if (!s.has_approvals_per_device_per_minute()) s.set_approvals_per_device_per_minute(20);
    if (!s.has_authorizations_per_account_per_minute()) {
      s.set_authorizations_per_account_per_minute(10);
    }
  }
  if (c.has_identity()) {
    cfg::IdentityService& s = *c.mutable_identity();
    if (s.session_key_ids().empty()) s.add_session_key_ids(kDefaultSessionKey);
    DefaultString(s.mutable_consent_client_id(), "consent");
    if (!s.has_logins_per_account_per_minute()) s.set_logins_per_account_per_minute(5);
    if (!s.has_logins_per_address_per_minute()) s.set_logins_per_address_per_minute(60);
    if (!s.has_registrations_per_address_per_hour()) s.set_registrations_per_address_per_hour(20);
    if (!s.has_corrections_per_operator_per_hour()) s.set_corrections_per_operator_per_hour(30);
  }
  if (c.has_lifecycle()) {
    cfg::LifecycleService& s = *c.mutable_lifecycle();
    DefaultString(s.mutable_http_listen(), kDefaultLifecycleHttp);
    DefaultString(s.mutable_public_base_url(), absl::StrCat("http://", s.http_listen()));
    DefaultString(s.mutable_ca_key_type(), "EC_P256");
    DefaultString(s.mutable_pds_url(), "https://qsign.example/pds/en");
    DefaultString(s.mutable_consent_client_id(), "consent");
    DefaultString(s.mutable_mail_from(), "qsign@localhost");
    DefaultString(s.mutable_tsa_client_id(), "tsa");
    if (!s.has_ocsp_signatures_per_second()) s.set_ocsp_signatures_per_second(100);
  }
  if (c.has_gateway()) {
    cfg::GatewayService& s = *c.mutable_gateway();
    DefaultString(s.mutable_http_listen(), kDefaultGatewayHttp);
    DefaultString(s.mutable_client_id(), "gateway");
    s.set_token_lifetime_seconds(Or(s.token_lifetime_seconds(), 600));
    s.set_authorize_wait_seconds(Or(s.authorize_wait_seconds(), 25));
    s.set_authorize_check_wait_seconds(Or(s.authorize_check_wait_seconds(), 10));
    s.set_rpc_timeout_seconds(Or(s.rpc_timeout_seconds(), 10));
    s.set_max_body_bytes(Or(s.max_body_bytes(), 12 << 20));
    s.set_signdoc_wait_seconds(Or(s.signdoc_wait_seconds(), 120));
    s.set_signdoc_max_document_bytes(Or(s.signdoc_max_document_bytes(), 8 << 20));
    s.set_signdoc_max_documents(Or(s.signdoc_max_documents(), 20));
    s.set_http_threads(Or(s.http_threads(), 64));
    DefaultString(s.mutable_name(), "qsign");
    DefaultString(s.mutable_region(), "RS");
  }
  if (c.has_tsa()) {
    cfg::TsaService& s = *c.mutable_tsa();
    DefaultString(s.mutable_http_listen(), kDefaultTsaHttp);
    DefaultString(s.mutable_key_id(), "qsign-tsa-1");
    DefaultString(s.mutable_policy_oid(), oid::kBaselineTsPolicy);
    s.set_accuracy_ms(Or(s.accuracy_ms(), 1000));
    DefaultString(s.mutable_name(), "qsign TSA");
    s.set_http_threads(Or(s.http_threads(), 16));
  }
  if (c.has_web()) {
    cfg::WebService& s = *c.mutable_web();
    DefaultString(s.mutable_http_listen(), kDefaultWebHttp);
    s.set_session_idle_minutes(Or(s.session_idle_minutes(), 30));
    s.set_rpc_timeout_seconds(Or(s.rpc_timeout_seconds(), 10));
    s.set_max_upload_bytes(Or(s.max_upload_bytes(), 20 << 20));
    s.set_http_threads(Or(s.http_threads(), 64));
    s.set_max_sessions(Or(s.max_sessions(), 10000));
    s.set_audit_page_size(Or(s.audit_page_size(), 50));
  }
}

absl::Status ValidateConfig(const cfg::ServerConfig& config) { return Validator(config).Run(); }

absl::StatusOr<cfg::ServerConfig> LoadConfig(std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("--config: required (a .textproto file)");
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  auto config = ParseConfigText(*text, path);
  if (!config.ok()) return config.status();
  ApplyConfigDefaults(*config);
  if (auto s = ValidateConfig(*config); !s.ok()) return s;
  return config;
}

}  // namespace qsign
