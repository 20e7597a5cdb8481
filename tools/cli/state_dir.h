// The qsign CLI's state directory (--state_dir, $QSIGN_STATE_DIR, ~/.qsign): what the portal
// side keeps (the session, the certificate files) and what the simulated consent app keeps (its
// device key). Secrets are written mode 0600 in directories created mode 0700, atomically.
//
//   DIR/session          token=, account_id=, username= lines (the portal's Bearer session)
//   DIR/certificate.pem  the current certificate;  DIR/chain.pem  its issuers
//   DIR/app/device-key.pem, DIR/app/device (device_id=, account_id=)   the consent app
#ifndef QSIGN_TOOLS_CLI_STATE_DIR_H_
#define QSIGN_TOOLS_CLI_STATE_DIR_H_

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsign::cli {

// Writes `data` to `path` through a temporary file renamed into place, with `mode`.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data, mode_t mode);

class StateDir {
 public:
  // The portal's login session.
  struct Session {
    std::string token;
    std::string account_id;
    std::string username;
  };
  // The simulated consent app's enrolment.
  struct Device {
    std::string private_key_pem;
    std::string device_id;
    std::string account_id;
  };

  explicit StateDir(std::string path) : path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  std::string SessionPath() const { return path_ + "/session"; }
  std::string AppDir() const { return path_ + "/app"; }
  std::string CertificatePath() const { return path_ + "/certificate.pem"; }
  std::string ChainPath() const { return path_ + "/chain.pem"; }

  // NOT_FOUND without a session file.
  absl::StatusOr<Session> LoadSession() const;
  absl::Status SaveSession(const Session& session) const;
  // NOT_FOUND without an enrolled app.
  absl::StatusOr<Device> LoadDevice() const;
  absl::Status SaveDevice(const Device& device) const;
  absl::Status SaveCertificate(const std::string& certificate_pem,
                               const std::string& chain_pem) const;

 private:
  std::string path_;
};

}  // namespace qsign::cli

#endif  // QSIGN_TOOLS_CLI_STATE_DIR_H_
