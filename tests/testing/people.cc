#include "tests/testing/people.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testing/registration.h"
#include "tests/testing/test_data.h"

namespace qsign::testing {
namespace {

absl::Status Failed(const char* what, const grpc::Status& s) {
  return absl::UnavailableError(absl::StrCat(what, ": ", s.error_code(), " ", s.error_message()));
}

void Deadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
}

}  // namespace

absl::StatusOr<Person> EnrolPerson(v1::Identity::Stub& identity, std::string_view conninfo,
                                   std::shared_ptr<grpc::Channel> consent_channel, int n) {
  Person person;
  person.username = absl::StrCat("person", n, "@example.rs");
  v1::RegisterAccountRequest reg;
  reg.set_username(person.username);
  reg.set_given_name("Ana");
  reg.set_surname("Petrović");
  reg.set_national_id(NationalId(n));
  auto registered = RegisterAndConfirm(identity, conninfo, reg);
  if (!registered.ok()) return registered.status();
  const v1::Account& account = *registered;
  person.account_id = account.account_id();
  v1::ProofIdentityRequest proof;
  proof.set_account_id(account.account_id());
  proof.set_assurance_level(v1::ASSURANCE_LEVEL_HIGH);
  proof.mutable_evidence()->set_document_type(v1::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
  proof.mutable_evidence()->set_document_number("012345678");
  v1::ProofIdentityResponse proofed;
  grpc::ClientContext proof_ctx;
  Deadline(proof_ctx);
  proof_ctx.AddMetadata("authorization", OperatorAuthorization());
  if (grpc::Status s = identity.ProofIdentity(&proof_ctx, proof, &proofed); !s.ok()) {
    return Failed("ProofIdentity", s);
  }
  auto app = consent::ConsentAppSimulator::New(std::move(consent_channel));
  if (!app.ok()) return app.status();
  if (absl::Status s = (*app)->Enroll(proofed.activation_code(), "Phone", kPin); !s.ok()) return s;
  person.app = *std::move(app);
  return person;
}

}  // namespace qsign::testing
