#include "services/lifecycle/testing/cert_testing.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "services/lifecycle/ca/der.h"
#include "tests/testing/shell.h"

namespace qsign::lifecycle::testing {
namespace {

std::string OidOf(const ASN1_OBJECT* obj) {
  char buf[128];
  OBJ_obj2txt(buf, sizeof(buf), obj, /*no_name=*/1);
  return buf;
}

}  // namespace

std::optional<ExtensionValue> FindExtension(const X509* cert, const std::string& oid) {
  std::optional<ExtensionValue> found;
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    X509_EXTENSION* ext = X509_get_ext(cert, i);
    if (OidOf(X509_EXTENSION_get_object(ext)) != oid) continue;
    if (found.has_value()) return std::nullopt;  // Twice: not acceptable either.
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    found = ExtensionValue{
        .critical = X509_EXTENSION_get_critical(ext) == 1,
        .der = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                           static_cast<size_t>(ASN1_STRING_length(data)))};
  }
  return found;
}

std::vector<std::string> ExtensionOids(const X509* cert) {
  std::vector<std::string> out;
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    out.push_back(OidOf(X509_EXTENSION_get_object(X509_get_ext(cert, i))));
  }
  return out;
}

std::vector<NameEntry> NameEntries(const X509_NAME* name) {
  std::vector<NameEntry> out;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const ASN1_STRING* s = X509_NAME_ENTRY_get_data(e);
    out.push_back({OidOf(X509_NAME_ENTRY_get_object(e)), ASN1_STRING_type(s),
                   std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                               static_cast<size_t>(ASN1_STRING_length(s)))});
  }
  return out;
}

std::vector<std::string> FirstOids(const std::string& sequence_der) {
  std::vector<std::string> out;
  auto outer = der::ReadAll(sequence_der);
  if (!outer.ok()) return out;
  auto items = der::Children(outer->content);
  if (!items.ok()) return out;
  for (const auto& item : *items) {
    std::string_view in = item.content;
    if (item.tag == der::kOid) {
      auto text = der::OidText(item.content);
      out.push_back(text.ok() ? *text : "?");
      continue;
    }
    auto first = der::Read(in);
    if (!first.ok() || first->tag != der::kOid) {
      out.push_back("?");
      continue;
    }
    auto text = der::OidText(first->content);
    out.push_back(text.ok() ? *text : "?");
  }
  return out;
}

std::string WriteTempFile(const std::string& data, const std::string& suffix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/qsign-lc-XXXXXX" + suffix;
  int fd = mkstemps(path.data(), static_cast<int>(suffix.size()));
  if (fd < 0) return "";
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(fd);
  return path;
}

int RunCommand(const std::string& command, std::string* output) {
  return ::qsign::testing::RunCommand(command, output);
}

std::string CertificatePem(const std::string& der) {
  OsslPtr<X509> cert = ParseCertificate(der);
  if (cert == nullptr) return "";
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace qsign::lifecycle::testing
