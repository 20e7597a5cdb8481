// Pkcs11Hsm against a real SoftHSM2 token per test; every signature is checked with OpenSSL.
#include "hsm/hsm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/ossl.h"
#include "common/secret.h"
#include "common/strings.h"
#include "hsm/pkcs11_hsm.h"
#include "hsm/pkcs11_module.h"
#include "hsm/testing/bare_pkcs11.h"
#include "hsm/testing/softhsm_token.h"
#include "tests/testing/test_pki.h"

namespace qsign::hsm {
namespace {

using ::qsign::hsm::testing::AllSensitiveSignOnly;
using ::qsign::hsm::testing::BarePkcs11SignRate;
using ::qsign::hsm::testing::CountPrivateKeys;
using ::qsign::hsm::testing::PrivateKeyCensus;
using ::qsign::hsm::testing::SoftHsmToken;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const EVP_MD* Md(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return EVP_sha256();
    case HashAlgorithm::kSha384:
      return EVP_sha384();
    case HashAlgorithm::kSha512:
      return EVP_sha512();
  }
  return nullptr;
}

std::string Digest(HashAlgorithm hash, std::string_view message) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int length = 0;
  EVP_Digest(message.data(), message.size(), reinterpret_cast<unsigned char*>(out.data()), &length,
             Md(hash), nullptr);
  out.resize(length);
  return out;
}

OsslPtr<EVP_PKEY> ParseSpki(const std::string& der) {
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  return OsslPtr<EVP_PKEY>(d2i_PUBKEY(nullptr, &in, static_cast<long>(der.size())));
}

// OpenSSL's verdict on `signature` over `digest` with the SPKI's key.
::testing::AssertionResult Verifies(const PublicKey& key, const SignParams& params,
                                    const std::string& digest, const std::string& signature) {
  OsslPtr<EVP_PKEY> pkey = ParseSpki(key.spki_der);
  if (pkey == nullptr) return ::testing::AssertionFailure() << "SPKI does not parse";
  OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(pkey.get(), nullptr));
  if (EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), Md(params.hash)) != 1) {
    return ::testing::AssertionFailure() << "verify init failed";
  }
  std::string sig = signature;
  if (params.scheme == SignScheme::kEcdsa && !params.ecdsa_der) {
    if (sig.size() != 2 * static_cast<size_t>(KeyBits(key.type) / 8)) {
      return ::testing::AssertionFailure() << "raw ECDSA signature of " << sig.size() << " bytes";
    }
    sig = qsign::testing::EcdsaRawToDer(sig);  // Independent of hsm/key_encoding.
  }
  if (params.scheme == SignScheme::kRsaPkcs1) {
    EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING);
  } else if (params.scheme == SignScheme::kRsaPss) {
    EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), Md(params.hash));
    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST);
  }
  int rc =
      EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                      reinterpret_cast<const unsigned char*>(digest.data()), digest.size());
  if (rc == 1) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "EVP_PKEY_verify returned " << rc;
}

// A fresh token and a Pkcs11Hsm logged in to it; the Hsm goes first on tear-down.
class HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SoftHsmToken>> token = SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = std::move(*token);
    OpenHsm(2);
  }

  void OpenHsm(int pool_size, FunctionListPatch patch = nullptr) {
    hsm_.reset();
    absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> hsm =
        NewPkcs11HsmForTesting(token_->config(pool_size), std::move(patch));
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    hsm_ = std::move(*hsm);
  }

  // Caller `caller` signs `count` digests of its own with key "ec" (ECDSA); those that verify
  // under `key` are added to `verified`, a failed call fails the test.
  void SignAsCaller(const PublicKey& key, int caller, size_t count, std::atomic<int>& verified) {
    std::vector<std::string> digests;
    for (size_t i = 0; i < count; ++i)
      digests.push_back(Digest(HashAlgorithm::kSha256, absl::StrCat(caller, "/", i)));
    absl::StatusOr<std::vector<std::string>> signatures = hsm_->SignDigests("ec", {}, digests);
    if (!signatures.ok()) {
      ADD_FAILURE() << signatures.status();
      return;
    }
    for (size_t i = 0; i < digests.size(); ++i) {
      if (Verifies(key, {}, digests[i], (*signatures)[i])) ++verified;
    }
  }

  PublicKey Generate(std::string_view id, KeyType type) {
    absl::StatusOr<PublicKey> key = hsm_->GenerateKeyPair(id, type);
    EXPECT_TRUE(key.ok()) << key.status();
    return key.ok() ? *key : PublicKey{type, ""};
  }

  // Signs a digest of `message` and checks it with OpenSSL.
  void SignAndVerify(std::string_view id, const PublicKey& key, const SignParams& params,
                     std::string_view message = "hello") {
    std::string digest = Digest(params.hash, message);
    absl::StatusOr<std::string> signature = hsm_->SignDigest(id, params, digest);
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_TRUE(Verifies(key, params, digest, *signature));
  }

  std::unique_ptr<SoftHsmToken> token_;
  std::unique_ptr<Pkcs11Hsm> hsm_;
};

