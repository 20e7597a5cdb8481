#include "hsm/pkcs11_hsm.h"

#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "hsm/key_encoding.h"
#include "hsm/pkcs11_status.h"

namespace qsign::hsm {
namespace {

constexpr size_t kMaxKeyIdLength = 255;
constexpr int kMaxSessionPoolSize = 1024;

absl::Status ValidateKeyId(std::string_view key_id) {
  if (key_id.empty()) return absl::InvalidArgumentError("key_id is empty");
  if (key_id.size() > kMaxKeyIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("key_id is ", key_id.size(), " bytes long; at most ", kMaxKeyIdLength));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const Pkcs11Config& config) {
  if (config.module_path.empty()) {
    return absl::InvalidArgumentError("Pkcs11Config.module_path is empty");
  }
  if (config.token_label.empty() || config.token_label.size() > 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Pkcs11Config.token_label \"", config.token_label, "\" must be 1 to 32 bytes long"));
  }
  if (config.pin_file.empty()) return absl::InvalidArgumentError("Pkcs11Config.pin_file is empty");
  if (config.session_pool_size < 1 || config.session_pool_size > kMaxSessionPoolSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("Pkcs11Config.session_pool_size is ", config.session_pool_size,
                     "; it must be between 1 and ", kMaxSessionPoolSize));
  }
  return absl::OkStatus();
}

std::string_view SchemeName(SignScheme scheme) {
  switch (scheme) {
    case SignScheme::kEcdsa:
      return "ECDSA";
    case SignScheme::kRsaPkcs1:
      return "RSA_PKCS1";
    case SignScheme::kRsaPss:
      return "RSA_PSS";
  }
  return "UNKNOWN";
}

CK_MECHANISM_TYPE HashMechanism(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return CKM_SHA256;
    case HashAlgorithm::kSha384:
      return CKM_SHA384;
    case HashAlgorithm::kSha512:
      return CKM_SHA512;
  }
  return CKM_SHA256;
}

CK_RSA_PKCS_MGF_TYPE Mgf1(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha256:
      return CKG_MGF1_SHA256;
    case HashAlgorithm::kSha384:
      return CKG_MGF1_SHA384;
    case HashAlgorithm::kSha512:
      return CKG_MGF1_SHA512;
  }
  return CKG_MGF1_SHA256;
}

// Errors straight from the module get the operation and key in front; our own messages name
// them already.
absl::Status WithContext(const absl::Status& status, std::string_view context) {
  if (status.ok() || !CkrFromStatus(status).has_value()) return status;
  return AnnotateStatus(status, context);
}

// Handles for the sign path, made once: recording is then a few atomic adds, no lock.
class SignMetrics {
 public:
  static const SignMetrics& Get() {
    static const SignMetrics* const instance = new SignMetrics();
    return *instance;
  }
  // nullptr for a scheme that does not fit the key type (refused before signing).
  metrics::Histogram* latency(KeyType type, SignScheme scheme) const {
    return latency_[static_cast<size_t>(type)][static_cast<size_t>(scheme)];
  }
  metrics::Counter* errors(absl::StatusCode code) const {
    const auto i = static_cast<size_t>(code);
    return errors_[i < errors_.size() ? i : static_cast<size_t>(absl::StatusCode::kUnknown)];
  }

 private:
  static constexpr KeyType kTypes[] = {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048,
                                       KeyType::kRsa3072, KeyType::kRsa4096};
  static constexpr SignScheme kSchemes[] = {SignScheme::kEcdsa, SignScheme::kRsaPkcs1,
                                            SignScheme::kRsaPss};

