#include "services/gateway/gateway.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/x509.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/refusal.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "services/gateway/text.h"

namespace qsign::gateway {

using Json = nlohmann::json;

struct Gateway::Result {
  int http_status = 200;
  Json body;
  std::vector<std::pair<std::string, std::string>> headers;
};

namespace {

using ::qsign::FromProto;

namespace pb = ::qsign::v1;

constexpr char kErrorPayload[] = "type.qsign.dev/gateway/csc-error";
constexpr char kHttpPayload[] = "type.qsign.dev/gateway/http-status";
constexpr char kSpecs[] = "2.0.0.2";
constexpr size_t kMaxIdBytes = 128;
constexpr size_t kMaxSadBytes = size_t{16} * 1024;
constexpr size_t kMaxClientDataBytes = 4096;
constexpr size_t kMaxHashBase64Bytes = 128;  // SHA-512 is 88 characters of base64.
constexpr int kMaxDescriptionChars = 200;    // What the consent app shows as the document label.

// The methods of CSC API v2 this gateway implements, as info lists them.
const std::vector<std::string>& ImplementedMethods() {
  static const auto* methods =
      new std::vector<std::string>{"credentials/list", "credentials/info", "credentials/authorize",
                                   "credentials/authorizeCheck", "signatures/signHash"};
  return *methods;
}

// CSC API v2 methods (and the OAuth 2.0 endpoints it defines) that are not implemented: 501.
bool IsKnownUnimplemented(std::string_view method) {
  static const auto* methods =
      new std::set<std::string, std::less<>>{"auth/login",
                                             "auth/revoke",
                                             "credentials/extendTransaction",
                                             "credentials/getChallenge",
                                             "credentials/sendOTP",
                                             "credentials/create",
                                             "credentials/delete",
                                             "signatures/signDoc",
                                             "signatures/signPolling",
                                             "signatures/timestamp",
                                             "oauth2/authorize",
                                             "oauth2/pushed_authorize",
                                             "oauth2/revoke"};
  return methods->contains(method);
}

// ---- Algorithms (CSC hashAlgorithmOID, signAlgo, key/curve). ----

struct HashOid {
  const char* oid;
  size_t length;
};
constexpr HashOid kHashOids[] = {
    {"2.16.840.1.101.3.4.2.1", 32}, {"2.16.840.1.101.3.4.2.2", 48}, {"2.16.840.1.101.3.4.2.3", 64}};

struct SignOid {
  const char* oid;
  const char* implied_hash;  // nullptr: the request names the hash (hashAlgorithmOID).
};
constexpr SignOid kSignOids[] = {
    {"1.2.840.10045.4.3.2", "2.16.840.1.101.3.4.2.1"},    // ecdsa-with-SHA256
    {"1.2.840.10045.4.3.3", "2.16.840.1.101.3.4.2.2"},    // ecdsa-with-SHA384
    {"1.2.840.10045.4.3.4", "2.16.840.1.101.3.4.2.3"},    // ecdsa-with-SHA512
    {"1.2.840.10045.2.1", nullptr},                       // ECDSA, hash named separately
    {"1.2.840.113549.1.1.11", "2.16.840.1.101.3.4.2.1"},  // sha256WithRSAEncryption
    {"1.2.840.113549.1.1.12", "2.16.840.1.101.3.4.2.2"},  // sha384WithRSAEncryption
    {"1.2.840.113549.1.1.13", "2.16.840.1.101.3.4.2.3"},  // sha512WithRSAEncryption
    {"1.2.840.113549.1.1.1", nullptr},                    // rsaEncryption (PKCS#1 v1.5)
    {"1.2.840.113549.1.1.10", nullptr},                   // RSASSA-PSS, salt = hash length
};

const HashOid* FindHashOid(std::string_view oid) {
  for (const auto& h : kHashOids) {
    if (oid == h.oid) return &h;
  }
  return nullptr;
}

const SignOid* FindSignOid(std::string_view oid) {
  for (const auto& s : kSignOids) {
    if (oid == s.oid) return &s;
  }
  return nullptr;
}

// ---- Errors. ----

absl::Status InvalidParameter(std::string_view name, std::string_view why = "") {
  return absl::InvalidArgumentError(
      why.empty() ? absl::StrCat("Invalid parameter ", Av(name))
                  : absl::StrCat("Invalid parameter ", Av(name), ": ", Av(why)));
}

absl::Status MissingParameter(std::string_view type, std::string_view name) {
  return absl::InvalidArgumentError(
      absl::StrCat("Missing (or invalid type) ", Av(type), " parameter ", Av(name)));
}

// The CSC spelling of a request field a service's refusal names (Refusal.field); nullopt for
// fields the CSC request does not have under that name.
std::optional<std::string_view> CscFieldName(std::string_view proto_field) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"credential_id", "credentialID"},
      {"hash_algorithm_oid", "hashAlgorithmOID"},
      {"sign_algorithm_oid", "signAlgo"},
      {"num_signatures", "numSignatures"},
      {"account_id", "userID"},
      {"hashes", "hashes"},
      {"sad", "SAD"},
  };
  for (const auto& [proto, csc] : kNames) {
    if (proto_field == proto) return csc;
  }
  return std::nullopt;
}

