// OCSP requests as relying parties send them to the lifecycle service's public listener:
// byte 0 even: the DER body of POST /ocsp, straight into the responder; odd: GET /ocsp/<...>
// over HTTP to the real listener (status_http), with the rest either base64-encoded by the
// target (so that the request parses) or sent as the path itself (bit 1). With bit 2 the target
// first writes a well-formed request about one of our CAs' serials (the rest's first 20 bytes)
// with the rest as its nonce, so that the signing path runs too. The CAs are real
// (keys in a SoftHSM2 token made at start-up, certificates from CaSet::Init); statuses come from a
// fake source (serial ending in 0: revoked, 1: unknown, else good). A POSTed request the responder
// reads in place (OcspResponder::ReadsInPlace) must be one OpenSSL decodes and re-encodes to the
// same bytes.
#include <httplib.h>
#include <openssl/bn.h>
#include <openssl/ocsp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/ossl.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/status_http.h"

namespace lc = ::qsign::lifecycle;

namespace {

class MemoryCaStore final : public lc::CaStore {
 public:
  absl::StatusOr<std::vector<lc::CaRecord>> ListCas() override {
    absl::MutexLock lock(&mu_);
    return cas_;
  }
  absl::Status InsertCa(const lc::CaRecord& ca, const qsign::db::AuditEvent&) override {
    absl::MutexLock lock(&mu_);
    cas_.push_back(ca);
    return absl::OkStatus();
  }
  absl::Status ReplaceCaCertificate(std::string_view name, std::string_view der,
                                    std::string_view serial_hex, absl::Time not_after, absl::Time,
                                    const qsign::db::AuditEvent&) override {
    absl::MutexLock lock(&mu_);
    for (lc::CaRecord& r : cas_) {
      if (r.name == name) {
        r.certificate_der = std::string(der);
        r.serial_hex = std::string(serial_hex);
        r.not_after = not_after;
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  std::vector<lc::CaRecord> cas_;
};

class FakeStatuses final : public lc::CertStatusSource {
 public:
  absl::StatusOr<lc::CertStatus> Status(std::string_view, std::string_view serial_hex) override {
    lc::CertStatus s;
    switch (serial_hex.back()) {
      case '0':
        s.kind = lc::CertStatus::Kind::kRevoked;
        s.revoked_at = absl::FromUnixSeconds(1'700'000'000);
        s.reason = 1;
        break;
      case '1':
        s.kind = lc::CertStatus::Kind::kUnknown;
        break;
      default:
        s.kind = lc::CertStatus::Kind::kGood;
    }
    return s;
  }
};

struct Env {
  std::unique_ptr<qsign::hsm::testing::SoftHsmToken> token;
  std::unique_ptr<qsign::hsm::Hsm> hsm;
  qsign::FakeClock clock{absl::FromUnixSeconds(1'800'000'000)};
  MemoryCaStore store;
  FakeStatuses statuses;
  std::unique_ptr<lc::CaSet> cas;
  std::unique_ptr<lc::OcspResponder> ocsp;
  std::unique_ptr<lc::StatusHttpServer> http;
  std::unique_ptr<httplib::Client> client;

  Env() {
    auto t = qsign::hsm::testing::SoftHsmToken::Create("qsign-ocsp-fuzz");
    if (!t.ok()) std::abort();
    token = *std::move(t);
    auto h = qsign::hsm::NewPkcs11Hsm(token->config(2));
    if (!h.ok()) std::abort();
    hsm = *std::move(h);
    auto c = lc::CaSet::Init(hsm.get(), &store, clock, lc::CaConfig{});
    if (!c.ok()) std::abort();
    cas = *std::move(c);
    ocsp = std::make_unique<lc::OcspResponder>(cas.get(), &statuses, &clock);
    auto s = lc::StatusHttpServer::Start({.port = 0, .threads = 2}, ocsp.get(), nullptr, cas.get());
    if (!s.ok()) std::abort();
    http = *std::move(s);
    client = std::make_unique<httplib::Client>(http->base_url());
  }
};

// Every byte outside RFC 3986's unreserved set as %XX: any bytes make a valid request target.
std::string PercentEncode(std::string_view in) {
  std::string out;
  for (unsigned char c : in) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// A request for serial `serial_bytes` of our qualified CA with `nonce` (OpenSSL builds it).
std::string RequestAbout(const lc::Ca& ca, std::string_view serial_bytes, std::string_view nonce) {
  qsign::OsslPtr<BIGNUM> bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial_bytes.data()),
                                      static_cast<int>(serial_bytes.size()), nullptr));
  qsign::OsslPtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  qsign::OsslPtr<OCSP_REQUEST> req(OCSP_REQUEST_new());
  OCSP_CERTID* id = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca.cert()),
                                     X509_get0_pubkey_bitstr(ca.cert()), serial.get());
  if (id == nullptr || OCSP_request_add0_id(req.get(), id) == nullptr) std::abort();
  if (!nonce.empty() &&
      OCSP_request_add1_nonce(req.get(),
                              reinterpret_cast<unsigned char*>(const_cast<char*>(nonce.data())),
                              static_cast<int>(nonce.size())) != 1) {
    std::abort();
  }
  unsigned char* der = nullptr;
  const int n = i2d_OCSP_REQUEST(req.get(), &der);
  if (n <= 0) std::abort();
  std::string out(reinterpret_cast<char*>(der), n);
  OPENSSL_free(der);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env env;
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string built;
  if ((data[0] & 4) != 0) {
    const size_t n = std::min<size_t>(rest.size(), 20);
    built = RequestAbout(env.cas->qualified(), rest.substr(0, n), rest.substr(n));
    rest = built;
  }
  std::string response;
  if ((data[0] & 1) == 0) {
    response = env.ocsp->Respond(rest);
    if (lc::OcspResponder::ReadsInPlace(rest)) {
      // What the responder reads in place (not through OpenSSL) is a request OpenSSL's decoder
      // accepts whole, about one certificate, and re-encodes to the same bytes: the fast way
      // answers nothing the general way would call malformed, and caches under the same CertID.
      const auto* p = reinterpret_cast<const unsigned char*>(rest.data());
      qsign::OsslPtr<OCSP_REQUEST> req(
          d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(rest.size())));
      if (req == nullptr ||
          p != reinterpret_cast<const unsigned char*>(rest.data()) + rest.size() ||
          OCSP_request_onereq_count(req.get()) != 1) {
        std::abort();
      }
      unsigned char* der = nullptr;
      const int n = i2d_OCSP_REQUEST(req.get(), &der);
      const bool same = n > 0 && std::string_view(reinterpret_cast<char*>(der), n) == rest;
      OPENSSL_free(der);
      if (!same) std::abort();
    }
  } else {
    const std::string path =
        (data[0] & 2) != 0 ? std::string(rest) : absl::Base64Escape(std::string(rest));
    if (path.empty() || path.size() > 4096) return 0;
    auto res = env.client->Get(absl::StrCat("/ocsp/", PercentEncode(path)));
    if (!res) std::abort();            // The listener must always answer.
    if (res->status == 404) return 0;  // A path the route does not match ("/ocsp/" + nothing).
    if (res->status != 200) std::abort();
    response = res->body;
  }
  // Always a DER OCSPResponse: a SEQUENCE whose first element is the status.
  if (response.size() < 5 || response[0] != 0x30) std::abort();
  return 0;
}
