#include "hsm/pkcs11_module.h"

#include <dlfcn.h>
#include <sched.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/strings.h"
#include "hsm/pkcs11_status.h"

namespace qsign::hsm {

absl::StatusOr<std::unique_ptr<Pkcs11Module>> Pkcs11Module::Load(std::string_view path,
                                                                 InitMode mode,
                                                                 const FunctionListPatch& patch) {
  std::unique_ptr<Pkcs11Module> module(new Pkcs11Module(std::string(path)));
  module->dl_handle_ = dlopen(module->path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (module->dl_handle_ == nullptr) {
    const char* error = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("cannot load PKCS#11 module ", Av(path), ": ",
                                                      error != nullptr ? error : "dlopen failed"));
  }
  auto get_function_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(module->dl_handle_, "C_GetFunctionList"));
  if (get_function_list == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 module ", Av(path), " has no C_GetFunctionList"));
  }
  CK_FUNCTION_LIST* module_functions = nullptr;  // Not owned: static data inside the module.
  absl::Status status = CkrToStatus("C_GetFunctionList", get_function_list(&module_functions));
  if (!status.ok()) return AnnotateStatus(status, absl::StrCat("PKCS#11 module ", Av(path)));
  if (module_functions == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 module ", Av(path), " returned no function list"));
  }
  module->functions_ = *module_functions;
  if (patch) patch(&module->functions_);

  CK_C_INITIALIZE_ARGS init_args{};
  init_args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = module->functions_.C_Initialize(&init_args);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED && mode == InitMode::kShared) return module;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module ", Av(path),
        " is already initialised in this process; only one Pkcs11Hsm per module may exist"));
  }
  status = CkrToStatus("C_Initialize", rv);
  if (!status.ok()) return AnnotateStatus(status, absl::StrCat("PKCS#11 module ", Av(path)));
  module->initialized_by_us_ = true;
  return module;
}

void Pkcs11Module::set_signing_cpus(std::vector<int> cpus) {
  signing_cpus_ = std::move(cpus);
  absl::MutexLock lock(&signing_mu_);
  signing_on_cpu_.assign(signing_cpus_.size(), 0);
}

Pkcs11Module::SigningPlace Pkcs11Module::EnterSigning(size_t digests) {
  if (max_concurrent_signing_ <= 0) return SigningPlace(nullptr);
  // The thread's own affinity, read before waiting: only CPUs it may run on are candidates, and
  // it gets it back when it leaves.
  cpu_set_t saved;
  CPU_ZERO(&saved);
  const bool hold_to_cpu = digests >= kDigestsHeldToCpu && !signing_cpus_.empty() &&
                           sched_getaffinity(0, sizeof(saved), &saved) == 0;
  const int here = hold_to_cpu ? sched_getcpu() : -1;
  auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(signing_mu_) {
    return signing_ < max_concurrent_signing_;
  };
  int cpu_index = -1;
  {
    absl::MutexLock lock(&signing_mu_, absl::Condition(&has_room));
    ++signing_;
    if (hold_to_cpu) {
      // The CPU with the fewest signing threads held there; of equals, the one this thread runs
      // on (no move). So no CPU holds more than one above another: with the bound at 2 x CPUs
      // and every place taken by a long batch, two on each.
      for (size_t i = 0; i < signing_cpus_.size(); ++i) {
        const int cpu = signing_cpus_[i];
        if (!CPU_ISSET(cpu, &saved)) continue;
        if (cpu_index < 0 || signing_on_cpu_[i] < signing_on_cpu_[cpu_index] ||
            (signing_on_cpu_[i] == signing_on_cpu_[cpu_index] && cpu == here)) {
          cpu_index = static_cast<int>(i);
        }
      }
      if (cpu_index >= 0) ++signing_on_cpu_[cpu_index];
    }
  }
  if (cpu_index < 0) return SigningPlace(this);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(signing_cpus_[cpu_index], &one);
  const bool pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
  return SigningPlace(this, cpu_index, pinned, saved);
}

Pkcs11Module::SigningPlace::~SigningPlace() {
  if (module_ == nullptr) return;
  if (pinned_) sched_setaffinity(0, sizeof(saved_), &saved_);
  absl::MutexLock lock(&module_->signing_mu_);
  --module_->signing_;
  if (cpu_index_ >= 0) --module_->signing_on_cpu_[cpu_index_];
}

Pkcs11Module::~Pkcs11Module() {
  if (initialized_by_us_) functions_.C_Finalize(nullptr);
  if (dl_handle_ != nullptr) dlclose(dl_handle_);
}