// A service's refusal of a request field, in CSC words: "Invalid parameter <CSC name>: <why>";
// other messages as they are.
std::string CscMessage(const absl::Status& status) {
  auto refusal = GetRefusal(status);
  if (refusal.has_value()) {
    if (auto csc = CscFieldName(refusal->field())) {
      return absl::StrCat("Invalid parameter ", Av(*csc), ": ", Av(RefusalDetail(status)));
    }
  }
  return std::string(status.message());
}

// A service's answer, as the gateway's own status: a refusal of the gateway's credential is the
// gateway's fault (500, logged), not the relying party's; outages are 503; request errors keep
// their code with CSC field names.
absl::Status FromService(std::string_view service, const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return status;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return absl::InternalError(absl::StrCat(
          Av(service), " refused the gateway's service credential: ", status.message()));
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      // Addresses and transport details stay in the log.
      Log(LogLevel::kWarning, "gateway", "service unavailable",
          {{"service", service}, {"status", status.ToString()}});
      return absl::UnavailableError(absl::StrCat(Av(service), " is unavailable; retry later"));
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
      return absl::Status(status.code(), CscMessage(status));
    default:
      return absl::InternalError(absl::StrCat(Av(service), ": ", status.ToString()));
  }
}

// ---- Request bodies. ----

absl::StatusOr<Json> ParseJsonObject(std::string_view body) {
  if (std::all_of(body.begin(), body.end(), [](char c) { return absl::ascii_isspace(c); })) {
    return Json::object();  // CSC allows an empty body for methods without required input.
  }
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("Malformed JSON in the request body");
  if (!json.is_object()) {
    return absl::InvalidArgumentError("The request body must be a JSON object");
  }
  return json;
}

// Typed access to the parameters of a CSC request; null counts as absent (CSC §7.1).
class Params {
 public:
  explicit Params(const Json& object) : object_(object) {}

  const Json* Find(std::string_view name) const {
    auto it = object_.find(std::string(name));
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<std::optional<std::string>> OptString(std::string_view name,
                                                       size_t max_bytes) const {
    const Json* v = Find(name);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return MissingParameter("string", name);
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > max_bytes) {
      return InvalidParameter(name, absl::StrCat("longer than ", max_bytes, " bytes"));
    }
    return std::optional<std::string>(s);
  }

  absl::StatusOr<std::string> String(std::string_view name, size_t max_bytes) const {
    auto s = OptString(name, max_bytes);
    if (!s.ok()) return s.status();
    if (!s->has_value() || (*s)->empty()) return MissingParameter("string", name);
    return **s;
  }

  absl::StatusOr<bool> Bool(std::string_view name, bool default_value) const {
    const Json* v = Find(name);
    if (v == nullptr) return default_value;
    if (!v->is_boolean()) return MissingParameter("boolean", name);
    return v->get<bool>();
  }

  absl::StatusOr<std::optional<int64_t>> OptInteger(std::string_view name) const {
    const Json* v = Find(name);
    if (v == nullptr) return std::optional<int64_t>();
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return InvalidParameter(name, "out of range");
      return std::optional<int64_t>(static_cast<int64_t>(u));
    }
    if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
    return MissingParameter("integer", name);
  }

  // A required, non-empty array of strings.
  absl::StatusOr<std::vector<std::string>> StringArray(std::string_view name, size_t max_items,
                                                       size_t max_item_bytes) const {
    const Json* v = Find(name);
    if (v == nullptr || !v->is_array()) return MissingParameter("array", name);
    if (v->empty()) return InvalidParameter(name, "empty array");
    if (v->size() > max_items) {
      return InvalidParameter(name, absl::StrCat("more than ", max_items, " elements"));
    }
    std::vector<std::string> out;
    out.reserve(v->size());
    for (size_t i = 0; i < v->size(); ++i) {
      const Json& item = (*v)[i];
      if (!item.is_string() || item.get_ref<const std::string&>().size() > max_item_bytes) {
        return InvalidParameter(name, absl::StrCat("element ", i, " is not a string of at most ",
                                                   max_item_bytes, " bytes"));
      }
      out.push_back(item.get<std::string>());
    }
    return out;
  }

 private:
  const Json& object_;
};

absl::Status CheckCredentialId(std::string_view id) {
  if (!IsValidClientId(id)) {  // Same syntax as the signer's: 1..64 of [A-Za-z0-9._-].
    return InvalidParameter("credentialID", "1..64 characters of [A-Za-z0-9._-]");
  }
  return absl::OkStatus();
}

