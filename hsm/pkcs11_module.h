// A loaded, initialised PKCS#11 module and the small object helpers hsm/ builds on.
// Internal to hsm/: only hsm/ includes the PKCS#11 header.
#ifndef QSIGN_HSM_PKCS11_MODULE_H_
#define QSIGN_HSM_PKCS11_MODULE_H_

#include <p11-kit/pkcs11.h>
#include <sched.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace qsign::hsm {

// Lets a test replace entries of the function list (fault injection). It is applied to
// the module's own copy before C_Initialize.
using FunctionListPatch = std::function<void(CK_FUNCTION_LIST*)>;

class Pkcs11Module {
 public:
  enum class InitMode {
    // This object initialises the module and finalises it on destruction; a module some other
    // code already initialised is FAILED_PRECONDITION.
    kExclusive,
    // Joins a module that is already initialised in this process (and then never finalises it).
    kShared,
  };

  // dlopen + C_GetFunctionList + C_Initialize(CKF_OS_LOCKING_OK).
  static absl::StatusOr<std::unique_ptr<Pkcs11Module>> Load(
      std::string_view path, InitMode mode, const FunctionListPatch& patch = nullptr);

  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;
  // C_Finalize (when this object initialised the module), then dlclose.
  ~Pkcs11Module();

  // The (possibly patched) function list; valid while this object lives.
  const CK_FUNCTION_LIST& fns() const { return functions_; }
  const std::string& path() const { return path_; }

  // The slot holding the initialised token with this label. NOT_FOUND names the label and the
  // labels that are there.
  absl::StatusOr<CK_SLOT_ID> FindSlotByLabel(std::string_view label) const;

  // Whether token objects are created and destroyed one at a time in this process, for modules
  // that fail concurrent object creation (SoftHSM2 file tokens, SoftHSMv2 issue 573).
  void set_serialize_object_creation(bool serialize) { serialize_object_creation_ = serialize; }
  // Held while creating or destroying token objects when serialising; nullptr otherwise. Shared
  // by every token of the module (SoftHSM2's object store is one per process).
  absl::Mutex* object_creation_mutex() {
    return serialize_object_creation_ ? &object_creation_mu_ : nullptr;
  }

  // At most `limit` threads of this process sign with the module at once, across its tokens;
  // 0: no bound but the sessions. For a module that computes on this machine's CPUs (SoftHSM2),
  // threads well beyond the CPU count only contend for its locks and evict each other's caches.
  // Set before any token is opened.
  void set_max_concurrent_signing(int limit) { max_concurrent_signing_ = limit; }
  int max_concurrent_signing() const { return max_concurrent_signing_; }

  // The CPUs a signing thread is held to while it holds a place (empty: none, the default). With
  // a bound, a signing thread goes to the one of these CPUs with the fewest signing threads: the
  // scheduler alone let one CPU queue three cache-hot signing threads while the other idled
  // whenever its one signing thread waited on the module's locks (docs/PERFORMANCE.md, "issue 15,
  // session 8"). Set before any token is opened, together with the bound.
  void set_signing_cpus(std::vector<int> cpus);
  const std::vector<int>& signing_cpus() const { return signing_cpus_; }

  // Holds one of the max_concurrent_signing places while it lives (none when unbounded), and
  // keeps the thread on its place's CPU until then (when signing_cpus is set); the thread's own
  // CPU affinity is restored when the place is left.
  class SigningPlace {
   public:
    SigningPlace(const SigningPlace&) = delete;
    SigningPlace& operator=(const SigningPlace&) = delete;
    ~SigningPlace();

   private:
    friend class Pkcs11Module;
    explicit SigningPlace(Pkcs11Module* module) : module_(module) {}
    SigningPlace(Pkcs11Module* module, int cpu_index, bool pinned, const cpu_set_t& saved)
        : module_(module), cpu_index_(cpu_index), pinned_(pinned), saved_(saved) {}
    Pkcs11Module* const module_;  // Not owned; nullptr when unbounded.
    const int cpu_index_ = -1;    // Into signing_cpus; -1: not held to a CPU.
    const bool pinned_ = false;   // The thread's affinity was changed: restore saved_.
    const cpu_set_t saved_{};
  };
  // Waits for a place; take it before a session, so that a waiting thread holds none. A batch
  // of at least kDigestsHeldToCpu digests is held to a CPU: of the CPUs with the fewest signing
  // threads held there, the one the thread runs on (no move) or else another. A shorter batch is
  // not: moving a thread costs about half a signature's CPU (bench_http's one-signature loop
  // went from 67 to 88 us a signature when every call was held to a CPU).
  static constexpr size_t kDigestsHeldToCpu = 32;
  SigningPlace EnterSigning(size_t digests);

 private:
  explicit Pkcs11Module(std::string path) : path_(std::move(path)) {}

  std::string path_;
  void* dl_handle_ = nullptr;  // Owned: dlclose in the destructor.
  bool initialized_by_us_ = false;
  bool serialize_object_creation_ = false;  // Set before any token is opened.
  absl::Mutex object_creation_mu_;
  int max_concurrent_signing_ = 0;  // Set before any token is opened.
  absl::Mutex signing_mu_;
  int signing_ ABSL_GUARDED_BY(signing_mu_) = 0;
  std::vector<int> signing_cpus_;  // Set before any token is opened.
  std::vector<int> signing_on_cpu_ ABSL_GUARDED_BY(signing_mu_);  // Per signing_cpus_ entry.
  CK_FUNCTION_LIST functions_{};  // A copy of the module's list, so patches stay local.
};

// Logs the application in as CKU_USER through `session`; already being logged in is fine.
absl::Status LoginUser(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                       std::string_view pin);

// Opens a R/W serial session on the slot.
absl::StatusOr<CK_SESSION_HANDLE> OpenSession(const CK_FUNCTION_LIST& fns, CK_SLOT_ID slot);

// Objects matching the template, at most `max_objects` of them.
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(const CK_FUNCTION_LIST& fns,
                                                          CK_SESSION_HANDLE session,
                                                          std::span<CK_ATTRIBUTE> match,
                                                          size_t max_objects);

// One attribute's bytes (two-call form of C_GetAttributeValue).
absl::StatusOr<std::string> GetAttributeBytes(const CK_FUNCTION_LIST& fns,
                                              CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                              CK_ATTRIBUTE_TYPE type);
absl::StatusOr<CK_ULONG> GetAttributeUlong(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                                           CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
absl::StatusOr<bool> GetAttributeBool(const CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                                      CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_PKCS11_MODULE_H_