  SignMetrics() {
    metrics::Registry& r = metrics::Registry::Global();
    for (KeyType type : kTypes) {
      for (SignScheme scheme : kSchemes) {
        if (IsEc(type) != (scheme == SignScheme::kEcdsa)) continue;
        latency_[static_cast<size_t>(type)][static_cast<size_t>(scheme)] = r.GetHistogram(
            "qsign_hsm_sign_duration_seconds",
            "Time the HSM took for one signature (C_SignInit and C_Sign), by key type and scheme.",
            {{"key_type", std::string(KeyTypeName(type))},
             {"scheme", std::string(SchemeName(scheme))}});
      }
    }
    for (size_t i = 0; i < errors_.size(); ++i) {
      errors_[i] = r.GetCounter(
          "qsign_hsm_sign_errors_total", "HSM SignDigests calls that failed, by status code.",
          {{"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(i))}});
    }
  }

  std::array<std::array<metrics::Histogram*, std::size(kSchemes)>, std::size(kTypes)> latency_{};
  std::array<metrics::Counter*, 17> errors_{};  // Indexed by absl::StatusCode (0..16).
};

// SoftHSM2 signs on this process's CPUs: many more threads inside it than CPUs only contend for
// its locks and caches; two a CPU keep one ready to run whenever the other blocks or waits to be
// scheduled after a hand-off, so no CPU idles (docs/PERFORMANCE.md, "Signer at batch 100: the
// margin"). Any other module (a network HSM) is bounded by its sessions alone.
int DefaultMaxConcurrentSigning(std::string_view module_path) {
  if (!IsSoftHsm2(module_path)) return 0;
  return 2 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// The CPUs this process may run on, for a module that signs on them (SoftHSM2), when there is
// more than one; else none (nothing to balance).
std::vector<int> DefaultSigningCpus(std::string_view module_path) {
  if (!IsSoftHsm2(module_path)) return {};
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return {};
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) return {};
  return cpus;
}

// What qsign sets on a module it has just loaded, from its path: SoftHSM2's object creation
// serialized unless the config says otherwise, and the bound and CPUs of its signing threads.
void ConfigureModule(Pkcs11Module& module, std::string_view module_path,
                     std::optional<bool> serialize_object_creation) {
  module.set_serialize_object_creation(
      serialize_object_creation.value_or(IsSoftHsm2(module_path)));
  module.set_max_concurrent_signing(DefaultMaxConcurrentSigning(module_path));
  module.set_signing_cpus(DefaultSigningCpus(module_path));
}

size_t SignatureLength(KeyType type) {
  if (IsEc(type)) return 2 * static_cast<size_t>((KeyBits(type) + 7) / 8);
  return static_cast<size_t>(KeyBits(type) / 8);
}

}  // namespace

bool IsSoftHsm2(std::string_view module_path) {
  const size_t slash = module_path.rfind('/');
  std::string_view file =
      slash == std::string_view::npos ? module_path : module_path.substr(slash + 1);
  return file.find("softhsm") != std::string_view::npos;
}

absl::StatusOr<std::unique_ptr<Hsm>> NewPkcs11Hsm(const Pkcs11Config& config) {
  absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> hsm = Pkcs11Hsm::New(config);
  if (!hsm.ok()) return hsm.status();
  return std::unique_ptr<Hsm>(std::move(*hsm));
}

absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> NewPkcs11HsmForTesting(const Pkcs11Config& config,
                                                                  FunctionListPatch patch) {
  return Pkcs11Hsm::New(config, std::move(patch));
}

HsmTokens::~HsmTokens() {
  // In reverse: the token that loaded the module is the last to let it go.
  while (!tokens_.empty()) tokens_.pop_back();
}

Hsm* HsmTokens::Get(std::string_view role) const {
  for (const auto& [name, hsm] : tokens_) {
    if (name == role) return hsm.get();
  }
  return nullptr;
}

std::vector<std::string> HsmTokens::roles() const {
  std::vector<std::string> roles;
  for (const auto& token : tokens_) roles.push_back(token.first);
  return roles;
}

void HsmTokens::Add(std::string role, std::unique_ptr<Hsm> hsm) {
  tokens_.emplace_back(std::move(role), std::move(hsm));
}

absl::StatusOr<std::unique_ptr<HsmTokens>> OpenPkcs11Tokens(const Pkcs11TokensConfig& config) {
  if (config.tokens.empty()) return absl::InvalidArgumentError("Pkcs11TokensConfig: no tokens");
  for (size_t i = 0; i < config.tokens.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const Pkcs11TokenConfig& a = config.tokens[j];
      const Pkcs11TokenConfig& b = config.tokens[i];
      if (a.role == b.role || a.token_label == b.token_label) {
        return absl::InvalidArgumentError(
            absl::StrCat("token \"", b.token_label, "\" (role ", b.role, ") and token \"",
                         a.token_label, "\" (role ", a.role, "): every role its own token"));
      }
    }
  }
  absl::StatusOr<std::unique_ptr<Pkcs11Module>> loaded =
      Pkcs11Module::Load(config.module_path, Pkcs11Module::InitMode::kExclusive);
  if (!loaded.ok()) return loaded.status();
  std::shared_ptr<Pkcs11Module> module = *std::move(loaded);
  ConfigureModule(*module, config.module_path, config.serialize_object_creation);
  auto tokens = std::make_unique<HsmTokens>();
  for (const Pkcs11TokenConfig& token : config.tokens) {
    absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> hsm = Pkcs11Hsm::OnModule(module, token);
    if (!hsm.ok()) {
      return AnnotateStatus(hsm.status(), absl::StrCat("HSM token of role ", token.role));
    }
    tokens->Add(token.role, *std::move(hsm));
  }
  return tokens;
}

Pkcs11Hsm::Pkcs11Hsm(std::string token_label, SecretString pin,
                     std::shared_ptr<Pkcs11Module> module)
    : token_label_(std::move(token_label)), pin_(std::move(pin)), module_(std::move(module)) {}

Pkcs11Hsm::~Pkcs11Hsm() {
  pool_.reset();  // Sessions first, then (the last token of the module) C_Finalize and dlclose.
  module_.reset();
}

absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> Pkcs11Hsm::New(const Pkcs11Config& config,
                                                          const FunctionListPatch& patch) {
  absl::Status status = ValidateConfig(config);
  if (!status.ok()) return status;
  absl::StatusOr<std::unique_ptr<Pkcs11Module>> module =
      Pkcs11Module::Load(config.module_path, Pkcs11Module::InitMode::kExclusive, patch);
  if (!module.ok()) return module.status();
  ConfigureModule(**module, config.module_path, config.serialize_object_creation);
  return OnModule(*std::move(module), {.token_label = config.token_label,
                                       .pin_file = config.pin_file,
                                       .session_pool_size = config.session_pool_size});
}

absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> Pkcs11Hsm::OnModule(std::shared_ptr<Pkcs11Module> module,
                                                               const Pkcs11TokenConfig& token) {
  absl::Status status = ValidateConfig({.module_path = module->path(),
                                        .token_label = token.token_label,
                                        .pin_file = token.pin_file,
                                        .session_pool_size = token.session_pool_size});
  if (!status.ok()) return status;
  absl::StatusOr<SecretString> pin = ReadSecretFile(token.pin_file);
  if (!pin.ok()) return AnnotateStatus(pin.status(), "reading the HSM user PIN");
  absl::StatusOr<CK_SLOT_ID> slot = module->FindSlotByLabel(token.token_label);
  if (!slot.ok()) return slot.status();

  std::unique_ptr<Pkcs11Hsm> hsm(
      new Pkcs11Hsm(token.token_label, std::move(*pin), std::move(module)));
  absl::StatusOr<std::unique_ptr<SessionPool>> pool = SessionPool::New(
      &hsm->fns(), *slot,
      absl::StrCat("token \"", token.token_label, "\" with the PIN from ", token.pin_file),
      &hsm->pin_, token.session_pool_size, token.token_label);
  if (!pool.ok()) return pool.status();
  hsm->pool_ = std::move(*pool);
  SignMetrics::Get();  // Every series at zero from the start, not from the first signature.
  return hsm;
}

void Pkcs11Hsm::ForgetKey(std::string_view key_id) {
  absl::MutexLock lock(&keys_mu_);
  keys_.erase(Av(key_id));
}

absl::StatusOr<Pkcs11Hsm::KeyInfo> Pkcs11Hsm::ResolveKey(CK_SESSION_HANDLE session,
                                                         std::string_view key_id) {
  {
    absl::ReaderMutexLock lock(&keys_mu_);
    auto it = keys_.find(Av(key_id));
    if (it != keys_.end()) return it->second;
  }
  absl::StatusOr<KeyInfo> key = FindKey(session, key_id);
  if (!key.ok()) return key.status();
  absl::MutexLock lock(&keys_mu_);
  keys_.insert_or_assign(std::string(key_id), *key);
  return key;
}

absl::StatusOr<Pkcs11Hsm::KeyInfo> Pkcs11Hsm::FindKey(CK_SESSION_HANDLE session,
                                                      std::string_view key_id) {
  std::string id(key_id);
  CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE match[] = {
      {CKA_CLASS, &object_class, sizeof(object_class)},
      {CKA_ID, id.data(), id.size()},
  };
  absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> found = FindObjects(fns(), session, match, 2);
  if (!found.ok()) return found.status();
  if (found->empty()) {
    return absl::NotFoundError(
        absl::StrCat("no key \"", Av(key_id), "\" in token \"", token_label_, "\""));
  }
  if (found->size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("token \"", token_label_, "\" holds several private keys with CKA_ID \"",
                     Av(key_id), "\""));
  }
  KeyInfo key;
  key.private_key = found->front();