// Base64 hashes, each of the hash algorithm's length, no repeats.
absl::StatusOr<std::vector<std::string>> DecodeHashes(const std::vector<std::string>& encoded,
                                                      const HashOid& hash) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < encoded.size(); ++i) {
    auto raw = DecodeBase64(encoded[i]);
    if (!raw) return InvalidParameter("hashes", absl::StrCat("element ", i, " is not Base64"));
    if (raw->size() != hash.length) {
      return InvalidParameter(
          "hashes", absl::StrCat("Invalid digest value length: element ", i, " has ", raw->size(),
                                 " bytes, ", hash.oid, " needs ", hash.length));
    }
    if (!seen.insert(*raw).second) {
      return InvalidParameter("hashes", absl::StrCat("element ", i, " repeats an earlier hash"));
    }
    out.push_back(*std::move(raw));
  }
  return out;
}

absl::Status CheckOptionalText(const Params& p, std::string_view name, size_t max_bytes) {
  auto v = p.OptString(name, max_bytes);
  return v.status();
}

// ---- Credentials as CSC describes them. ----

enum class Certificates { kNone, kSingle, kChain };

struct InfoOptions {
  Certificates certificates = Certificates::kSingle;
  bool cert_info = false;
  bool auth_info = false;
};

absl::StatusOr<InfoOptions> ParseInfoOptions(const Params& p) {
  InfoOptions out;
  auto certs = p.OptString("certificates", 16);
  if (!certs.ok()) return certs.status();
  if (certs->has_value()) {
    if (**certs == "none") {
      out.certificates = Certificates::kNone;
    } else if (**certs == "single") {
      out.certificates = Certificates::kSingle;
    } else if (**certs == "chain") {
      out.certificates = Certificates::kChain;
    } else {
      return InvalidParameter("certificates", "one of \"none\", \"single\", \"chain\"");
    }
  }
  auto cert_info = p.Bool("certInfo", false);
  if (!cert_info.ok()) return cert_info.status();
  out.cert_info = *cert_info;
  auto auth_info = p.Bool("authInfo", false);
  if (!auth_info.ok()) return auth_info.status();
  out.auth_info = *auth_info;
  return out;
}

struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BnDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
};

// RFC 4514 string, UTF-8 kept as is.
std::string DistinguishedName(const X509_NAME* name) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return "";
  }
  char* data = nullptr;  // Owned by bio.
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// GeneralizedTime "YYYYMMDDHHmmssZ".
std::string GeneralizedTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "";
  char buf[16];
  strftime(buf, sizeof(buf), "%Y%m%d%H%M%SZ", &tm);
  return buf;
}

absl::Status AddCertInfo(const std::string& der, Json* cert) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<X509, X509Deleter> x509(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (x509 == nullptr) return absl::InternalError("credential certificate does not parse");
  std::unique_ptr<BIGNUM, BnDeleter> serial(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509.get()), nullptr));
  if (serial == nullptr) return absl::InternalError("certificate serial number");
  char* hex = BN_bn2hex(serial.get());
  if (hex == nullptr) return absl::InternalError("BN_bn2hex");
  (*cert)["serialNumber"] = std::string(hex);
  OPENSSL_free(hex);
  (*cert)["issuerDN"] = DistinguishedName(X509_get_issuer_name(x509.get()));
  (*cert)["subjectDN"] = DistinguishedName(X509_get_subject_name(x509.get()));
  (*cert)["validFrom"] = GeneralizedTime(X509_get0_notBefore(x509.get()));
  (*cert)["validTo"] = GeneralizedTime(X509_get0_notAfter(x509.get()));
  return absl::OkStatus();
}

// The CSC credential description (credentials/info output; credentials/list adds credentialID).
absl::StatusOr<Json> CredentialJson(const pb::CredentialInfo& c, const InfoOptions& options,
                                    const GatewayConfig& config, absl::Time now) {
  Json out = Json::object();
  const bool active = c.status() == pb::CREDENTIAL_STATUS_ACTIVE;
  out["signatureQualifier"] = "eu_eidas_qes";
  Json key = Json::object();
  key["status"] = active ? "enabled" : "disabled";
  key["algo"] = Json::array();
  for (const auto& oid : c.sign_algorithm_oids()) key["algo"].push_back(oid);
  key["len"] = c.key_bits();
  if (c.key_algorithm() == pb::KEY_ALGORITHM_EC_P256) key["curve"] = "1.2.840.10045.3.1.7";
  if (c.key_algorithm() == pb::KEY_ALGORITHM_EC_P384) key["curve"] = "1.3.132.0.34";
  out["key"] = std::move(key);

  if (!c.certificate_chain_der().empty()) {
    Json cert = Json::object();
    if (c.status() == pb::CREDENTIAL_STATUS_DISABLED) {
      cert["status"] = "revoked";  // The signer disables a credential only when it is revoked.
    } else if (c.has_valid_to() && now > FromProto(c.valid_to())) {
      cert["status"] = "expired";
    } else {
      cert["status"] = "valid";
    }
    if (options.certificates != Certificates::kNone) {
      cert["certificates"] = Json::array();
      for (const auto& der : c.certificate_chain_der()) {
        cert["certificates"].push_back(EncodeBase64(der));
        if (options.certificates == Certificates::kSingle) break;
      }
    }
    if (options.cert_info) {
      if (auto s = AddCertInfo(c.certificate_chain_der(0), &cert); !s.ok()) return s;
    }
    out["cert"] = std::move(cert);
  }
  if (options.auth_info) {
    // The PIN never travels through the relying party: the owner enters it in the consent app,
    // which is what PasswordOOB (out of band) describes.
    out["auth"] = {
        {"mode", "explicit"},
        {"expression", "PIN"},
        {"objects", Json::array({{{"type", "PasswordOOB"},
                                  {"id", "PIN"},
                                  {"label", "PIN"},
                                  {"description",
                                   "Approve the request in the qsign consent app with your "
                                   "PIN"}}})}};
  } else {
    out["auth"] = {{"mode", "explicit"}};
  }
  out["SCAL"] = "2";
  out["multisign"] = std::max<uint32_t>(1, c.max_hashes_per_authorization());
  out["lang"] = config.lang;
  return out;
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

int64_t SecondsUntil(absl::Time until, absl::Time now) {
  return std::max<int64_t>(1, absl::ToInt64Seconds(until - now));
}

}  // namespace