absl::StatusOr<CK_SLOT_ID> Pkcs11Module::FindSlotByLabel(std::string_view label) const {
  CK_TOKEN_INFO info;
  if (label.empty() || label.size() > sizeof(info.label)) {
    return absl::InvalidArgumentError(
        absl::StrCat("token label \"", Av(label), "\" must be 1 to 32 bytes long"));
  }
  std::vector<CK_SLOT_ID> slots;
  CK_RV rv;
  do {
    CK_ULONG count = 0;
    rv = functions_.C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) break;
    slots.resize(count);
    rv = functions_.C_GetSlotList(CK_TRUE, slots.data(), &count);
    slots.resize(count);
  } while (rv == CKR_BUFFER_TOO_SMALL);  // A token appeared between the two calls.
  absl::Status status = CkrToStatus("C_GetSlotList", rv);
  if (!status.ok()) return AnnotateStatus(status, absl::StrCat("PKCS#11 module ", path_));

  std::vector<std::string> seen;
  for (CK_SLOT_ID slot : slots) {
    if (functions_.C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    std::string_view token_label(reinterpret_cast<const char*>(info.label), sizeof(info.label));
    while (!token_label.empty() && (token_label.back() == ' ' || token_label.back() == '\0')) {
      token_label.remove_suffix(1);
    }
    if (token_label == label) return slot;
    seen.push_back(absl::StrCat("\"", Av(token_label), "\""));
  }
  return absl::NotFoundError(
      absl::StrCat("no token labelled \"", Av(label), "\" in PKCS#11 module ", path_,
                   " (tokens present: ", seen.empty() ? "none" : absl::StrJoin(seen, ", "), ")"));
}

absl::Status LoginUser(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                       std::string_view pin) {
  // PKCS#11 takes the PIN through a non-const pointer but only reads it; this avoids copying it.
  auto* pin_bytes = const_cast<CK_UTF8CHAR*>(reinterpret_cast<const CK_UTF8CHAR*>(pin.data()));
  CK_RV rv = fns.C_Login(session, CKU_USER, pin_bytes, pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return absl::OkStatus();
  return CkrToStatus("C_Login", rv);
}

absl::StatusOr<CK_SESSION_HANDLE> OpenSession(const CK_FUNCTION_LIST& fns, CK_SLOT_ID slot) {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  absl::Status status = CkrToStatus(
      "C_OpenSession",
      fns.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session));
  if (!status.ok()) return status;
  return session;
}

absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(const CK_FUNCTION_LIST& fns,
                                                          CK_SESSION_HANDLE session,
                                                          std::span<CK_ATTRIBUTE> match,
                                                          size_t max_objects) {
  absl::Status status =
      CkrToStatus("C_FindObjectsInit", fns.C_FindObjectsInit(session, match.data(), match.size()));
  if (!status.ok()) return status;
  std::vector<CK_OBJECT_HANDLE> objects(max_objects);
  CK_ULONG found = 0;
  status = CkrToStatus("C_FindObjects",
                       fns.C_FindObjects(session, objects.data(), objects.size(), &found));
  // Always end the search, or the session stays in find mode.
  absl::Status final_status = CkrToStatus("C_FindObjectsFinal", fns.C_FindObjectsFinal(session));
  if (!status.ok()) return status;
  if (!final_status.ok()) return final_status;
  objects.resize(found);
  return objects;
}

absl::StatusOr<std::string> GetAttributeBytes(const CK_FUNCTION_LIST& fns,
                                              CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                              CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE attribute{type, nullptr, 0};
  absl::Status status =
      CkrToStatus("C_GetAttributeValue", fns.C_GetAttributeValue(session, object, &attribute, 1));
  if (!status.ok()) return status;
  if (attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return absl::InternalError("C_GetAttributeValue returned CK_UNAVAILABLE_INFORMATION");
  }
  std::string value(attribute.ulValueLen, '\0');
  attribute.pValue = value.data();
  status =
      CkrToStatus("C_GetAttributeValue", fns.C_GetAttributeValue(session, object, &attribute, 1));
  if (!status.ok()) return status;
  value.resize(attribute.ulValueLen);
  return value;
}

absl::StatusOr<CK_ULONG> GetAttributeUlong(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                                           CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ULONG value = 0;
  CK_ATTRIBUTE attribute{type, &value, sizeof(value)};
  absl::Status status =
      CkrToStatus("C_GetAttributeValue", fns.C_GetAttributeValue(session, object, &attribute, 1));
  if (!status.ok()) return status;
  if (attribute.ulValueLen != sizeof(value)) {
    return absl::InternalError("C_GetAttributeValue returned a CK_ULONG of the wrong size");
  }
  return value;
}

absl::StatusOr<bool> GetAttributeBool(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                                      CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE attribute{type, &value, sizeof(value)};
  absl::Status status =
      CkrToStatus("C_GetAttributeValue", fns.C_GetAttributeValue(session, object, &attribute, 1));
  if (!status.ok()) return status;
  if (attribute.ulValueLen != sizeof(value)) {
    return absl::InternalError("C_GetAttributeValue returned a CK_BBOOL of the wrong size");
  }
  return value != CK_FALSE;
}

}  // namespace qsign::hsm