  absl::StatusOr<CK_ULONG> key_type =
      GetAttributeUlong(fns(), session, key.private_key, CKA_KEY_TYPE);
  if (!key_type.ok()) return key_type.status();
  if (*key_type == CKK_EC) {
    absl::StatusOr<std::string> params =
        GetAttributeBytes(fns(), session, key.private_key, CKA_EC_PARAMS);
    if (!params.ok()) return params.status();
    absl::StatusOr<KeyType> type = EcKeyTypeFromParams(*params);
    if (!type.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("key \"", Av(key_id), "\": ", type.status().message()));
    }
    key.type = *type;
  } else if (*key_type == CKK_RSA) {
    absl::StatusOr<std::string> modulus =
        GetAttributeBytes(fns(), session, key.private_key, CKA_MODULUS);
    if (!modulus.ok()) return modulus.status();
    std::string_view n = *modulus;
    while (!n.empty() && n.front() == '\0') n.remove_prefix(1);
    const int bits = static_cast<int>(n.size() * 8);
    if (bits == 2048) {
      key.type = KeyType::kRsa2048;
    } else if (bits == 3072) {
      key.type = KeyType::kRsa3072;
    } else if (bits == 4096) {
      key.type = KeyType::kRsa4096;
    } else {
      return absl::FailedPreconditionError(absl::StrCat("key \"", Av(key_id), "\" is RSA-", bits,
                                                        "; qsign uses 2048, 3072 or 4096"));
    }
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", Av(key_id), "\" has CKA_KEY_TYPE 0x", absl::Hex(*key_type),
                     "; qsign uses EC and RSA keys"));
  }

  object_class = CKO_PUBLIC_KEY;
  found = FindObjects(fns(), session, match, 1);
  if (!found.ok()) return found.status();
  if (!found->empty()) key.public_key = found->front();
  return key;
}