// ---- The one mapping from status to CSC error. ----

absl::Status CscStatus(absl::StatusCode code, std::string_view error, std::string_view description,
                       int http_status) {
  absl::Status status(code, Av(description));
  status.SetPayload(kErrorPayload, absl::Cord(Av(error)));
  if (http_status != 0) status.SetPayload(kHttpPayload, absl::Cord(absl::StrCat(http_status)));
  return status;
}

CscError ToCscError(const absl::Status& status) {
  CscError out;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      out = {400, "invalid_request", std::string(status.message())};
      break;
    case absl::StatusCode::kUnauthenticated:
      out = {401, "invalid_token", std::string(status.message())};
      break;
    case absl::StatusCode::kPermissionDenied:
      out = {403, "access_denied", std::string(status.message())};
      break;
    case absl::StatusCode::kResourceExhausted:
      out = {429, "temporarily_unavailable", std::string(status.message())};
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      out = {503, "temporarily_unavailable", std::string(status.message())};
      break;
    case absl::StatusCode::kUnimplemented:
      out = {501, "invalid_request", std::string(status.message())};
      break;
    default:
      out = {500, "server_error", "internal error; the gateway log has the details"};
      break;
  }
  if (auto error = status.GetPayload(kErrorPayload)) out.error = std::string(*error);
  if (auto http = status.GetPayload(kHttpPayload)) {
    int code = 0;
    if (absl::SimpleAtoi(std::string(*http), &code)) out.http_status = code;
  }
  return out;
}

// ---- Gateway. ----

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::New(Backend* backend,
                                                      RelyingPartyTable relying_parties,
                                                      std::unique_ptr<TokenSealer> tokens,
                                                      const Clock* clock, GatewayConfig config) {
  if (backend == nullptr || tokens == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("gateway: backend, tokens and clock are required");
  }
  if (config.token_lifetime <= absl::ZeroDuration() ||
      config.authorize_wait < absl::ZeroDuration() ||
      config.authorize_check_wait < absl::ZeroDuration() || config.max_hashes < 1) {
    return absl::InvalidArgumentError("gateway: lifetimes and waits must not be negative");
  }
  return std::unique_ptr<Gateway>(new Gateway(backend, std::move(relying_parties),
                                              std::move(tokens), clock, std::move(config)));
}

CscReply Gateway::Handle(std::string_view method, const CscRequest& request) const {
  auto result = Dispatch(method, request);
  if (!result.ok()) return ErrorReply(method, result.status());
  CscReply reply{.http_status = result->http_status,
                 .body = Dump(result->body),
                 .headers = std::move(result->headers)};
  // Tokens and SADs must not be cached by anyone (RFC 6749 §5.1); no CSC answer should be.
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

CscReply Gateway::ErrorReply(std::string_view method, const absl::Status& status) const {
  const CscError error = ToCscError(status);
  if (error.http_status >= 500 && error.http_status != 501) {
    Log(LogLevel::kError, "gateway", "request failed",
        {{"method", method.substr(0, 64)}, {"status", status.ToString()}});
  }
  CscReply reply{
      .http_status = error.http_status,
      .body = Dump(Json{{"error", error.error}, {"error_description", error.description}})};
  if (error.http_status == 401) {
    reply.headers.emplace_back(
        "WWW-Authenticate",
        error.error == "invalid_client"
            ? std::string("Basic realm=\"qsign\"")
            : absl::StrCat("Bearer realm=\"qsign\", error=\"", error.error, "\""));
  }
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

absl::StatusOr<Gateway::Result> Gateway::Dispatch(std::string_view method,
                                                  const CscRequest& request) const {
  if (method == "info") return Info(request);
  if (method == "oauth2/token") return Token(request);
  if (method == "credentials/list") return CredentialsList(request);
  if (method == "credentials/info") return CredentialsInfo(request);
  if (method == "credentials/authorize") return CredentialsAuthorize(request);
  if (method == "credentials/authorizeCheck") return CredentialsAuthorizeCheck(request);
  if (method == "signatures/signHash") return SignaturesSignHash(request);
  if (IsKnownUnimplemented(method)) {
    return absl::UnimplementedError(
        absl::StrCat("Method ", Av(method), " is not implemented; info lists the methods"));
  }
  return CscStatus(absl::StatusCode::kNotFound, "invalid_request",
                   "No such method; info lists the methods", 404);
}

absl::StatusOr<RelyingParty> Gateway::Authenticate(const CscRequest& request) const {
  if (request.authorization.empty()) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "An access token is required: Authorization: Bearer <token from "
                     "oauth2/token>");
  }
  std::string_view token = request.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (token.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(Av(token.substr(0, kBearer.size())), Av(kBearer))) {
    return absl::InvalidArgumentError("Malformed authorization header");
  }
  token.remove_prefix(kBearer.size());
  auto verified = tokens_->VerifyAccessToken(token, clock_->Now());
  if (verified.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "expired_token",
                     "The access token has expired; get a new one from oauth2/token");
  }
  if (!verified.ok()) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "The access token is not valid");
  }
  auto client = relying_parties_.Find(verified->client_id);
  if (!client) {
    return CscStatus(absl::StatusCode::kUnauthenticated, "invalid_token",
                     "The access token's client is no longer registered");
  }
  return *client;
}

