#include "common/tls.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/secret.h"
#include "common/strings.h"
#include "qsign/v1/consent.pb.h"
#include "qsign/v1/identity.pb.h"
#include "qsign/v1/lifecycle.pb.h"
#include "qsign/v1/options.pb.h"
#include "qsign/v1/signer.pb.h"
#include "qsign/v1/tsa.pb.h"

namespace qsign::tls {
namespace {

// The groups as the protos declare them: option (qsign.v1.rpc_group) on each method. Naming one
// message of each qsign.v1 file with services links its descriptors into the generated pool.
std::vector<RpcGroup> MakeQsignRpcGroups() {
  const google::protobuf::FileDescriptor* const files[] = {
      v1::SignHashRequest::descriptor()->file(), v1::StartLoginRequest::descriptor()->file(),
      v1::ApproveRequest::descriptor()->file(), v1::IssueRequest::descriptor()->file(),
      v1::TimestampRequest::descriptor()->file()};
  std::vector<RpcGroup> groups;
  for (const google::protobuf::FileDescriptor* file : files) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        const google::protobuf::MethodDescriptor* method = service->method(m);
        const std::string& name = method->options().GetExtension(v1::rpc_group);
        if (name.empty()) continue;  // In no group: refused (tls_test fails on it).
        auto group = std::find_if(groups.begin(), groups.end(),
                                  [&](const RpcGroup& g) { return g.name == name; });
        if (group == groups.end()) group = groups.insert(groups.end(), RpcGroup{.name = name});
        group->methods.push_back(absl::StrCat("/", service->full_name(), "/", method->name()));
      }
    }
  }
  return groups;
}

std::string DescribeClient(const std::vector<std::string>& ids) {
  if (ids.empty()) return "a client certificate without a DNS subjectAltName";
  return absl::StrCat("client \"", ids.front(), "\"");
}

// Runs inside gRPC's server auth filter for every call, before the call reaches a handler.
class AllowListProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit AllowListProcessor(std::shared_ptr<const AccessPolicy> policy)
      : policy_(std::move(policy)) {}

  // Check is a map lookup: run it inline on gRPC's thread.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* /*consumed*/, OutputMetadata* /*response*/) override {
    std::string path;
    if (auto it = metadata.find(":path"); it != metadata.end()) {
      path.assign(it->second.data(), it->second.size());
    }
    std::vector<std::string> ids = PeerIdentities(*context);
    absl::Status status = policy_->Check(path, ids);
    if (status.ok()) return grpc::Status::OK;
    std::string_view group = policy_->GroupOf(path);
    Log(LogLevel::kWarning, "tls", "call refused by allow-list",
        {{"client", ids.empty() ? std::string_view() : ids.front()},
         {"identities", absl::StrJoin(ids, ",")},
         {"method", path},
         {"group", group}});
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(status.message()));
  }

 private:
  std::shared_ptr<const AccessPolicy> policy_;
};

absl::StatusOr<std::string> ReadPemFile(std::string_view field, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(Av(field), ": required"));
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(), absl::StrCat(Av(field), ": ", pem.status().message()));
  }
  return pem;
}

// The leaf certificate of a PEM chain, and the number of certificates in it.
OsslPtr<X509> FirstCertificate(const std::string& pem, int* count) {
  OsslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  OsslPtr<X509> first;
  *count = 0;
  while (bio != nullptr) {
    OsslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    if (first == nullptr) first = std::move(cert);
    ++*count;
  }
  return first;
}

// The three PEM files of a Tls section, read and checked.
struct TlsMaterial {
  std::string cert_chain;
  std::string key;  // wiped by the destructor
  std::string roots;
  TlsMaterial() = default;
  TlsMaterial(const TlsMaterial&) = delete;
  TlsMaterial& operator=(const TlsMaterial&) = delete;
  ~TlsMaterial() { OPENSSL_cleanse(key.data(), key.size()); }
};

absl::Status LoadTlsMaterial(const config::v1::Tls& tls, TlsMaterial* out) {
  absl::StatusOr<std::string> chain = ReadPemFile("tls.cert_file", tls.cert_file());
  if (!chain.ok()) return chain.status();
  out->cert_chain = *std::move(chain);
  int count = 0;
  OsslPtr<X509> leaf = FirstCertificate(out->cert_chain, &count);
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.cert_file: ", tls.cert_file(), ": no PEM certificate"));
  }

  if (tls.key_file().empty()) return absl::InvalidArgumentError("tls.key_file: required");
  absl::StatusOr<SecretString> key = ReadSecretFile(tls.key_file());
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("tls.key_file: ", key.status().message()));
  }
  out->key = absl::StrCat(Av(key->value()), "\n");
  OsslPtr<BIO> key_bio(BIO_new_mem_buf(out->key.data(), static_cast<int>(out->key.size())));
  OsslPtr<EVP_PKEY> pkey(
      key_bio == nullptr
          ? nullptr
          : PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, const_cast<char*>("")));
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.key_file: ", tls.key_file(), ": no unencrypted PEM private key"));
  }
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.key_file: ", tls.key_file(), ": not the key of the certificate in ", tls.cert_file()));
  }

  absl::StatusOr<std::string> roots = ReadPemFile("tls.client_ca_file", tls.client_ca_file());
  if (!roots.ok()) return roots.status();
  out->roots = *std::move(roots);
  if (FirstCertificate(out->roots, &count) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.client_ca_file: ", tls.client_ca_file(), ": no PEM certificate"));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<RpcGroup>& QsignRpcGroups() {
  static const std::vector<RpcGroup>* const groups =
      new std::vector<RpcGroup>(MakeQsignRpcGroups());
  return *groups;
}