absl::Status Pkcs11Hsm::WithKey(CK_SESSION_HANDLE session, std::string_view key_id,
                                absl::FunctionRef<absl::Status(const KeyInfo&)> fn) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<KeyInfo> key = ResolveKey(session, key_id);
    if (!key.ok()) return key.status();
    absl::Status status = fn(*key);
    std::optional<CK_RV> rv = CkrFromStatus(status);
    const bool stale_handle =
        rv.has_value() && (*rv == CKR_KEY_HANDLE_INVALID || *rv == CKR_OBJECT_HANDLE_INVALID);
    if (!stale_handle || attempt > 0) return status;
    // Another process (or a token reset) may have removed or renumbered the objects.
    ForgetKey(key_id);
  }
}

absl::StatusOr<std::string> Pkcs11Hsm::PublicKeySpki(CK_SESSION_HANDLE session,
                                                     const KeyInfo& key) {
  if (key.public_key == CK_INVALID_HANDLE) {
    return absl::NotFoundError(
        absl::StrCat("the public half of the key is missing from token \"", token_label_, "\""));
  }
  if (IsEc(key.type)) {
    absl::StatusOr<std::string> point =
        GetAttributeBytes(fns(), session, key.public_key, CKA_EC_POINT);
    if (!point.ok()) return point.status();
    absl::StatusOr<std::string> uncompressed = UnwrapEcPoint(key.type, *point);
    if (!uncompressed.ok()) return uncompressed.status();
    return EcSpkiDer(key.type, *uncompressed);
  }
  absl::StatusOr<std::string> modulus =
      GetAttributeBytes(fns(), session, key.public_key, CKA_MODULUS);
  if (!modulus.ok()) return modulus.status();
  absl::StatusOr<std::string> exponent =
      GetAttributeBytes(fns(), session, key.public_key, CKA_PUBLIC_EXPONENT);
  if (!exponent.ok()) return exponent.status();
  return RsaSpkiDer(*modulus, *exponent);
}

