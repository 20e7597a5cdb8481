#include "hsm/testing/bare_pkcs11.h"

#include <p11-kit/pkcs11.h>
#include <pthread.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/secret.h"
#include "common/strings.h"
#include "hsm/key_encoding.h"
#include "hsm/pkcs11_module.h"
#include "hsm/pkcs11_status.h"

namespace qsign::hsm::testing {
namespace {

// A module joined in shared mode plus `count` logged-in sessions, closed on destruction.
class BareSessions {
 public:
  static absl::StatusOr<std::unique_ptr<BareSessions>> Open(const Pkcs11Config& config, int count) {
    absl::StatusOr<SecretString> pin = ReadSecretFile(config.pin_file);
    if (!pin.ok()) return pin.status();
    absl::StatusOr<std::unique_ptr<Pkcs11Module>> module =
        Pkcs11Module::Load(config.module_path, Pkcs11Module::InitMode::kShared);
    if (!module.ok()) return module.status();
    absl::StatusOr<CK_SLOT_ID> slot = (*module)->FindSlotByLabel(config.token_label);
    if (!slot.ok()) return slot.status();
    std::unique_ptr<BareSessions> sessions(new BareSessions(std::move(*module)));
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<CK_SESSION_HANDLE> session = OpenSession(sessions->fns(), *slot);
      if (!session.ok()) return session.status();
      sessions->handles_.push_back(*session);
      absl::Status status = LoginUser(sessions->fns(), *session, pin->value());
      if (!status.ok()) return status;
    }
    return sessions;
  }

  ~BareSessions() {
    for (CK_SESSION_HANDLE session : handles_) fns().C_CloseSession(session);
  }

  const CK_FUNCTION_LIST& fns() const { return module_->fns(); }
  CK_SESSION_HANDLE session(size_t i) const { return handles_[i]; }

 private:
  explicit BareSessions(std::unique_ptr<Pkcs11Module> module) : module_(std::move(module)) {}

  std::unique_ptr<Pkcs11Module> module_;
  std::vector<CK_SESSION_HANDLE> handles_;
};

}  // namespace

absl::StatusOr<double> BarePkcs11SignRate(const Pkcs11Config& config, std::string_view key_id,
                                          int threads, absl::Duration duration) {
  if (threads < 1) return absl::InvalidArgumentError("threads must be at least 1");
  if (duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("duration must be positive");
  }
  absl::StatusOr<std::unique_ptr<BareSessions>> sessions = BareSessions::Open(config, threads);
  if (!sessions.ok()) return sessions.status();
  const CK_FUNCTION_LIST& fns = (*sessions)->fns();

  std::string id(key_id);
  CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE match[] = {
      {CKA_CLASS, &object_class, sizeof(object_class)},
      {CKA_ID, id.data(), id.size()},
  };
  absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> found =
      FindObjects(fns, (*sessions)->session(0), match, 1);
  if (!found.ok()) return found.status();
  if (found->empty())
    return absl::NotFoundError(absl::StrCat("no private key \"", Av(key_id), "\""));
  const CK_OBJECT_HANDLE key = found->front();
  absl::StatusOr<CK_ULONG> key_type =
      GetAttributeUlong(fns, (*sessions)->session(0), key, CKA_KEY_TYPE);
  if (!key_type.ok()) return key_type.status();

  const std::string digest(32, '\x5a');
  const bool ec = *key_type == CKK_EC;
  const std::string input = ec ? digest : DigestInfoDer(HashAlgorithm::kSha256, digest);

  // One signature on each fresh session before the clock, as bench_signer makes one call on each
  // fresh channel before its clock: a first operation is set-up, not rate.
  for (int t = 0; t < threads; ++t) {
    const CK_SESSION_HANDLE session = (*sessions)->session(static_cast<size_t>(t));
    CK_MECHANISM mechanism = {ec ? CKM_ECDSA : CKM_RSA_PKCS, nullptr, 0};
    std::string data = input;
    std::string signature(512, '\0');
    CK_ULONG length = signature.size();
    absl::Status status = CkrToStatus("C_SignInit", fns.C_SignInit(session, &mechanism, key));
    if (status.ok()) {
      status = CkrToStatus(
          "C_Sign", fns.C_Sign(session, reinterpret_cast<CK_BYTE*>(data.data()), data.size(),
                               reinterpret_cast<CK_BYTE*>(signature.data()), &length));
    }
    if (!status.ok()) return status;
  }

  absl::Mutex mu;
  absl::Status first_error;
  std::atomic<int64_t> total{0};
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads));
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + duration;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      pthread_setname_np(pthread_self(), "bare-pkcs11");  // Told apart in perf and top.
      const CK_SESSION_HANDLE session = (*sessions)->session(static_cast<size_t>(t));
      CK_MECHANISM mechanism = {ec ? CKM_ECDSA : CKM_RSA_PKCS, nullptr, 0};
      std::string data = input;
      std::string signature(512, '\0');
      int64_t count = 0;
      while (absl::Now() < deadline) {
        absl::Status status = CkrToStatus("C_SignInit", fns.C_SignInit(session, &mechanism, key));
        if (status.ok()) {
          CK_ULONG length = signature.size();
          status = CkrToStatus(
              "C_Sign", fns.C_Sign(session, reinterpret_cast<CK_BYTE*>(data.data()), data.size(),
                                   reinterpret_cast<CK_BYTE*>(signature.data()), &length));
        }
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          if (first_error.ok()) first_error = status;
          break;
        }
        ++count;
      }
      total += count;
    });
  }
  for (std::thread& worker : workers) worker.join();
  const absl::Duration elapsed = absl::Now() - start;
  if (!first_error.ok()) return first_error;
  return static_cast<double>(total.load()) / absl::ToDoubleSeconds(elapsed);
}

absl::StatusOr<PrivateKeyCensus> CountPrivateKeys(const Pkcs11Config& config) {
  absl::StatusOr<std::unique_ptr<BareSessions>> sessions = BareSessions::Open(config, 1);
  if (!sessions.ok()) return sessions.status();
  const CK_FUNCTION_LIST& fns = (*sessions)->fns();
  const CK_SESSION_HANDLE session = (*sessions)->session(0);
  CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE match[] = {{CKA_CLASS, &object_class, sizeof(object_class)}};
  absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> keys = FindObjects(fns, session, match, 4096);
  if (!keys.ok()) return keys.status();
  PrivateKeyCensus census;
  for (CK_OBJECT_HANDLE key : *keys) {
    ++census.total;
    auto flag = [&](CK_ATTRIBUTE_TYPE type) -> absl::StatusOr<bool> {
      return GetAttributeBool(fns, session, key, type);
    };
    struct Count {
      CK_ATTRIBUTE_TYPE type;
      int* counter;
    };
    bool decrypts = false;
    for (const Count& c :
         {Count{CKA_SENSITIVE, &census.sensitive}, Count{CKA_EXTRACTABLE, &census.extractable},
          Count{CKA_ALWAYS_SENSITIVE, &census.always_sensitive},
          Count{CKA_NEVER_EXTRACTABLE, &census.never_extractable}, Count{CKA_DECRYPT, nullptr},
          Count{CKA_UNWRAP, nullptr}, Count{CKA_DERIVE, nullptr}}) {
      absl::StatusOr<bool> value = flag(c.type);
      if (!value.ok()) return value.status();
      if (!*value) continue;
      if (c.counter != nullptr) {
        ++*c.counter;
      } else {
        decrypts = true;
      }
    }
    if (decrypts) ++census.can_decrypt;
  }
  return census;
}

}  // namespace qsign::hsm::testing