// ---- info ----

absl::StatusOr<Gateway::Result> Gateway::Info(const CscRequest& request) const {
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  if (auto s = CheckOptionalText(p, "lang", 64); !s.ok()) return s;
  Json algos = Json::array();
  for (const auto& s : kSignOids) algos.push_back(s.oid);
  Json out = {
      {"specs", kSpecs},
      {"name", config_.name},
      {"logo", config_.logo},
      {"region", config_.region},
      {"lang", config_.lang},
      {"description", config_.description},
      {"authType", Json::array({"oauth2client"})},
      {"oauth2", absl::StrCat(request.base_url, "/csc/v2/")},
      {"asynchronousOperationMode", false},
      {"methods", ImplementedMethods()},
      {"validationInfo", false},
      {"signAlgorithms", {{"algos", std::move(algos)}}},
      {"signature_formats", {{"formats", Json::array()}, {"envelope_properties", Json::array()}}},
      {"conformance_levels", Json::array()}};
  return Result{.body = std::move(out)};
}

// ---- oauth2/token: the client credentials grant (RFC 6749 §4.4). ----

absl::StatusOr<Gateway::Result> Gateway::Token(const CscRequest& request) const {
  // Parameters: form-encoded as RFC 6749 says, or a JSON object as some CSC clients send.
  std::map<std::string, std::string> params;
  if (absl::StartsWithIgnoreCase(Av(request.content_type), "application/json")) {
    auto body = ParseJsonObject(request.body);
    if (!body.ok()) return body.status();
    for (const auto& [name, value] : body->items()) {
      if (value.is_null()) continue;
      if (!value.is_string()) return MissingParameter("string", name);
      params[name] = value.get<std::string>();
    }
  } else {
    auto form = ParseFormUrlEncoded(request.body);
    if (!form)
      return absl::InvalidArgumentError("Malformed application/x-www-form-urlencoded body");
    for (auto& [name, value] : *form) {
      if (!params.emplace(name, value).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("Parameter ", Av(std::string_view(name).substr(0, 64)), " repeated"));
      }
    }
  }
  auto param = [&](const char* name) -> std::string_view {
    auto it = params.find(name);
    return it == params.end() ? std::string_view() : std::string_view(it->second);
  };

  const std::string_view grant_type = param("grant_type");
  if (grant_type.empty()) return absl::InvalidArgumentError("Missing parameter grant_type");
  if (grant_type != "client_credentials") {
    return CscStatus(absl::StatusCode::kInvalidArgument, "unsupported_grant_type",
                     "Only the client_credentials grant is supported");
  }
  const std::string_view scope = param("scope");
  if (!scope.empty() && scope != "service") {
    return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_scope",
                     "Only the scope \"service\" is supported");
  }

  // Client authentication: HTTP Basic (RFC 6749 §2.3.1) or client_id + client_secret in the
  // body, never both.
  std::string client_id, secret;
  const absl::Status bad_client = CscStatus(absl::StatusCode::kUnauthenticated, "invalid_client",
                                            "Client authentication failed");
  if (!request.authorization.empty()) {
    absl::string_view auth = Av(request.authorization);
    if (!absl::ConsumePrefix(&auth, "Basic ")) {
      return absl::InvalidArgumentError("Malformed authorization header: Basic expected");
    }
    if (!param("client_secret").empty()) {
      return absl::InvalidArgumentError("Use one client authentication method, not two");
    }
    auto decoded = DecodeBase64(Sv(auth));
    const size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError("Malformed authorization header");
    }
    auto id = PercentDecode(std::string_view(*decoded).substr(0, colon));
    auto pw = PercentDecode(std::string_view(*decoded).substr(colon + 1));
    if (!id || !pw) return absl::InvalidArgumentError("Malformed authorization header");
    client_id = *std::move(id);
    secret = *std::move(pw);
    if (!param("client_id").empty() && param("client_id") != client_id) {
      return absl::InvalidArgumentError("client_id differs from the authorization header's");
    }
  } else {
    client_id = std::string(param("client_id"));
    secret = std::string(param("client_secret"));
    if (client_id.empty()) return absl::InvalidArgumentError("Missing parameter client_id");
    if (secret.empty()) return bad_client;
  }
  auto client = relying_parties_.Authenticate(client_id, secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  if (!client) {
    Log(LogLevel::kInfo, "gateway", "client authentication failed",
        {{"client_id", IsValidClientId(client_id) ? std::string_view(client_id) : "(malformed)"},
         {"remote", request.remote_address}});
    return bad_client;
  }
  const absl::Time expires_at = clock_->Now() + config_.token_lifetime;
  auto token = tokens_->IssueAccessToken(client->client_id, expires_at);
  if (!token.ok()) return token.status();
  return Result{.body = {{"access_token", *token},
                         {"token_type", "Bearer"},
                         {"expires_in", absl::ToInt64Seconds(config_.token_lifetime)}},
                .headers = {{"Pragma", "no-cache"}}};
}