absl::StatusOr<PublicKey> Pkcs11Hsm::GenerateKeyPair(std::string_view key_id, KeyType type) {
  absl::Status status = ValidateKeyId(key_id);
  if (!status.ok()) return status;
  const std::string context =
      absl::StrCat("generating ", Av(KeyTypeName(type)), " key \"", Av(key_id), "\"");
  {
    absl::MutexLock lock(&keys_mu_);
    if (!generating_.insert(std::string(key_id)).second) {
      return absl::AlreadyExistsError(
          absl::StrCat(context, ": another generation of this id is in progress"));
    }
  }
  absl::Cleanup done = [this, key_id] {
    absl::MutexLock lock(&keys_mu_);
    generating_.erase(Av(key_id));
  };

  std::string id(key_id);
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY;
  CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  CK_KEY_TYPE key_type = IsEc(type) ? CKK_EC : CKK_RSA;
  std::string ec_params(IsEc(type) ? EcParamsDer(type) : std::string_view());
  CK_ULONG modulus_bits = static_cast<CK_ULONG>(KeyBits(type));
  CK_BYTE public_exponent[] = {0x01, 0x00, 0x01};  // 65537

  std::vector<CK_ATTRIBUTE> public_template = {
      {CKA_CLASS, &public_class, sizeof(public_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_VERIFY, &yes, sizeof(yes)},
      {CKA_ENCRYPT, &no, sizeof(no)},
      {CKA_WRAP, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, id.data(), id.size()},
  };
  if (IsEc(type)) {
    public_template.push_back({CKA_EC_PARAMS, ec_params.data(), ec_params.size()});
  } else {
    public_template.push_back({CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)});
    public_template.push_back({CKA_PUBLIC_EXPONENT, public_exponent, sizeof(public_exponent)});
  }
  CK_ATTRIBUTE private_template[] = {
      {CKA_CLASS, &private_class, sizeof(private_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},
      {CKA_SIGN_RECOVER, &no, sizeof(no)},
      {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_UNWRAP, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, id.data(), id.size()},
  };
  CK_MECHANISM mechanism = {IsEc(type) ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr,
                            0};

  PublicKey result{type, ""};
  KeyInfo key;
  key.type = type;
  bool generated = false;  // A retry after a lost session must not generate (or refuse) again.
  status = pool_->Run([&](CK_SESSION_HANDLE session) -> absl::Status {
    if (!generated) {
      absl::MutexLockMaybe serialized(module_->object_creation_mutex());
      // Any object with this id, public or private, means the id is taken.
      CK_ATTRIBUTE match[] = {{CKA_ID, id.data(), id.size()}};
      absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> existing =
          FindObjects(fns(), session, match, 1);
      if (!existing.ok()) return existing.status();
      if (!existing->empty()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "a key with id \"", Av(key_id), "\" already exists in token \"", token_label_, "\""));
      }
      absl::Status generate_status = CkrToStatus(
          "C_GenerateKeyPair",
          fns().C_GenerateKeyPair(session, &mechanism, public_template.data(),
                                  public_template.size(), private_template,
                                  std::size(private_template), &key.public_key, &key.private_key));
      if (!generate_status.ok()) return generate_status;
      generated = true;
      absl::MutexLock lock(&keys_mu_);
      keys_.insert_or_assign(id, key);
    }
    absl::StatusOr<std::string> spki = PublicKeySpki(session, key);
    if (!spki.ok()) return spki.status();
    result.spki_der = std::move(*spki);
    return absl::OkStatus();
  });
  if (!status.ok()) return WithContext(status, context);
  return result;
}

