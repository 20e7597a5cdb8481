// Test helpers that read certificates, CRLs and OCSP responses back the way a relying party
// does: from DER, with OpenSSL and der.h, plus the openssl command line as an independent tool.
#ifndef QSIGN_SERVICES_LIFECYCLE_TESTING_CERT_TESTING_H_
#define QSIGN_SERVICES_LIFECYCLE_TESTING_CERT_TESTING_H_

#include <openssl/x509.h>

#include <optional>
#include <string>
#include <vector>

#include "common/ossl.h"

namespace qsign::lifecycle::testing {

struct ExtensionValue {
  bool critical = false;
  std::string der;  // The extnValue's content.
};
// The extension with `oid`, if present (exactly once).
std::optional<ExtensionValue> FindExtension(const X509* cert, const std::string& oid);
// Every extension OID in order.
std::vector<std::string> ExtensionOids(const X509* cert);

struct NameEntry {
  std::string oid;
  int string_type = 0;  // V_ASN1_PRINTABLESTRING, V_ASN1_UTF8STRING, ...
  std::string value;
};
std::vector<NameEntry> NameEntries(const X509_NAME* name);

// The OIDs of a SEQUENCE OF SEQUENCE { OID, ... } (QCStatements, policies, EKU members...).
std::vector<std::string> FirstOids(const std::string& sequence_der);

// Writes `data` to a new file under $TMPDIR (or /tmp); returns its path.
std::string WriteTempFile(const std::string& data, const std::string& suffix);
// Runs a shell command; returns its exit code, stdout+stderr in `output`.
int RunCommand(const std::string& command, std::string* output);
// PEM of a DER certificate.
std::string CertificatePem(const std::string& der);

}  // namespace qsign::lifecycle::testing

#endif  // QSIGN_SERVICES_LIFECYCLE_TESTING_CERT_TESTING_H_