// ---- credentials/list ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsList(const CscRequest& request) const {
  auto client = Authenticate(request);
  if (!client.ok()) return client.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  // Service authorization (client credentials): the relying party names the user.
  auto user = p.String("userID", kMaxIdBytes);
  if (!user.ok()) return user.status();
  if (std::any_of(user->begin(), user->end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x21 || c == 0x7f; })) {
    return InvalidParameter("userID", "no spaces or control characters");
  }
  auto with_info = p.Bool("credentialInfo", false);
  if (!with_info.ok()) return with_info.status();
  auto options = ParseInfoOptions(p);
  if (!options.ok()) return options.status();
  auto only_valid = p.Bool("onlyValid", false);
  if (!only_valid.ok()) return only_valid.status();
  for (const char* text : {"lang", "clientData"}) {
    if (auto s = CheckOptionalText(p, text, kMaxClientDataBytes); !s.ok()) return s;
  }

  pb::ListCredentialsRequest req;
  req.set_account_id(*user);
  req.set_only_active(*only_valid);
  auto list = backend_->ListCredentials(req);
  if (!list.ok()) return FromService("signer", list.status());

  const absl::Time now = clock_->Now();
  Json ids = Json::array();
  Json infos = Json::array();
  for (const auto& c : list->credentials()) {
    ids.push_back(c.credential_id());
    if (*with_info) {
      auto info = CredentialJson(c, *options, config_, now);
      if (!info.ok()) return info.status();
      (*info)["credentialID"] = c.credential_id();
      infos.push_back(*std::move(info));
    }
  }
  Json out = {{"credentialIDs", std::move(ids)}};
  if (*with_info) out["credentialInfos"] = std::move(infos);
  if (*only_valid) out["onlyValid"] = true;
  return Result{.body = std::move(out)};
}

// ---- credentials/info ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsInfo(const CscRequest& request) const {
  auto client = Authenticate(request);
  if (!client.ok()) return client.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  auto credential_id = p.String("credentialID", kMaxIdBytes);
  if (!credential_id.ok()) return credential_id.status();
  if (auto s = CheckCredentialId(*credential_id); !s.ok()) return s;
  auto options = ParseInfoOptions(p);
  if (!options.ok()) return options.status();
  for (const char* text : {"lang", "clientData"}) {
    if (auto s = CheckOptionalText(p, text, kMaxClientDataBytes); !s.ok()) return s;
  }

  pb::GetCredentialInfoRequest req;
  req.set_credential_id(*credential_id);
  auto info = backend_->GetCredentialInfo(req);
  if (!info.ok()) return FromService("signer", info.status());
  auto out = CredentialJson(*info, *options, config_, clock_->Now());
  if (!out.ok()) return out.status();
  return Result{.body = *std::move(out)};
}

