#include "tests/testing/signing_load.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "common/db/pg.h"
#include "tests/testing/test_pki.h"

namespace qsign::testing {
namespace {

namespace pb = ::qsign::v1;

constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
constexpr char kEcdsaSha256Oid[] = "1.2.840.10045.4.3.2";

std::string RandomHash() {
  std::string h(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(h.data()), static_cast<int>(h.size())) != 1) {
    std::abort();
  }
  return h;
}

// A lifecycle call's context.
std::unique_ptr<grpc::ClientContext> AsLifecycle() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", absl::StrCat("Service lifecycle.", kSigningLifecycleSecret));
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  return ctx;
}

}  // namespace

std::string WriteLifecycleServicesFile(const std::string& dir) {
  const std::string path = dir + "/services";
  std::ofstream(path) << "lifecycle "
                      << absl::BytesToHexString(auth::Sha256(kSigningLifecycleSecret)) << "\n";
  return path;
}

absl::StatusOr<std::unique_ptr<SigningClient>> SigningClient::New(
    std::shared_ptr<grpc::Channel> channel, hsm::Hsm* consent_token, std::string credential_id,
    std::string account_id) {
  std::unique_ptr<SigningClient> c(new SigningClient());
  c->credential_id_ = std::move(credential_id);
  c->account_id_ = std::move(account_id);
  c->SetChannel(std::move(channel));
  pb::CreateKeyRequest create;
  create.set_credential_id(c->credential_id_);
  create.set_account_id(c->account_id_);
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo cred;
  if (grpc::Status s = c->signer_->CreateKey(AsLifecycle().get(), create, &cred); !s.ok()) {
    return absl::InternalError(absl::StrCat("CreateKey: ", s.error_message()));
  }
  c->spki_ = cred.public_key_spki();
  pb::SetCertificateRequest set;
  set.set_credential_id(c->credential_id_);
  set.add_certificate_chain_der(CertificateFor(c->spki_));
  pb::CredentialInfo active;
  if (grpc::Status s = c->signer_->SetCertificate(AsLifecycle().get(), set, &active); !s.ok()) {
    return absl::InternalError(absl::StrCat("SetCertificate: ", s.error_message()));
  }
  if (active.status() != pb::CREDENTIAL_STATUS_ACTIVE) {
    return absl::InternalError("SetCertificate: the credential is not ACTIVE");
  }
  auto minter = consent::SadMinter::New(consent_token, "qsign-sad-1");
  if (!minter.ok()) return minter.status();
  c->minter_ = *std::move(minter);
  auto verifier = consent::SadVerifier::New({{"qsign-sad-1", c->minter_->public_key_spki()}});
  if (!verifier.ok()) return verifier.status();
  c->verifier_ = *std::move(verifier);
  return c;
}

void SigningClient::SetChannel(std::shared_ptr<grpc::Channel> channel) {
  signer_ = pb::Signer::NewStub(std::move(channel));
}

absl::StatusOr<Signing> SigningClient::NewSigning() const {
  Signing s;
  s.hash = RandomHash();
  consent::SadGrant grant{.account_id = account_id_,
                          .credential_id = credential_id_,
                          .hash_algorithm_oid = kSha256Oid,
                          .hashes = {s.hash}};
  auto sad = minter_->Mint(grant, absl::Now(), absl::Minutes(10));
  if (!sad.ok()) return sad.status();
  auto decoded = verifier_->Verify(*sad, absl::Now());
  if (!decoded.ok()) return decoded.status();
  s.sad_id = decoded->sad_id;
  s.request.set_credential_id(credential_id_);
  s.request.set_hash_algorithm_oid(kSha256Oid);
  s.request.set_sign_algorithm_oid(kEcdsaSha256Oid);
  s.request.add_hashes(s.hash);
  s.request.set_sad(*sad);
  return s;
}

absl::StatusOr<std::vector<Signing>> SigningClient::NewSignings(int count) const {
  std::vector<Signing> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    auto s = NewSigning();
    if (!s.ok()) return s.status();
    out.push_back(*std::move(s));
  }
  return out;
}

grpc::Status SigningClient::SignHash(const Signing& s, pb::SignHashResponse* resp,
                                     absl::Duration deadline) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return signer_->SignHash(&ctx, s.request, resp);
}

bool SigningClient::Verifies(const Signing& s, const pb::SignHashResponse& resp) const {
  return resp.signatures_size() == 1 &&
         VerifyDigestSignature(spki_, s.hash, resp.signatures(0), EVP_sha256());
}

SigningLoad::SigningLoad(const SigningClient* client, const std::vector<std::vector<Signing>>& work,
                         int stop_after_failures)
    : outcomes_(work.size()) {
  for (size_t t = 0; t < work.size(); ++t) {
    threads_.emplace_back(
        [this, client, &mine = work[t], &out = outcomes_[t], stop_after_failures] {
          for (const Signing& s : mine) {
            pb::SignHashResponse resp;
            grpc::Status status = client->SignHash(s, &resp);
            if (status.ok()) {
              out.acknowledged.emplace_back(&s, std::move(resp));
              ++ok_;
              continue;
            }
            out.failed.emplace_back(&s, status);
            if (static_cast<int>(out.failed.size()) >= stop_after_failures) return;
          }
          out.ran_out = true;
        });
  }
}

bool SigningLoad::AwaitAcknowledged(int n, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (ok_.load() < n) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

void SigningLoad::Join() {
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

int SigningLoad::CountAcknowledged() const {
  int n = 0;
  for (const Outcome& o : outcomes_) n += static_cast<int>(o.acknowledged.size());
  return n;
}

absl::StatusOr<absl::flat_hash_set<std::string>> SadJournal(const std::string& conninfo,
                                                            const std::string& credential_id) {
  auto conn = db::Connection::Open(conninfo);
  if (!conn.ok()) return conn.status();
  auto rows = (*conn)->Exec("SELECT sad_id FROM signer.sad_uses WHERE credential_id = $1",
                            {db::Param::Text(credential_id)});
  if (!rows.ok()) return rows.status();
  absl::flat_hash_set<std::string> journal;
  for (int r = 0; r < rows->rows(); ++r) {
    auto id = rows->GetBytes(r, 0);
    if (!id.ok()) return id.status();
    if (!journal.insert(*std::move(id)).second) {
      return absl::InternalError("a SAD is in the journal twice");
    }
  }
  return journal;
}

HealthStatus Health(const std::string& target) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  if (!stub->Check(&ctx, req, &resp).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return resp.status();
}

bool AwaitHealth(const std::string& target, HealthStatus want, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Health(target) != want) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

}  // namespace qsign::testing