absl::StatusOr<PublicKey> Pkcs11Hsm::GetPublicKey(std::string_view key_id) {
  absl::Status status = ValidateKeyId(key_id);
  if (!status.ok()) return status;
  PublicKey result{KeyType::kEcP256, ""};
  status = pool_->Run([&](CK_SESSION_HANDLE session) {
    return WithKey(session, key_id, [&](const KeyInfo& key) -> absl::Status {
      absl::StatusOr<std::string> spki = PublicKeySpki(session, key);
      if (!spki.ok()) return spki.status();
      result.type = key.type;
      result.spki_der = std::move(*spki);
      return absl::OkStatus();
    });
  });
  if (!status.ok()) {
    return WithContext(status, absl::StrCat("reading public key \"", Av(key_id), "\""));
  }
  return result;
}

absl::StatusOr<std::vector<std::string>> Pkcs11Hsm::ListKeyIds(std::string_view prefix) {
  // A token holds a few keys per user: far fewer than this.
  constexpr size_t kMaxObjects = 65536;
  std::set<std::string> ids;
  absl::Status status = pool_->Run([&](CK_SESSION_HANDLE session) -> absl::Status {
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      CK_ATTRIBUTE match[] = {{CKA_CLASS, &object_class, sizeof(object_class)}};
      absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> found =
          FindObjects(fns(), session, match, kMaxObjects);
      if (!found.ok()) return found.status();
      for (CK_OBJECT_HANDLE object : *found) {
        absl::StatusOr<std::string> id = GetAttributeBytes(fns(), session, object, CKA_ID);
        if (!id.ok()) return id.status();
        if (std::string_view(*id).starts_with(prefix)) ids.insert(*std::move(id));
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return WithContext(status, absl::StrCat("listing the keys of token \"", token_label_, "\""));
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

absl::Status Pkcs11Hsm::DestroyKeyPair(std::string_view key_id) {
  absl::Status status = ValidateKeyId(key_id);
  if (!status.ok()) return status;
  std::string id(key_id);
  ForgetKey(key_id);
  status = pool_->Run([&](CK_SESSION_HANDLE session) -> absl::Status {
    absl::MutexLockMaybe serialized(module_->object_creation_mutex());
    int destroyed = 0;
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      CK_ATTRIBUTE match[] = {
          {CKA_CLASS, &object_class, sizeof(object_class)},
          {CKA_ID, id.data(), id.size()},
      };
      absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> found = FindObjects(fns(), session, match, 8);
      if (!found.ok()) return found.status();
      for (CK_OBJECT_HANDLE object : *found) {
        absl::Status s = CkrToStatus("C_DestroyObject", fns().C_DestroyObject(session, object));
        if (!s.ok()) return s;
        ++destroyed;
      }
    }
    if (destroyed == 0) {
      return absl::NotFoundError(
          absl::StrCat("no key \"", Av(key_id), "\" in token \"", token_label_, "\""));
    }
    return absl::OkStatus();
  });
  // A signer racing with us may have cached the handles again in between.
  ForgetKey(key_id);
  return WithContext(status, absl::StrCat("destroying key \"", Av(key_id), "\""));
}

absl::Status Pkcs11Hsm::RenameKeyPair(std::string_view from_id, std::string_view to_id) {
  absl::Status status = ValidateKeyId(from_id);
  if (status.ok()) status = ValidateKeyId(to_id);
  if (!status.ok()) return status;
  std::string from(from_id);
  std::string to(to_id);
  ForgetKey(from_id);
  ForgetKey(to_id);
  status = pool_->Run([&](CK_SESSION_HANDLE session) -> absl::Status {
    // Under the object lock, as creation: a generation of `to_id` cannot slip in between.
    absl::MutexLockMaybe serialized(module_->object_creation_mutex());
    CK_ATTRIBUTE taken[] = {{CKA_ID, to.data(), to.size()}};
    absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> existing = FindObjects(fns(), session, taken, 1);
    if (!existing.ok()) return existing.status();
    if (!existing->empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a key with id \"", Av(to_id), "\" already exists in token \"", token_label_, "\""));
    }
    CK_ATTRIBUTE match[] = {{CKA_ID, from.data(), from.size()}};
    absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> found = FindObjects(fns(), session, match, 8);
    if (!found.ok()) return found.status();
    if (found->empty()) {
      return absl::NotFoundError(
          absl::StrCat("no key \"", Av(from_id), "\" in token \"", token_label_, "\""));
    }
    CK_ATTRIBUTE rename[] = {{CKA_ID, to.data(), to.size()}, {CKA_LABEL, to.data(), to.size()}};
    for (CK_OBJECT_HANDLE object : *found) {
      absl::Status s =
          CkrToStatus("C_SetAttributeValue",
                      fns().C_SetAttributeValue(session, object, rename, std::size(rename)));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  });
  ForgetKey(from_id);
  ForgetKey(to_id);
  return WithContext(status,
                     absl::StrCat("renaming key \"", Av(from_id), "\" to \"", Av(to_id), "\""));
}

absl::Status Pkcs11Hsm::SignBatch(CK_SESSION_HANDLE session, const KeyInfo& key,
                                  const SignParams& params, std::span<const std::string> digests,
                                  std::vector<std::string>* out) {
  CK_RSA_PKCS_PSS_PARAMS pss{};
  CK_MECHANISM mechanism{};
  switch (params.scheme) {
    case SignScheme::kEcdsa:
      mechanism = {CKM_ECDSA, nullptr, 0};
      break;
    case SignScheme::kRsaPkcs1:
      mechanism = {CKM_RSA_PKCS, nullptr, 0};
      break;
    case SignScheme::kRsaPss:
      pss.hashAlg = HashMechanism(params.hash);
      pss.mgf = Mgf1(params.hash);
      pss.sLen = DigestLength(params.hash);
      mechanism = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
      break;
  }
  std::string data;
  std::string signature;
  metrics::Histogram* const latency = SignMetrics::Get().latency(key.type, params.scheme);
  for (size_t i = out->size(); i < digests.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    // The module takes non-const input, so it gets a copy; for PKCS#1 v1.5 the DigestInfo.
    data = params.scheme == SignScheme::kRsaPkcs1 ? DigestInfoDer(params.hash, digests[i])
                                                  : digests[i];
    absl::Status status =
        CkrToStatus("C_SignInit", fns().C_SignInit(session, &mechanism, key.private_key));
    if (!status.ok()) return status;
    signature.resize(SignatureLength(key.type));
    CK_ULONG length = signature.size();
    auto* data_bytes = reinterpret_cast<CK_BYTE*>(data.data());
    CK_RV rv = fns().C_Sign(session, data_bytes, data.size(),
                            reinterpret_cast<CK_BYTE*>(signature.data()), &length);
    if (rv == CKR_BUFFER_TOO_SMALL) {  // The operation stays active; finish it.
      signature.resize(length);
      rv = fns().C_Sign(session, data_bytes, data.size(),
                        reinterpret_cast<CK_BYTE*>(signature.data()), &length);
    }
    status = CkrToStatus("C_Sign", rv);
    if (!status.ok()) return status;
    if (latency != nullptr) {
      latency->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    signature.resize(length);
    if (params.scheme == SignScheme::kEcdsa && params.ecdsa_der) {
      absl::StatusOr<std::string> der = EcdsaRawToDer(signature);
      if (!der.ok()) return der.status();
      out->push_back(std::move(*der));
    } else {
      out->push_back(signature);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Pkcs11Hsm::SignDigests(
    std::string_view key_id, const SignParams& params, std::span<const std::string> digests) {
  absl::StatusOr<std::vector<std::string>> signatures =
      SignDigestsUncounted(key_id, params, digests);
  if (!signatures.ok()) SignMetrics::Get().errors(signatures.status().code())->Increment();
  return signatures;
}

absl::StatusOr<std::vector<std::string>> Pkcs11Hsm::SignDigestsUncounted(
    std::string_view key_id, const SignParams& params, std::span<const std::string> digests) {
  absl::Status status = ValidateKeyId(key_id);
  if (!status.ok()) return status;
  if (digests.empty()) return absl::InvalidArgumentError("no digests to sign");
  const size_t digest_length = DigestLength(params.hash);
  for (size_t i = 0; i < digests.size(); ++i) {
    if (digests[i].size() != digest_length) {
      return absl::InvalidArgumentError(absl::StrCat("digests[", i, "] is ", digests[i].size(),
                                                     " bytes; the chosen hash needs ",
                                                     digest_length));
    }
  }
  std::vector<std::string> signatures;
  signatures.reserve(digests.size());
  const Pkcs11Module::SigningPlace place = module_->EnterSigning(digests.size());
  status = pool_->Run([&](CK_SESSION_HANDLE session) {
    return WithKey(session, key_id, [&](const KeyInfo& key) -> absl::Status {
      if (IsEc(key.type) != (params.scheme == SignScheme::kEcdsa)) {
        return absl::FailedPreconditionError(
            absl::StrCat("key \"", Av(key_id), "\" is ", Av(KeyTypeName(key.type)), "; scheme ",
                         Av(SchemeName(params.scheme)), " needs ",
                         params.scheme == SignScheme::kEcdsa ? "an EC" : "an RSA", " key"));
      }
      return SignBatch(session, key, params, digests, &signatures);
    });
  });
  if (!status.ok())
    return WithContext(status, absl::StrCat("signing with key \"", Av(key_id), "\""));
  return signatures;
}

absl::Status Pkcs11Hsm::RunWithSessionForTesting(
    absl::FunctionRef<absl::Status(const CK_FUNCTION_LIST&, CK_SESSION_HANDLE)> fn) {
  return pool_->Run([&](CK_SESSION_HANDLE session) { return fn(fns(), session); });
}

absl::StatusOr<CK_OBJECT_HANDLE> Pkcs11Hsm::PrivateKeyHandleForTesting(std::string_view key_id) {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  absl::Status status = pool_->Run([&](CK_SESSION_HANDLE session) -> absl::Status {
    absl::StatusOr<KeyInfo> key = ResolveKey(session, key_id);
    if (!key.ok()) return key.status();
    handle = key->private_key;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return handle;
}

}  // namespace qsign::hsm