// ---- credentials/authorize (SCAL2, explicit authorization on the consent app) ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsAuthorize(const CscRequest& request) const {
  auto client = Authenticate(request);
  if (!client.ok()) return client.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  auto credential_id = p.String("credentialID", kMaxIdBytes);
  if (!credential_id.ok()) return credential_id.status();
  if (auto s = CheckCredentialId(*credential_id); !s.ok()) return s;
  auto num_signatures = p.OptInteger("numSignatures");
  if (!num_signatures.ok()) return num_signatures.status();
  if (!num_signatures->has_value()) return MissingParameter("integer", "numSignatures");
  if (**num_signatures < 1) {
    return absl::InvalidArgumentError("Invalid value for parameter numSignatures");
  }
  // SCAL2: the SAD is bound to the hashes, so both are required.
  auto hash_oid = p.String("hashAlgorithmOID", 64);
  if (!hash_oid.ok()) return hash_oid.status();
  const HashOid* hash = FindHashOid(*hash_oid);
  if (hash == nullptr) {
    return InvalidParameter("hashAlgorithmOID",
                            "SHA-256, SHA-384 or SHA-512 (2.16.840.1.101.3.4.2.1/2/3)");
  }
  auto encoded = p.StringArray("hashes", config_.max_hashes, kMaxHashBase64Bytes);
  if (!encoded.ok()) return encoded.status();
  auto hashes = DecodeHashes(*encoded, *hash);
  if (!hashes.ok()) return hashes.status();
  if (static_cast<size_t>(**num_signatures) != hashes->size()) {
    return InvalidParameter("numSignatures",
                            "must equal the number of hashes (SCAL2: one signature per hash)");
  }
  // authData: nothing, or the empty PasswordOOB object "PIN" that credentials/info describes.
  // A PIN sent here is refused: it belongs in the consent app only.
  if (const Json* auth = p.Find("authData")) {
    if (!auth->is_array()) return MissingParameter("array", "authData");
    for (const Json& object : *auth) {
      if (!object.is_object()) return InvalidParameter("authData", "an array of objects");
      auto id = object.find("id");
      if (id == object.end() || !id->is_string() || id->get_ref<const std::string&>() != "PIN" ||
          object.size() != 1) {
        return CscStatus(absl::StatusCode::kInvalidArgument, "invalid_authentication_data",
                         "The authentication data is invalid: the only authentication object is "
                         "{\"id\":\"PIN\"} with no value; the user enters the PIN in the "
                         "consent app");
      }
    }
  }
  auto description = p.OptString("description", size_t{4} * kMaxDescriptionChars);
  if (!description.ok()) return description.status();
  if (description->has_value() && !IsDisplayText(**description, 1, kMaxDescriptionChars)) {
    return InvalidParameter("description",
                            absl::StrCat("1 to ", kMaxDescriptionChars, " characters of text"));
  }
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;

  pb::AuthorizeRequest req;
  req.set_credential_id(*credential_id);
  req.set_hash_algorithm_oid(hash->oid);
  for (auto& h : *hashes) req.add_hashes(std::move(h));
  req.set_num_signatures(static_cast<uint32_t>(**num_signatures));
  if (description->has_value()) {
    // The description is what the user is shown for each hash.
    for (int i = 0; i < req.hashes_size(); ++i) req.add_documents()->set_label(**description);
  }
  req.set_relying_party_name(client->name);
  req.mutable_client()->set_client_address(request.remote_address);
  req.mutable_client()->set_user_agent(absl::StrCat("CSC gateway client ", client->client_id));
  auto authorized = backend_->Authorize(req);
  if (!authorized.ok()) return FromService("consent", authorized.status());
  return AwaitOutcome(*client, authorized->request_id(), config_.authorize_wait);
}

// ---- credentials/authorizeCheck ----

absl::StatusOr<Gateway::Result> Gateway::CredentialsAuthorizeCheck(
    const CscRequest& request) const {
  auto client = Authenticate(request);
  if (!client.ok()) return client.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  auto handle = p.String("handle", 1024);
  if (!handle.ok()) return handle.status();
  auto request_id = tokens_->OpenHandle(client->client_id, *handle);
  if (!request_id.ok()) return InvalidParameter("handle");
  return AwaitOutcome(*client, *request_id, config_.authorize_check_wait);
}

absl::StatusOr<Gateway::Result> Gateway::AwaitOutcome(const RelyingParty& client,
                                                      const std::string& request_id,
                                                      absl::Duration wait) const {
  pb::AwaitAuthorizationRequest req;
  req.set_request_id(request_id);
  const timespec ts = absl::ToTimespec(wait);
  req.mutable_max_wait()->set_seconds(ts.tv_sec);
  req.mutable_max_wait()->set_nanos(static_cast<int32_t>(ts.tv_nsec));
  auto outcome = backend_->AwaitAuthorization(req);
  if (!outcome.ok()) {
    if (outcome.status().code() == absl::StatusCode::kNotFound) return InvalidParameter("handle");
    return FromService("consent", outcome.status());
  }
  switch (outcome->state()) {
    case pb::CONSENT_REQUEST_STATE_PENDING:
      return Result{.http_status = 202,
                    .body = {{"handle", tokens_->SealHandle(client.client_id, request_id)}}};
    case pb::CONSENT_REQUEST_STATE_APPROVED:
      if (outcome->sad().empty()) {
        return absl::FailedPreconditionError(
            "The SAD of this authorization has expired; authorize again");
      }
      return Result{.body = {{"SAD", outcome->sad()},
                             {"expiresIn",
                              SecondsUntil(FromProto(outcome->sad_expires_at()), clock_->Now())}}};
    case pb::CONSENT_REQUEST_STATE_DENIED:
      return absl::PermissionDeniedError(
          "The user refused the authorization in the consent app (or the PIN got blocked)");
    case pb::CONSENT_REQUEST_STATE_EXPIRED:
      return absl::PermissionDeniedError(
          "The user did not answer in time; the authorization expired");
    case pb::CONSENT_REQUEST_STATE_CANCELLED:
      return absl::PermissionDeniedError(
          "The authorization was cancelled: the user's consent app was replaced or deactivated");
    default:
      return absl::InternalError(
          absl::StrCat("consent: unexpected authorization state ", outcome->state()));
  }
}