TEST(KeyTypeTest, NamesRoundTrip) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048, KeyType::kRsa3072,
                       KeyType::kRsa4096}) {
    absl::StatusOr<KeyType> parsed = ParseKeyType(KeyTypeName(type));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(KeyTypeName(KeyType::kRsa3072), "RSA_3072");
  EXPECT_EQ(ParseKeyType("EC_P521").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsEc(KeyType::kEcP384));
  EXPECT_FALSE(IsEc(KeyType::kRsa2048));
  EXPECT_EQ(KeyBits(KeyType::kRsa4096), 4096);
  EXPECT_EQ(DigestLength(HashAlgorithm::kSha384), 48u);
}

class EcSignTest : public HsmTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(EcSignTest, EcdsaDerAndRawVerifyForEveryHash) {
  const PublicKey key = Generate("ec", GetParam());
  ASSERT_EQ(key.type, GetParam());
  OsslPtr<EVP_PKEY> pkey = ParseSpki(key.spki_der);
  ASSERT_NE(pkey, nullptr);
  EXPECT_EQ(EVP_PKEY_get_bits(pkey.get()), KeyBits(GetParam()));
  for (HashAlgorithm hash :
       {HashAlgorithm::kSha256, HashAlgorithm::kSha384, HashAlgorithm::kSha512}) {
    for (bool der : {true, false}) {
      SCOPED_TRACE(absl::StrCat("hash length ", DigestLength(hash), " der ", der));
      SignAndVerify("ec", key, {SignScheme::kEcdsa, hash, der});
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Curves, EcSignTest, ::testing::Values(KeyType::kEcP256, KeyType::kEcP384),
                         [](const auto& info) { return std::string(KeyTypeName(info.param)); });

TEST_F(HsmTest, Rsa2048Pkcs1AndPssVerifyForEveryHash) {
  const PublicKey key = Generate("rsa", KeyType::kRsa2048);
  OsslPtr<EVP_PKEY> pkey = ParseSpki(key.spki_der);
  ASSERT_NE(pkey, nullptr);
  EXPECT_EQ(EVP_PKEY_get_bits(pkey.get()), 2048);
  for (SignScheme scheme : {SignScheme::kRsaPkcs1, SignScheme::kRsaPss}) {
    for (HashAlgorithm hash :
         {HashAlgorithm::kSha256, HashAlgorithm::kSha384, HashAlgorithm::kSha512}) {
      SCOPED_TRACE(
          absl::StrCat("scheme ", static_cast<int>(scheme), " hash length ", DigestLength(hash)));
      SignAndVerify("rsa", key, {scheme, hash});
    }
  }
}

// Key generation is slow at these sizes: one key each.
TEST_F(HsmTest, Rsa3072And4096SignAndVerify) {
  for (KeyType type : {KeyType::kRsa3072, KeyType::kRsa4096}) {
    const std::string id(KeyTypeName(type));
    const PublicKey key = Generate(id, type);
    OsslPtr<EVP_PKEY> pkey = ParseSpki(key.spki_der);
    ASSERT_NE(pkey, nullptr);
    EXPECT_EQ(EVP_PKEY_get_bits(pkey.get()), KeyBits(type));
    SignAndVerify(id, key, {SignScheme::kRsaPkcs1, HashAlgorithm::kSha256});
    SignAndVerify(id, key, {SignScheme::kRsaPss, HashAlgorithm::kSha512});
  }
}

TEST_F(HsmTest, BatchKeepsInputOrder) {
  const PublicKey key = Generate("batch", KeyType::kEcP256);
  const SignParams params;
  std::vector<std::string> digests;
  digests.reserve(10);
  for (int i = 0; i < 10; ++i) digests.push_back(Digest(params.hash, absl::StrCat("doc ", i)));
  absl::StatusOr<std::vector<std::string>> signatures = hsm_->SignDigests("batch", params, digests);
  ASSERT_TRUE(signatures.ok()) << signatures.status();
  ASSERT_EQ(signatures->size(), digests.size());
  for (size_t i = 0; i < digests.size(); ++i) {
    EXPECT_TRUE(Verifies(key, params, digests[i], (*signatures)[i])) << i;
  }
}

TEST_F(HsmTest, GetPublicKeyMatchesGenerateAndSurvivesRestart) {
  const PublicKey ec = Generate("ec", KeyType::kEcP384);
  const PublicKey rsa = Generate("rsa", KeyType::kRsa2048);
  OpenHsm(2);  // A new process would see the same: keys found by id, not remembered.
  for (const auto& [id, key] : {std::pair{"ec", ec}, std::pair{"rsa", rsa}}) {
    absl::StatusOr<PublicKey> again = hsm_->GetPublicKey(id);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->type, key.type);
    EXPECT_EQ(again->spki_der, key.spki_der);
  }
  SignAndVerify("ec", ec, {SignScheme::kEcdsa, HashAlgorithm::kSha384});
  SignAndVerify("rsa", rsa, {SignScheme::kRsaPss, HashAlgorithm::kSha256});
}

class KeyAttributesTest : public HsmTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(KeyAttributesTest, PrivateKeyIsSensitiveUnextractableAndSignOnly) {
  Generate("k", GetParam());
  absl::StatusOr<CK_OBJECT_HANDLE> handle = hsm_->PrivateKeyHandleForTesting("k");
  ASSERT_TRUE(handle.ok()) << handle.status();
  absl::Status status = hsm_->RunWithSessionForTesting(
      [&](const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session) -> absl::Status {
        struct Expected {
          CK_ATTRIBUTE_TYPE type;
          const char* name;
          bool value;
        };
        for (const Expected& e :
             {Expected{CKA_TOKEN, "CKA_TOKEN", true}, Expected{CKA_PRIVATE, "CKA_PRIVATE", true},
              Expected{CKA_SENSITIVE, "CKA_SENSITIVE", true},
              Expected{CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true},
              Expected{CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false},
              Expected{CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true},
              Expected{CKA_SIGN, "CKA_SIGN", true}, Expected{CKA_DECRYPT, "CKA_DECRYPT", false},
              Expected{CKA_UNWRAP, "CKA_UNWRAP", false},
              Expected{CKA_DERIVE, "CKA_DERIVE", false}}) {
          absl::StatusOr<bool> value = GetAttributeBool(fns, session, *handle, e.type);
          if (!value.ok()) return value.status();
          EXPECT_EQ(*value, e.value) << e.name;
        }
        absl::StatusOr<std::string> id = GetAttributeBytes(fns, session, *handle, CKA_ID);
        absl::StatusOr<std::string> label = GetAttributeBytes(fns, session, *handle, CKA_LABEL);
        EXPECT_EQ(id.value_or(""), "k");
        EXPECT_EQ(label.value_or(""), "k");
        // The secret itself must not come out.
        for (CK_ATTRIBUTE_TYPE secret :
             IsEc(GetParam()) ? std::vector<CK_ATTRIBUTE_TYPE>{CKA_VALUE}
                              : std::vector<CK_ATTRIBUTE_TYPE>{CKA_PRIVATE_EXPONENT, CKA_PRIME_1}) {
          std::string buffer(1024, '\0');
          CK_ATTRIBUTE attribute{secret, buffer.data(), buffer.size()};
          EXPECT_EQ(fns.C_GetAttributeValue(session, *handle, &attribute, 1),
                    CKR_ATTRIBUTE_SENSITIVE);
          EXPECT_EQ(attribute.ulValueLen, CK_UNAVAILABLE_INFORMATION);
          EXPECT_EQ(buffer, std::string(1024, '\0'));
        }
        return absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;

  absl::StatusOr<PrivateKeyCensus> census = CountPrivateKeys(token_->config());
  ASSERT_TRUE(census.ok()) << census.status();
  EXPECT_EQ(census->total, 1);
  EXPECT_TRUE(AllSensitiveSignOnly(*census));
}

INSTANTIATE_TEST_SUITE_P(Keys, KeyAttributesTest,
                         ::testing::Values(KeyType::kEcP256, KeyType::kRsa2048),
                         [](const auto& info) { return std::string(KeyTypeName(info.param)); });

TEST_F(HsmTest, DuplicateIdIsAlreadyExists) {
  Generate("dup", KeyType::kEcP256);
  absl::StatusOr<PublicKey> again = hsm_->GenerateKeyPair("dup", KeyType::kEcP384);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("\"dup\""));
  absl::StatusOr<PrivateKeyCensus> census = CountPrivateKeys(token_->config());
  ASSERT_TRUE(census.ok()) << census.status();
  EXPECT_EQ(census->total, 1);
}

// The value of one series in the Prometheus text, e.g. `name{label="x"}`; -1 when absent.
double MetricValue(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  size_t at = text.rfind("\n" + prefix);
  if (at == std::string::npos) return -1;
  at += 1 + prefix.size();
  return std::stod(text.substr(at, text.find('\n', at) - at));
}

TEST_F(HsmTest, MetricsShowThePoolSignaturesAndErrors) {
  metrics::Registry& registry = metrics::Registry::Global();
  const std::string token = absl::StrCat("{token=\"", token_->config().token_label, "\"}");
  const std::string ec_latency =
      "qsign_hsm_sign_duration_seconds_count{key_type=\"EC_P256\",scheme=\"ECDSA\"}";
  const std::string not_found = "qsign_hsm_sign_errors_total{code=\"NOT_FOUND\"}";
  const PublicKey key = Generate("m", KeyType::kEcP256);
  std::string before = registry.Render();
  EXPECT_EQ(MetricValue(before, "qsign_hsm_session_pool_size" + token), 2) << before;
  EXPECT_EQ(MetricValue(before, "qsign_hsm_sessions_in_use" + token), 0) << before;
  EXPECT_NE(before.find("# HELP qsign_hsm_sign_duration_seconds "), std::string::npos);

  for (const char* message : {"a", "b", "c"}) SignAndVerify("m", key, {}, message);
  EXPECT_EQ(hsm_->SignDigest("nope", {}, std::string(32, 'd')).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(hsm_->RunWithSessionForTesting([&](const CK_FUNCTION_LIST&, CK_SESSION_HANDLE) {
                    EXPECT_EQ(MetricValue(registry.Render(), "qsign_hsm_sessions_in_use" + token),
                              1);
                    return absl::OkStatus();
                  })
                  .ok());

  const std::string after = registry.Render();
  EXPECT_EQ(MetricValue(after, ec_latency) - std::max(0.0, MetricValue(before, ec_latency)), 3)
      << after;
  EXPECT_EQ(MetricValue(after, not_found) - std::max(0.0, MetricValue(before, not_found)), 1)
      << after;
  EXPECT_EQ(MetricValue(after, "qsign_hsm_sessions_in_use" + token), 0) << after;
  hsm_.reset();
  EXPECT_EQ(MetricValue(registry.Render(), "qsign_hsm_session_pool_size" + token), 0);
}

TEST_F(HsmTest, UnknownKeyIsNotFound) {
  const std::string digest(32, 'd');
  absl::StatusOr<std::string> signature = hsm_->SignDigest("nope", {}, digest);
  EXPECT_EQ(signature.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(signature.status().message(), AllOf(HasSubstr("\"nope\""), HasSubstr("qsign-test")));
  EXPECT_EQ(hsm_->GetPublicKey("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hsm_->DestroyKeyPair("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(HsmTest, DestroyedKeyIsGoneAndItsIdReusable) {
  const PublicKey first = Generate("k", KeyType::kEcP256);
  SignAndVerify("k", first, {});  // Now cached.
  ASSERT_TRUE(hsm_->DestroyKeyPair("k").ok());
  const std::string digest(32, 'd');
  EXPECT_EQ(hsm_->SignDigest("k", {}, digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hsm_->GetPublicKey("k").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hsm_->DestroyKeyPair("k").code(), absl::StatusCode::kNotFound);
  absl::StatusOr<PrivateKeyCensus> census = CountPrivateKeys(token_->config());
  ASSERT_TRUE(census.ok()) << census.status();
  EXPECT_EQ(census->total, 0);

  const PublicKey second = Generate("k", KeyType::kEcP256);
  EXPECT_NE(second.spki_der, first.spki_der);
  SignAndVerify("k", second, {});
}

TEST_F(HsmTest, BadDigestLengthIsInvalidArgument) {
  Generate("k", KeyType::kEcP256);
  std::vector<std::string> digests = {std::string(32, 'a'), std::string(31, 'b')};
  absl::StatusOr<std::vector<std::string>> signatures = hsm_->SignDigests("k", {}, digests);
  EXPECT_EQ(signatures.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(signatures.status().message(), HasSubstr("digests[1] is 31 bytes"));
  SignParams sha384{SignScheme::kEcdsa, HashAlgorithm::kSha384};
  EXPECT_EQ(hsm_->SignDigest("k", sha384, std::string(32, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(hsm_->SignDigests("k", {}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(hsm_->SignDigest("", {}, std::string(32, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(HsmTest, SchemeMustFitKeyType) {
  Generate("ec", KeyType::kEcP256);
  Generate("rsa", KeyType::kRsa2048);
  const std::string digest(32, 'd');
  for (SignScheme scheme : {SignScheme::kRsaPkcs1, SignScheme::kRsaPss}) {
    absl::StatusOr<std::string> signature = hsm_->SignDigest("ec", {scheme}, digest);
    EXPECT_EQ(signature.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(signature.status().message(), HasSubstr("EC_P256"));
  }
  EXPECT_EQ(hsm_->SignDigest("rsa", {SignScheme::kEcdsa}, digest).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Counters for the patched function list. Plain functions cannot capture, hence globals; each
// test that patches resets them.
namespace fault {
CK_FUNCTION_LIST real;
std::atomic<int> sign_failures_left{0};
std::atomic<int> sign_calls{0};
std::atomic<int> sign_in_flight{0};
std::atomic<int> max_sign_in_flight{0};
std::atomic<int> find_calls{0};
std::atomic<int> logins{0};
std::atomic<int> logins_ok{0};  // Logins that really logged in (not CKR_USER_ALREADY_LOGGED_IN).
std::atomic<bool> close_all_on_next_sign_init{false};
std::atomic<int> generate_in_flight{0};
std::atomic<int> generate_overlaps{0};
std::atomic<int> sign_delay_ms{0};
// Which CPUs the signing threads were held to, seen from inside C_Sign.
std::atomic<int> signs_not_held_to_one_cpu{0};
std::array<std::atomic<int>, 64> sign_in_flight_on_cpu{};
std::array<std::atomic<int>, 64> max_sign_in_flight_on_cpu{};

void Reset() {
  signs_not_held_to_one_cpu = 0;
  for (auto& n : sign_in_flight_on_cpu) n = 0;
  for (auto& n : max_sign_in_flight_on_cpu) n = 0;
  sign_delay_ms = 0;
  generate_in_flight = 0;
  generate_overlaps = 0;
  sign_failures_left = 0;
  sign_calls = 0;
  sign_in_flight = 0;
  max_sign_in_flight = 0;
  find_calls = 0;
  logins = 0;
  logins_ok = 0;
  close_all_on_next_sign_init = false;
}

bool TakeFailure() {
  int left = sign_failures_left.load();
  while (left > 0 && !sign_failures_left.compare_exchange_weak(left, left - 1)) {
  }
  return left > 0;
}

CK_RV Sign(CK_SESSION_HANDLE session, CK_BYTE* data, CK_ULONG data_len, CK_BYTE* signature,
           CK_ULONG* signature_len) {
  ++sign_calls;
  if (TakeFailure()) return CKR_SESSION_HANDLE_INVALID;
  int now = ++sign_in_flight;
  int max = max_sign_in_flight.load();
  while (now > max && !max_sign_in_flight.compare_exchange_weak(max, now)) {
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  int cpu = -1;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) == 1) {
    for (int c = 0; c < 64; ++c) {
      if (CPU_ISSET(c, &allowed)) cpu = c;
    }
  }
  if (cpu < 0) {
    ++signs_not_held_to_one_cpu;
  } else {
    const int on_cpu = ++sign_in_flight_on_cpu[cpu];
    int max_on_cpu = max_sign_in_flight_on_cpu[cpu].load();
    while (on_cpu > max_on_cpu &&
           !max_sign_in_flight_on_cpu[cpu].compare_exchange_weak(max_on_cpu, on_cpu)) {
    }
  }
  if (sign_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sign_delay_ms));
  CK_RV rv = real.C_Sign(session, data, data_len, signature, signature_len);
  if (cpu >= 0) --sign_in_flight_on_cpu[cpu];
  --sign_in_flight;
  return rv;
}

// A real fault: the module drops every session of the application (as on a device reset),
// so C_SignInit fails with the module's own CKR_SESSION_HANDLE_INVALID.
CK_RV SignInit(CK_SESSION_HANDLE session, CK_MECHANISM* mechanism, CK_OBJECT_HANDLE key) {
  if (close_all_on_next_sign_init.exchange(false)) {
    CK_SESSION_INFO info;
    if (real.C_GetSessionInfo(session, &info) == CKR_OK) real.C_CloseAllSessions(info.slotID);
  }
  return real.C_SignInit(session, mechanism, key);
}

CK_RV FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE* match, CK_ULONG count) {
  ++find_calls;
  return real.C_FindObjectsInit(session, match, count);
}

CK_RV Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR* pin, CK_ULONG pin_len) {
  ++logins;
  CK_RV rv = real.C_Login(session, user, pin, pin_len);
  if (rv == CKR_OK) ++logins_ok;
  return rv;
}

// SoftHSM2's file token under concurrent object creation (SoftHSMv2 issue 573), made
// deterministic: a C_GenerateKeyPair that overlaps another one fails with CKR_GENERAL_ERROR.
CK_RV GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM* mechanism,
                      CK_ATTRIBUTE* public_template, CK_ULONG public_count,
                      CK_ATTRIBUTE* private_template, CK_ULONG private_count,
                      CK_OBJECT_HANDLE* public_key, CK_OBJECT_HANDLE* private_key) {
  const bool overlapped = ++generate_in_flight > 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // Widen the window.
  CK_RV rv = overlapped
                 ? CKR_GENERAL_ERROR
                 : real.C_GenerateKeyPair(session, mechanism, public_template, public_count,
                                          private_template, private_count, public_key, private_key);
  if (overlapped) ++generate_overlaps;
  --generate_in_flight;
  return rv;
}

void Patch(CK_FUNCTION_LIST* functions) {
  Reset();
  real = *functions;
  functions->C_GenerateKeyPair = &GenerateKeyPair;
  functions->C_Sign = &Sign;
  functions->C_SignInit = &SignInit;
  functions->C_FindObjectsInit = &FindObjectsInit;
  functions->C_Login = &Login;
}
}  // namespace fault

// Eight threads generating keys at once: with object creation serialised (the default for
// SoftHSM2) every generation succeeds; without, the module's race shows.
TEST_F(HsmTest, ConcurrentKeyGenerationIsSerialisedForSoftHsm2) {
  auto generate_all = [&](std::string_view prefix) {
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 2; ++i) {
          const std::string id = absl::StrCat(Av(prefix), "-", t, "-", i);
          if (!hsm_->GenerateKeyPair(id, KeyType::kEcP256).ok()) ++failures;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    return failures.load();
  };
  ASSERT_TRUE(IsSoftHsm2(token_->config().module_path));
  for (int round = 0; round < 2; ++round) {
    OpenHsm(8, &fault::Patch);  // serialize_object_creation unset: on for SoftHSM2.
    EXPECT_EQ(generate_all(absl::StrCat("serial", round)), 0);
    EXPECT_EQ(fault::generate_overlaps, 0);
  }

  hsm_.reset();
  Pkcs11Config unserialised = token_->config(8);
  unserialised.serialize_object_creation = false;
  auto racy = NewPkcs11HsmForTesting(unserialised, &fault::Patch);
  ASSERT_TRUE(racy.ok()) << racy.status();
  hsm_ = std::move(*racy);
  EXPECT_GT(generate_all("racy"), 0) << "the patched module did not see overlapping calls";
  EXPECT_GT(fault::generate_overlaps, 0);
}

TEST_F(HsmTest, SigningDoesNotSearchObjectsOnceKeyIsKnown) {
  OpenHsm(2, &fault::Patch);
  const PublicKey key = Generate("k", KeyType::kEcP256);
  const int after_generate = fault::find_calls;
  for (int i = 0; i < 5; ++i) SignAndVerify("k", key, {});
  EXPECT_EQ(fault::find_calls, after_generate);

  OpenHsm(2, &fault::Patch);  // Fresh cache: the first use looks the key up once.
  for (int i = 0; i < 5; ++i) SignAndVerify("k", key, {});
  EXPECT_EQ(fault::find_calls, 2);  // Private and public object.
}

TEST_F(HsmTest, ConcurrentSigningThroughSmallPoolAllVerifies) {
  OpenHsm(2, &fault::Patch);
  const PublicKey ec = Generate("ec", KeyType::kEcP256);
  const PublicKey rsa = Generate("rsa", KeyType::kRsa2048);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20;
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const bool use_rsa = (t + i) % 4 == 0;
        const SignParams params{use_rsa ? SignScheme::kRsaPss : SignScheme::kEcdsa};
        const std::string digest = Digest(params.hash, absl::StrCat("thread ", t, " doc ", i));
        absl::StatusOr<std::string> signature =
            hsm_->SignDigest(use_rsa ? "rsa" : "ec", params, digest);
        if (!signature.ok()) {
          ADD_FAILURE() << signature.status();
          continue;
        }
        if (Verifies(use_rsa ? rsa : ec, params, digest, *signature)) ++verified;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(verified, kThreads * kPerThread);
  EXPECT_LE(fault::max_sign_in_flight, 2);  // The pool bounds concurrent HSM operations.
  EXPECT_EQ(hsm_->sessions_reopened(), 0);
}

// SoftHSM2 computes on this process's CPUs: however many sessions and callers there are, no more
// than two threads a CPU sign inside it at once (more only contend for its locks and caches).
TEST_F(HsmTest, SoftHsm2SigningIsBoundedByTheCpuCount) {
  ASSERT_TRUE(IsSoftHsm2(token_->config().module_path));
  const int bound = 2 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int callers = bound + 4;
  OpenHsm(callers, &fault::Patch);  // A session for every caller: only the bound can hold them.
  const PublicKey key = Generate("ec", KeyType::kEcP256);
  fault::sign_delay_ms = 2;  // Every caller is inside C_Sign long enough to meet the others.
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&, t] { SignAsCaller(key, t, 5, verified); });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(verified, callers * 5);
  EXPECT_LE(fault::max_sign_in_flight, bound);
  EXPECT_GE(fault::max_sign_in_flight, 1);
}

// Within the bound, SoftHSM2's signing threads are spread over the CPUs and held there while they
// sign (at most two a CPU with the bound at two a CPU), so that a CPU whose signing thread waits
// on SoftHSM2's locks has another to run; each caller gets its own CPU affinity back.
TEST_F(HsmTest, SoftHsm2SigningThreadsAreSpreadOverTheCpus) {
  ASSERT_TRUE(IsSoftHsm2(token_->config().module_path));
  cpu_set_t process_cpus;
  CPU_ZERO(&process_cpus);
  ASSERT_EQ(sched_getaffinity(0, sizeof(process_cpus), &process_cpus), 0);
  const int cpus = CPU_COUNT(&process_cpus);
  if (cpus < 2) GTEST_SKIP() << "one CPU: nothing to spread";
  const int bound = 2 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int callers = bound + 4;
  OpenHsm(callers, &fault::Patch);
  const PublicKey key = Generate("ec", KeyType::kEcP256);
  fault::sign_delay_ms = 2;
  std::atomic<int> verified{0};
  std::atomic<int> affinity_changed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&, t] {
      cpu_set_t before, after;
      CPU_ZERO(&before);
      CPU_ZERO(&after);
      sched_getaffinity(0, sizeof(before), &before);
      SignAsCaller(key, t, Pkcs11Module::kDigestsHeldToCpu, verified);
      sched_getaffinity(0, sizeof(after), &after);
      if (!CPU_EQUAL(&before, &after)) ++affinity_changed;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(verified, callers * static_cast<int>(Pkcs11Module::kDigestsHeldToCpu));
  EXPECT_EQ(affinity_changed, 0);
  EXPECT_EQ(fault::signs_not_held_to_one_cpu, 0);
  int cpus_used = 0;
  for (int c = 0; c < 64; ++c) {
    EXPECT_LE(fault::max_sign_in_flight_on_cpu[c], (bound + cpus - 1) / cpus) << "CPU " << c;
    if (fault::max_sign_in_flight_on_cpu[c] > 0) ++cpus_used;
  }
  EXPECT_EQ(cpus_used, cpus);

  // A shorter batch signs where the thread runs: moving it would cost more than it saves.
  fault::sign_delay_ms = 0;
  SignAndVerify("ec", key, {});
  EXPECT_EQ(fault::signs_not_held_to_one_cpu, 1);
}

class LostSessionTest : public HsmTest, public ::testing::WithParamInterface<int> {};

TEST_P(LostSessionTest, InjectedSessionHandleInvalidIsRetriedOnAFreshSession) {
  const int pool_size = GetParam();
  OpenHsm(pool_size, &fault::Patch);
  const PublicKey key = Generate("k", KeyType::kEcP256);
  const int logins_ok_before = fault::logins_ok;
  fault::sign_failures_left = 1;
  SignAndVerify("k", key, {});
  EXPECT_EQ(fault::sign_calls, 2);
  EXPECT_EQ(hsm_->sessions_reopened(), 1);
  // Closing the only session logs the application out, so the pool must log in again; with
  // other sessions open the login survives.
  EXPECT_EQ(fault::logins_ok - logins_ok_before, pool_size == 1 ? 1 : 0);
  for (int i = 0; i < 3; ++i) SignAndVerify("k", key, {});
  EXPECT_EQ(hsm_->sessions_reopened(), 1);
}

INSTANTIATE_TEST_SUITE_P(PoolSizes, LostSessionTest, ::testing::Values(1, 2));

TEST_F(HsmTest, SessionThatKeepsFailingIsRetriedOnlyOnce) {
  OpenHsm(2, &fault::Patch);
  const PublicKey key = Generate("k", KeyType::kEcP256);
  fault::sign_failures_left = 1000;
  absl::StatusOr<std::string> signature = hsm_->SignDigest("k", {}, std::string(32, 'd'));
  EXPECT_EQ(signature.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(signature.status().message(),
              AllOf(HasSubstr("\"k\""), HasSubstr("CKR_SESSION_HANDLE_INVALID")));
  EXPECT_EQ(fault::sign_calls, 2);
  fault::sign_failures_left = 0;
  SignAndVerify("k", key, {});
}

TEST_F(HsmTest, RecoversWhenTheModuleClosesEverySession) {
  OpenHsm(2, &fault::Patch);
  const PublicKey key = Generate("k", KeyType::kEcP256);
  const int logins_ok_before = fault::logins_ok;
  fault::close_all_on_next_sign_init = true;
  SignAndVerify("k", key, {});
  EXPECT_EQ(hsm_->sessions_reopened(), 1);
  EXPECT_EQ(fault::logins_ok - logins_ok_before, 1);  // All sessions gone: logged out.
  // Hold the repaired session so the next signature must use the other, dead one.
  absl::Status status =
      hsm_->RunWithSessionForTesting([&](const CK_FUNCTION_LIST&, CK_SESSION_HANDLE) {
        SignAndVerify("k", key, {}, "second");
        return absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(hsm_->sessions_reopened(), 2);
  SignAndVerify("k", key, {}, "third");
}

TEST_F(HsmTest, WrongPinNamesTokenAndErrorButNotThePin) {
  hsm_.reset();
  absl::StatusOr<SecretString> real_pin = ReadSecretFile(token_->pin_file());
  ASSERT_TRUE(real_pin.ok());
  const std::string wrong_pin = "wrong-pin-4711";
  const std::string wrong_pin_file = token_->dir() + "/wrong.pin";
  std::ofstream(wrong_pin_file) << wrong_pin << "\n";
  Pkcs11Config config = token_->config();
  config.pin_file = wrong_pin_file;
  absl::StatusOr<std::unique_ptr<Hsm>> hsm = NewPkcs11Hsm(config);
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(
      hsm.status().message(),
      AllOf(HasSubstr("\"qsign-test\""), HasSubstr("CKR_PIN_INCORRECT"), HasSubstr(wrong_pin_file),
            Not(HasSubstr(wrong_pin)), Not(HasSubstr(std::string(real_pin->value())))));
}

TEST_F(HsmTest, MissingTokenIsNotFoundNamingTheLabel) {
  hsm_.reset();
  Pkcs11Config config = token_->config();
  config.token_label = "no-such-token";
  absl::StatusOr<std::unique_ptr<Hsm>> hsm = NewPkcs11Hsm(config);
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(hsm.status().message(),
              AllOf(HasSubstr("\"no-such-token\""), HasSubstr("\"qsign-test\"")));
}

TEST_F(HsmTest, BadConfigIsRejected) {
  hsm_.reset();
  Pkcs11Config config = token_->config(0);
  EXPECT_EQ(NewPkcs11Hsm(config).status().code(), absl::StatusCode::kInvalidArgument);
  config = token_->config();
  config.pin_file = token_->dir() + "/missing.pin";
  absl::StatusOr<std::unique_ptr<Hsm>> hsm = NewPkcs11Hsm(config);
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(hsm.status().message(), HasSubstr("missing.pin"));
  config = token_->config();
  config.module_path = token_->dir() + "/no-module.so";
  EXPECT_EQ(NewPkcs11Hsm(config).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HsmTest, SecondHsmOnSameModuleIsRefused) {
  absl::StatusOr<std::unique_ptr<Hsm>> second = NewPkcs11Hsm(token_->config());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  // The refused one must not have finalised the module under the first.
  SignAndVerify("k", Generate("k", KeyType::kEcP256), {});
}

TEST_F(HsmTest, BareSignRateWorksBesideAndWithoutHsm) {
  Generate("ec", KeyType::kEcP256);
  absl::StatusOr<double> rate =
      BarePkcs11SignRate(token_->config(), "ec", 2, absl::Milliseconds(200));
  ASSERT_TRUE(rate.ok()) << rate.status();
  EXPECT_GT(*rate, 0);
  SignAndVerify("ec", *hsm_->GetPublicKey("ec"), {});  // Still logged in and initialised.

  hsm_.reset();
  rate = BarePkcs11SignRate(token_->config(), "ec", 1, absl::Milliseconds(100));
  ASSERT_TRUE(rate.ok()) << rate.status();
  EXPECT_GT(*rate, 0);
  OpenHsm(2);  // Bare finalised what it initialised.
  EXPECT_EQ(BarePkcs11SignRate(token_->config(), "none", 1, absl::Milliseconds(10)).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qsign::hsm
