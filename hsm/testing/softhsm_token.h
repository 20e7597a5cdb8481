// A fresh SoftHSM2 token in its own temporary directory, for tests and benchmarks.
// Points SOFTHSM2_CONF at its config (process-wide; SoftHSM2 reads it at C_Initialize), so
// create the token before the Pkcs11Hsm that uses it, and keep one Pkcs11Hsm at a time.
#ifndef QSIGN_HSM_TESTING_SOFTHSM_TOKEN_H_
#define QSIGN_HSM_TESTING_SOFTHSM_TOKEN_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::hsm::testing {

class SoftHsmToken {
 public:
  // Makes <$TMPDIR or /tmp>/qsign-softhsm-XXXXXX with softhsm2.conf and tokens/, initialises a
  // token labelled `label` with random 8-digit user and SO PINs, and writes the user PIN to
  // <dir>/user.pin (mode 0600).
  static absl::StatusOr<std::unique_ptr<SoftHsmToken>> Create(std::string label = "qsign-test");

  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;
  // Removes the directory and restores SOFTHSM2_CONF if it still points here.
  ~SoftHsmToken();

  // Module, label and PIN file of this token.
  Pkcs11Config config(int session_pool_size = 8) const;

  // Initialises another token in the same SoftHSM2 directory (one module, several slots), with
  // its own random user PIN in <dir>/<label>.pin, and returns its config. Key separation tests
  // and fixtures: one token per role.
  absl::StatusOr<Pkcs11Config> AddToken(const std::string& label, int session_pool_size = 8);

  const std::string& dir() const { return dir_; }
  const std::string& label() const { return label_; }
  const std::string& pin_file() const { return pin_file_; }
  const std::string& conf_file() const { return conf_file_; }

  // The SoftHSM2 module and softhsm2-util this build found.
  static std::string ModulePath();
  static std::string UtilPath();

 private:
  SoftHsmToken(std::string dir, std::string label, std::optional<std::string> previous_conf);
  absl::Status InitToken(const std::string& label, const std::string& pin_file);

  std::string dir_;
  std::string label_;
  std::string conf_file_;
  std::string pin_file_;
  std::optional<std::string> previous_conf_;  // SOFTHSM2_CONF before Create.
};

}  // namespace qsign::hsm::testing

#endif  // QSIGN_HSM_TESTING_SOFTHSM_TOKEN_H_