// ---- signatures/signHash ----

absl::StatusOr<Gateway::Result> Gateway::SignaturesSignHash(const CscRequest& request) const {
  auto client = Authenticate(request);
  if (!client.ok()) return client.status();
  auto body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  Params p(*body);
  auto credential_id = p.String("credentialID", kMaxIdBytes);
  if (!credential_id.ok()) return credential_id.status();
  if (auto s = CheckCredentialId(*credential_id); !s.ok()) return s;
  auto sad = p.String("SAD", kMaxSadBytes);
  if (!sad.ok()) return sad.status();
  auto sign_algo = p.String("signAlgo", 64);
  if (!sign_algo.ok()) return sign_algo.status();
  const SignOid* sign = FindSignOid(*sign_algo);
  if (sign == nullptr)
    return InvalidParameter("signAlgo", "not supported; info lists the algorithms");
  auto hash_oid = p.OptString("hashAlgorithmOID", 64);
  if (!hash_oid.ok()) return hash_oid.status();
  const HashOid* hash = nullptr;
  if (hash_oid->has_value()) {
    hash = FindHashOid(**hash_oid);
    if (hash == nullptr) {
      return InvalidParameter("hashAlgorithmOID", "SHA-256, SHA-384 or SHA-512");
    }
    if (sign->implied_hash != nullptr && std::string_view(sign->implied_hash) != hash->oid) {
      return absl::InvalidArgumentError(
          "String parameter hashAlgorithmOID contradicts with signAlgo parameter");
    }
  } else if (sign->implied_hash != nullptr) {
    hash = FindHashOid(sign->implied_hash);
  } else {
    return MissingParameter("string", "hashAlgorithmOID");
  }
  if (p.Find("signAlgoParams") != nullptr) {
    return InvalidParameter("signAlgoParams",
                            "not supported (RSASSA-PSS uses MGF1 with the hash algorithm and a "
                            "salt of the hash's length)");
  }
  auto mode = p.OptString("operationMode", 8);
  if (!mode.ok()) return mode.status();
  if (mode->has_value() && **mode != "S") {
    return InvalidParameter("operationMode", "only synchronous signing (\"S\") is supported");
  }
  auto encoded = p.StringArray("hashes", config_.max_hashes, kMaxHashBase64Bytes);
  if (!encoded.ok()) return encoded.status();
  auto hashes = DecodeHashes(*encoded, *hash);
  if (!hashes.ok()) return hashes.status();
  if (auto s = CheckOptionalText(p, "clientData", kMaxClientDataBytes); !s.ok()) return s;

  pb::SignHashRequest req;
  req.set_credential_id(*credential_id);
  req.set_hash_algorithm_oid(hash->oid);
  req.set_sign_algorithm_oid(sign->oid);
  for (auto& h : *hashes) req.add_hashes(std::move(h));
  req.set_sad(*sad);
  auto signed_hashes = backend_->SignHash(req);
  if (!signed_hashes.ok()) {
    const absl::Status& s = signed_hashes.status();
    // A SAD that does not cover this request (expired, another credential, other hashes, bad
    // signature, used) means the relying party's request is wrong, not its access.
    const std::string_view why = RefusalDetail(s);
    switch (RefusalReason(s)) {
      case pb::Refusal::SAD_OTHER_HASHES:
        return absl::InvalidArgumentError(
            absl::StrCat("Hash is not authorized by the SAD (", Av(why), ")"));
      case pb::Refusal::SAD_EXPIRED:
        return absl::InvalidArgumentError(absl::StrCat("SAD expired (", Av(why), ")"));
      case pb::Refusal::SAD_MISSING:
      case pb::Refusal::SAD_MALFORMED:
      case pb::Refusal::SAD_UNKNOWN_KEY:
      case pb::Refusal::SAD_BAD_SIGNATURE:
      case pb::Refusal::SAD_NOT_YET_VALID:
      case pb::Refusal::SAD_OTHER_CREDENTIAL:
      case pb::Refusal::SAD_OTHER_ACCOUNT:
      case pb::Refusal::SAD_OTHER_HASH_ALGORITHM:
      case pb::Refusal::SAD_TOO_MANY_SIGNATURES:
      case pb::Refusal::SAD_USED: {
        const absl::StatusCode code = s.code() == absl::StatusCode::kPermissionDenied
                                          ? absl::StatusCode::kInvalidArgument
                                          : s.code();
        return absl::Status(code, absl::StrCat("Invalid parameter SAD: ", Av(why)));
      }
      default:
        break;
    }
    return FromService("signer", s);
  }
  Json signatures = Json::array();
  for (const auto& sig : signed_hashes->signatures()) signatures.push_back(EncodeBase64(sig));
  return Result{.body = {{"signatures", std::move(signatures)}}};
}

}  // namespace qsign::gateway