bool IsAlwaysAllowed(std::string_view path) {
  for (std::string_view prefix :
       {"/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
        "/grpc.reflection.v1.ServerReflection/"}) {
    if (path.substr(0, prefix.size()) == prefix && path.size() > prefix.size()) return true;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const AccessPolicy>> AccessPolicy::New(
    const google::protobuf::RepeatedPtrField<config::v1::Allow>& allow) {
  return New(QsignRpcGroups(), allow);
}

absl::StatusOr<std::shared_ptr<const AccessPolicy>> AccessPolicy::New(
    const std::vector<RpcGroup>& groups,
    const google::protobuf::RepeatedPtrField<config::v1::Allow>& allow) {
  std::shared_ptr<AccessPolicy> policy(new AccessPolicy());
  for (const RpcGroup& group : groups) {
    policy->clients_of_group_[group.name];
    for (const std::string& method : group.methods) {
      auto [it, inserted] = policy->group_of_method_.emplace(method, group.name);
      if (!inserted) {
        return absl::InternalError(absl::StrCat("RPC group table: ", method, " is in groups ",
                                                it->second, " and ", group.name));
      }
    }
  }
  for (int i = 0; i < allow.size(); ++i) {
    const config::v1::Allow& entry = allow[i];
    if (entry.group().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("allow[", i, "].group: required"));
    }
    auto group = policy->clients_of_group_.find(entry.group());
    if (group == policy->clients_of_group_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("allow[", i, "].group: unknown RPC group \"", entry.group(), "\""));
    }
    if (entry.clients().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("allow[", i, "].clients: empty (name the client identities)"));
    }
    for (int j = 0; j < entry.clients().size(); ++j) {
      if (entry.clients(j).empty()) {
        return absl::InvalidArgumentError(absl::StrCat("allow[", i, "].clients[", j, "]: empty"));
      }
      // Every certificate scripts/gen-certs makes also names localhost: allowing it would
      // allow every certificate of the CA.
      if (absl::AsciiStrToLower(Av(entry.clients(j))) == "localhost") {
        return absl::InvalidArgumentError(
            absl::StrCat("allow[", i, "].clients[", j,
                         "]: \"localhost\" names no one client (every local certificate has it)"));
      }
      group->second.insert(entry.clients(j));
    }
  }
  return std::shared_ptr<const AccessPolicy>(std::move(policy));
}

std::string_view AccessPolicy::GroupOf(std::string_view method_path) const {
  auto it = group_of_method_.find(method_path);
  return it == group_of_method_.end() ? std::string_view() : std::string_view(it->second);
}

absl::Status AccessPolicy::Check(std::string_view method_path,
                                 const std::vector<std::string>& peer_identities) const {
  if (IsAlwaysAllowed(method_path)) return absl::OkStatus();
  std::string_view group = GroupOf(method_path);
  if (group.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        DescribeClient(peer_identities), " may not call ", Av(method_path), " (in no RPC group)"));
  }
  const auto& clients = clients_of_group_.find(group)->second;
  for (const std::string& id : peer_identities) {
    if (clients.contains(id)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(DescribeClient(peer_identities), " may not call ",
                                                  Av(method_path), " (RPC group ", Av(group), ")"));
}

absl::StatusOr<std::string> OwnIdentity(const config::v1::Tls& tls) {
  absl::StatusOr<std::string> chain = ReadPemFile("tls.cert_file", tls.cert_file());
  if (!chain.ok()) return chain.status();
  int count = 0;
  OsslPtr<X509> leaf = FirstCertificate(*chain, &count);
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.cert_file: ", tls.cert_file(), ": no PEM certificate"));
  }
  OsslPtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);  // Owned by `names`.
    if (name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = name->d.dNSName;  // Owned by `name`.
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       ASN1_STRING_length(dns));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tls.cert_file: ", tls.cert_file(), ": no DNS subjectAltName"));
}

std::vector<std::string> PeerIdentities(const grpc::AuthContext& context) {
  std::vector<std::string> ids;
  for (const grpc::string_ref& name : context.FindPropertyValues(GRPC_PEER_DNS_PROPERTY_NAME)) {
    ids.emplace_back(name.data(), name.size());
  }
  return ids;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromConfig(
    const config::v1::Tls& tls, std::shared_ptr<const AccessPolicy> policy) {
  if (policy == nullptr) return absl::InvalidArgumentError("allow: no access policy");
  TlsMaterial material;
  if (absl::Status s = LoadTlsMaterial(tls, &material); !s.ok()) return s;
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = material.roots;
  options.pem_key_cert_pairs.push_back({material.key, material.cert_chain});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(options);
  for (auto& pair : options.pem_key_cert_pairs) {
    OPENSSL_cleanse(pair.private_key.data(), pair.private_key.size());
  }
  if (credentials == nullptr) return absl::InternalError("tls: gRPC refused the credentials");
  credentials->SetAuthMetadataProcessor(std::make_shared<AllowListProcessor>(std::move(policy)));
  return credentials;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromConfig(
    const config::v1::Tls& tls) {
  TlsMaterial material;
  if (absl::Status s = LoadTlsMaterial(tls, &material); !s.ok()) return s;
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = material.roots;
  options.pem_private_key = material.key;
  options.pem_cert_chain = material.cert_chain;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(options);
  OPENSSL_cleanse(options.pem_private_key.data(), options.pem_private_key.size());
  if (credentials == nullptr) return absl::InternalError("tls: gRPC refused the credentials");
  return credentials;
}

}  // namespace qsign::tls
