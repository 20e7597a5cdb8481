// The CA hierarchy and the certificate profiles, with a real SoftHSM2 token and PostgreSQL.
// Every field is read back from the DER; the openssl command line checks what it can.
#include <openssl/obj_mac.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/clock.h"
#include "common/db/testing/pg_test.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/ca/der.h"
#include "services/lifecycle/ca/profile.h"
#include "services/lifecycle/schema.h"
#include "services/lifecycle/testing/cert_testing.h"

namespace qsign::lifecycle {
namespace {

using ::testing::ElementsAre;
using testing::FindExtension;
using testing::FirstOids;
using ::testing::HasSubstr;
using testing::NameEntries;

const absl::Time kNow =
    absl::FromCivil(absl::CivilSecond(2026, 3, 14, 9, 26, 53), absl::UTCTimeZone());
constexpr char kBase[] = "http://ca.qsign.test";

// A P-256 SubjectPublicKeyInfo of a fresh software key (a stand-in for the signer's user key).
std::string SoftwareSpki(int nid = NID_X9_62_prime256v1) {
  OsslPtr<EVP_PKEY> key(EVP_EC_gen(OBJ_nid2sn(nid)));
  return ToDer(key.get(), i2d_PUBKEY);
}

bool VerifiesUnder(const X509* cert, const std::vector<std::string>& chain) {
  OsslPtr<X509_STORE> store(X509_STORE_new());
  OsslPtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  for (size_t i = 0; i < chain.size(); ++i) {
    OsslPtr<X509> c = ParseCertificate(chain[i]);
    if (i + 1 == chain.size()) {
      X509_STORE_add_cert(store.get(), c.get());
    } else {
      sk_X509_push(untrusted.get(), c.release());
    }
  }
  OsslPtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), const_cast<X509*>(cert), untrusted.get());
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), absl::ToTimeT(kNow) + 60);
  const bool ok = X509_verify_cert(ctx.get()) == 1;
  if (!ok) {
    ADD_FAILURE() << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  }
  return ok;
}

class CaTest : public db::testing::PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    auto token = hsm::testing::SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *std::move(token);
    auto hsm = hsm::NewPkcs11Hsm(token_->config(2));
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    hsm_ = *std::move(hsm);
    ASSERT_TRUE(MigrateLifecycleSchema(pool()).ok());
    store_ = NewPostgresCaStore(&pool());
    config_.public_base_url = kBase;
  }

  std::unique_ptr<CaSet> Init() {
    auto set = CaSet::Init(hsm_.get(), store_.get(), clock_, config_);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? *std::move(set) : nullptr;
  }

  NaturalPersonSubject Person() {
    return {.given_name = "Milica",
            .surname = "Đorđević",
            .national_id = "0101990710006",
            .email = "milica@example.rs"};
  }

  QualifiedProfile Profile(const CaSet& cas) {
    return {.urls = cas.UrlsFor(kQualifiedCa), .pds_url = "https://qsign.test/pds/en"};
  }

  absl::StatusOr<IssuedCertificate> IssueQualified(const CaSet& cas,
                                                   const NaturalPersonSubject& person,
                                                   const std::string& spki) {
    auto spec = QualifiedCertificateSpec(person, spki, RandomSerial(), kNow, Profile(cas));
    if (!spec.ok()) return spec.status();
    return IssueCertificate(cas.qualified().key(), cas.qualified().cert(), *spec);
  }

  FakeClock clock_{kNow};
  std::unique_ptr<hsm::testing::SoftHsmToken> token_;
  std::unique_ptr<hsm::Hsm> hsm_;
  std::unique_ptr<CaStore> store_;
  CaConfig config_;
};

TEST_F(CaTest, InitCreatesTheHierarchyWithKeysInTheHsm) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  for (std::string_view name : {kRootCa, kQualifiedCa, kDeviceCa, kQualifiedOcsp, kDeviceOcsp}) {
    const Ca* ca = cas->Find(name);
    ASSERT_NE(ca, nullptr) << name;
    EXPECT_TRUE(hsm_->GetPublicKey(absl::StrCat("qsign-ca-", Av(name))).ok()) << name;
    EXPECT_TRUE(VerifiesUnder(ca->cert(), cas->ChainDer(*ca))) << name;
  }
  // Root: self-signed CA, no path length limit, keyCertSign + cRLSign.
  const X509* root = cas->root().cert();
  EXPECT_EQ(X509_check_issued(const_cast<X509*>(root), const_cast<X509*>(root)), X509_V_OK);
  auto bc = FindExtension(root, "2.5.29.19");
  ASSERT_TRUE(bc.has_value());
  EXPECT_TRUE(bc->critical);
  EXPECT_EQ(bc->der, der::Sequence({der::Boolean(true)}));
  auto ku = FindExtension(root, "2.5.29.15");
  ASSERT_TRUE(ku.has_value());
  EXPECT_TRUE(ku->critical);
  EXPECT_EQ(ku->der, std::string("\x03\x02\x01\x06", 4));
  EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notAfter(root)), AddYears(kNow, 20));

  // Issuing CAs: pathLen 0, the root's CRL and certificate URLs.
  for (const Ca* ca : {&cas->qualified(), &cas->device()}) {
    auto sub_bc = FindExtension(ca->cert(), "2.5.29.19");
    ASSERT_TRUE(sub_bc.has_value());
    EXPECT_EQ(sub_bc->der, der::Sequence({der::Boolean(true), der::Integer(0)}));
    auto crldp = FindExtension(ca->cert(), "2.5.29.31");
    ASSERT_TRUE(crldp.has_value());
    EXPECT_THAT(crldp->der, HasSubstr("http://ca.qsign.test/crl/root.crl"));
    EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notAfter(ca->cert())), AddYears(kNow, 10));
    EXPECT_EQ(X509_check_issued(const_cast<X509*>(root), const_cast<X509*>(ca->cert())), X509_V_OK);
  }
  EXPECT_THAT(NameText(X509_get_subject_name(cas->qualified().cert())),
              HasSubstr("CN=qsign Qualified CA"));
}

TEST_F(CaTest, OcspResponderIsDelegatedByItsCa) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  for (auto [ca_name, responder_name] :
       {std::pair{kQualifiedCa, kQualifiedOcsp}, std::pair{kDeviceCa, kDeviceOcsp}}) {
    const Ca* responder = cas->ResponderFor(ca_name);
    ASSERT_NE(responder, nullptr);
    EXPECT_EQ(responder->name(), responder_name);
    const X509* cert = responder->cert();
    EXPECT_EQ(
        X509_check_issued(const_cast<X509*>(cas->Find(ca_name)->cert()), const_cast<X509*>(cert)),
        X509_V_OK);
    auto eku = FindExtension(cert, "2.5.29.37");
    ASSERT_TRUE(eku.has_value());
    EXPECT_THAT(FirstOids(eku->der), ElementsAre("1.3.6.1.5.5.7.3.9"));
    auto nocheck = FindExtension(cert, "1.3.6.1.5.5.7.48.1.5");
    ASSERT_TRUE(nocheck.has_value());
    EXPECT_EQ(nocheck->der, der::Null());
    auto ku = FindExtension(cert, "2.5.29.15");
    ASSERT_TRUE(ku.has_value());
    EXPECT_TRUE(ku->critical);
    EXPECT_EQ(ku->der, std::string("\x03\x02\x07\x80", 4));  // digitalSignature.
    EXPECT_FALSE(FindExtension(cert, "2.5.29.19").has_value());
    // OpenSSL agrees it may sign OCSP responses.
    EXPECT_EQ(X509_get_extended_key_usage(const_cast<X509*>(cert)) & XKU_OCSP_SIGN,
              static_cast<uint32_t>(XKU_OCSP_SIGN));
  }
}

TEST_F(CaTest, InitIsIdempotent) {
  auto first = Init();
  ASSERT_NE(first, nullptr);
  auto second = Init();
  ASSERT_NE(second, nullptr);
  for (std::string_view name : {kRootCa, kQualifiedCa, kDeviceCa, kQualifiedOcsp, kDeviceOcsp}) {
    EXPECT_EQ(first->Find(name)->cert_der(), second->Find(name)->cert_der()) << name;
  }
  auto listed = store_->ListCas();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 5u);
  auto loaded = CaSet::Load(hsm_.get(), store_.get(), config_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->qualified().cert_der(), first->qualified().cert_der());
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

TEST_F(CaTest, InitReusesAKeyLeftByAnInterruptedRun) {
  auto left = hsm_->GenerateKeyPair("qsign-ca-root", hsm::KeyType::kEcP256);
  ASSERT_TRUE(left.ok());
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  EXPECT_EQ(cas->root().key().spki_der(), left->spki_der);
}

TEST_F(CaTest, InitRenewsAnOcspResponderNearExpiry) {
  auto first = Init();
  ASSERT_NE(first, nullptr);
  clock_.Advance(config_.ocsp_validity - config_.ocsp_renew_before + absl::Seconds(1));
  auto second = Init();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->Find(kQualifiedOcsp)->cert_der(), first->Find(kQualifiedOcsp)->cert_der());
  EXPECT_EQ(second->Find(kQualifiedOcsp)->key().spki_der(),
            first->Find(kQualifiedOcsp)->key().spki_der());
  EXPECT_EQ(second->qualified().cert_der(), first->qualified().cert_der());
}

TEST_F(CaTest, LoadWithoutInitSaysWhatToRun) {
  auto loaded = CaSet::Load(hsm_.get(), store_.get(), config_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr("qsign-ca init"));
}

TEST_F(CaTest, LoadRefusesAMissingHsmKey) {
  ASSERT_NE(Init(), nullptr);
  ASSERT_TRUE(hsm_->DestroyKeyPair("qsign-ca-device").ok());
  auto loaded = CaSet::Load(hsm_.get(), store_.get(), config_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr("not in the HSM"));
}

class CaKeyTypeTest : public CaTest, public ::testing::WithParamInterface<hsm::KeyType> {};

TEST_P(CaKeyTypeTest, HierarchyAndQualifiedCertificateVerify) {
  config_.key_type = GetParam();
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  auto issued = IssueQualified(*cas, Person(), SoftwareSpki());
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(X509_get_signature_nid(issued->cert.get()), SignatureAlgorithmFor(GetParam()).nid);
  std::vector<std::string> chain = cas->ChainDer(cas->qualified());
  EXPECT_TRUE(VerifiesUnder(issued->cert.get(), chain));
  // The TBS signature field equals the outer one (RFC 5280 4.1.1.2).
  const X509_ALGOR* outer = nullptr;
  X509_get0_signature(nullptr, &outer, issued->cert.get());
  EXPECT_EQ(X509_ALGOR_cmp(outer, X509_get0_tbs_sigalg(issued->cert.get())), 0);
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, CaKeyTypeTest,
                         ::testing::Values(hsm::KeyType::kEcP256, hsm::KeyType::kEcP384,
                                           hsm::KeyType::kRsa3072),
                         [](const auto& info) {
                           return std::string(hsm::KeyTypeName(info.param));
                         });

TEST_F(CaTest, QualifiedCertificateHasTheProfileOfDesignMd) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  const std::string spki = SoftwareSpki();
  auto issued = IssueQualified(*cas, Person(), spki);
  ASSERT_TRUE(issued.ok()) << issued.status();
  const X509* cert = issued->cert.get();

  EXPECT_EQ(X509_get_version(cert), X509_VERSION_3);
  // Serial: positive, exactly 16 bytes.
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  EXPECT_EQ(ASN1_STRING_length(serial), 16);
  EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);  // Not V_ASN1_NEG_INTEGER.
  EXPECT_EQ(SerialHex(cert).size(), 32u);
  // Issuer and validity: exactly 5 years.
  EXPECT_EQ(
      X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(cas->qualified().cert())), 0);
  EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notBefore(cert)), kNow);
  EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notAfter(cert)),
            absl::FromCivil(absl::CivilSecond(2031, 3, 14, 9, 26, 53), absl::UTCTimeZone()));
  // The key is the user's.
  EXPECT_EQ(ToDer(X509_get_X509_PUBKEY(cert), i2d_X509_PUBKEY), spki);

  // Subject: C, surname, givenName, serialNumber, CN with the right string types.
  auto subject = NameEntries(X509_get_subject_name(cert));
  ASSERT_EQ(subject.size(), 5u);
  EXPECT_EQ(subject[0].oid, "2.5.4.6");
  EXPECT_EQ(subject[0].value, "RS");
  EXPECT_EQ(subject[0].string_type, V_ASN1_PRINTABLESTRING);
  EXPECT_EQ(subject[1].oid, "2.5.4.4");
  EXPECT_EQ(subject[1].value, "Đorđević");
  EXPECT_EQ(subject[1].string_type, V_ASN1_UTF8STRING);
  EXPECT_EQ(subject[2].oid, "2.5.4.42");
  EXPECT_EQ(subject[2].value, "Milica");
  EXPECT_EQ(subject[2].string_type, V_ASN1_UTF8STRING);
  EXPECT_EQ(subject[3].oid, "2.5.4.5");
  EXPECT_EQ(subject[3].value, "PNORS-0101990710006");
  EXPECT_EQ(subject[3].string_type, V_ASN1_PRINTABLESTRING);
  EXPECT_EQ(subject[4].oid, "2.5.4.3");
  EXPECT_EQ(subject[4].value, "Milica Đorđević");
  EXPECT_EQ(subject[4].string_type, V_ASN1_UTF8STRING);

  // Exactly these extensions, in this order.
  EXPECT_THAT(testing::ExtensionOids(cert),
              ElementsAre("2.5.29.14", "2.5.29.35", "2.5.29.15", "2.5.29.32", "1.3.6.1.5.5.7.1.3",
                          "1.3.6.1.5.5.7.1.1", "2.5.29.31", "2.5.29.17"));
  // keyUsage: nonRepudiation only, critical.
  auto ku = FindExtension(cert, "2.5.29.15");
  ASSERT_TRUE(ku.has_value());
  EXPECT_TRUE(ku->critical);
  EXPECT_EQ(ku->der, std::string("\x03\x02\x06\x40", 4));
  EXPECT_EQ(X509_get_key_usage(const_cast<X509*>(cert)), static_cast<uint32_t>(KU_NON_REPUDIATION));
  // certificatePolicies: QCP-n-qscd.
  auto policies = FindExtension(cert, "2.5.29.32");
  ASSERT_TRUE(policies.has_value());
  EXPECT_FALSE(policies->critical);
  EXPECT_THAT(FirstOids(policies->der), ElementsAre("0.4.0.194112.1.2"));

  // QCStatements, parsed.
  auto qc = FindExtension(cert, "1.3.6.1.5.5.7.1.3");
  ASSERT_TRUE(qc.has_value());
  EXPECT_FALSE(qc->critical);
  EXPECT_THAT(FirstOids(qc->der),
              ElementsAre("1.3.6.1.5.5.7.11.2", "0.4.0.1862.1.1", "0.4.0.1862.1.4",
                          "0.4.0.1862.1.6", "0.4.0.1862.1.5"));
  auto statements = der::Children(der::ReadAll(qc->der)->content);
  ASSERT_TRUE(statements.ok());
  ASSERT_EQ(statements->size(), 5u);
  // Semantics identifier: natural person.
  auto semantics = der::Children((*statements)[0].content);
  ASSERT_TRUE(semantics.ok());
  ASSERT_EQ(semantics->size(), 2u);
  EXPECT_THAT(FirstOids(std::string((*semantics)[1].encoded)), ElementsAre("0.4.0.194121.1.1"));
  // QcCompliance and QcSSCD carry no statementInfo.
  EXPECT_EQ(der::Children((*statements)[1].content)->size(), 1u);
  EXPECT_EQ(der::Children((*statements)[2].content)->size(), 1u);
  // QcType: esign.
  auto qc_type = der::Children((*statements)[3].content);
  ASSERT_TRUE(qc_type.ok());
  ASSERT_EQ(qc_type->size(), 2u);
  EXPECT_THAT(FirstOids(std::string((*qc_type)[1].encoded)), ElementsAre("0.4.0.1862.1.6.1"));
  // QcPDS: one location, URL and language "en".
  auto pds = der::Children((*statements)[4].content);
  ASSERT_TRUE(pds.ok());
  ASSERT_EQ(pds->size(), 2u);
  auto locations = der::Children((*pds)[1].content);
  ASSERT_TRUE(locations.ok());
  ASSERT_EQ(locations->size(), 1u);
  auto location = der::Children((*locations)[0].content);
  ASSERT_TRUE(location.ok());
  ASSERT_EQ(location->size(), 2u);
  EXPECT_EQ((*location)[0].tag, der::kIa5String);
  EXPECT_EQ((*location)[0].content, "https://qsign.test/pds/en");
  EXPECT_EQ((*location)[1].tag, der::kPrintableString);
  EXPECT_EQ((*location)[1].content, "en");

  // AIA: OCSP and caIssuers, read by OpenSSL.
  OsslPtr<AUTHORITY_INFO_ACCESS> aia(static_cast<AUTHORITY_INFO_ACCESS*>(
      X509_get_ext_d2i(cert, NID_info_access, nullptr, nullptr)));
  ASSERT_NE(aia, nullptr);
  ASSERT_EQ(sk_ACCESS_DESCRIPTION_num(aia.get()), 2);
  auto uri_of = [&](int i) {
    const GENERAL_NAME* gn = sk_ACCESS_DESCRIPTION_value(aia.get(), i)->location;
    EXPECT_EQ(gn->type, GEN_URI);
    return std::string(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier)));
  };
  EXPECT_EQ(OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia.get(), 0)->method), NID_ad_OCSP);
  EXPECT_EQ(uri_of(0), "http://ca.qsign.test/ocsp");
  EXPECT_EQ(OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia.get(), 1)->method), NID_ad_ca_issuers);
  EXPECT_EQ(uri_of(1), "http://ca.qsign.test/ca/qualified.crt");
  // CRL distribution point, read by OpenSSL.
  OsslPtr<CRL_DIST_POINTS> dps(static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr)));
  ASSERT_NE(dps, nullptr);
  ASSERT_EQ(sk_DIST_POINT_num(dps.get()), 1);
  const DIST_POINT_NAME* dpn = sk_DIST_POINT_value(dps.get(), 0)->distpoint;
  ASSERT_EQ(dpn->type, 0);
  ASSERT_EQ(sk_GENERAL_NAME_num(dpn->name.fullname), 1);
  const GENERAL_NAME* crl_uri = sk_GENERAL_NAME_value(dpn->name.fullname, 0);
  ASSERT_EQ(crl_uri->type, GEN_URI);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                ASN1_STRING_get0_data(crl_uri->d.uniformResourceIdentifier))),
            "http://ca.qsign.test/crl/qualified.crl");
  // subjectAltName: the e-mail.
  OsslPtr<GENERAL_NAMES> san(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ASSERT_NE(san, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(san.get()), 1);
  EXPECT_EQ(sk_GENERAL_NAME_value(san.get(), 0)->type, GEN_EMAIL);
  // Key identifiers: SKI of the user key, AKI = the CA's SKI.
  auto ski = KeyIdentifier(spki);
  ASSERT_TRUE(ski.ok());
  EXPECT_EQ(SubjectKeyId(cert), *ski);
  auto aki = FindExtension(cert, "2.5.29.35");
  ASSERT_TRUE(aki.has_value());
  EXPECT_EQ(
      aki->der,
      der::Sequence({der::Tlv(der::ContextPrimitive(0), SubjectKeyId(cas->qualified().cert()))}));
  // An end-entity certificate: no basicConstraints CA, no EKU.
  EXPECT_FALSE(FindExtension(cert, "2.5.29.19").has_value());
  EXPECT_FALSE(FindExtension(cert, "2.5.29.37").has_value());
  EXPECT_EQ(X509_check_ca(const_cast<X509*>(cert)), 0);
}

TEST_F(CaTest, NoEmailNoSubjectAltName) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  NaturalPersonSubject person = Person();
  person.email.clear();
  auto issued = IssueQualified(*cas, person, SoftwareSpki());
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_FALSE(FindExtension(issued->cert.get(), "2.5.29.17").has_value());
}

TEST_F(CaTest, LegalPersonAddsOrganizationAndIdentifier) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  NaturalPersonSubject person = Person();
  person.legal_person =
      LegalPersonSubject{.organization_name = "Primer d.o.o.", .pib = "100000024"};
  auto issued = IssueQualified(*cas, person, SoftwareSpki());
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto subject = NameEntries(X509_get_subject_name(issued->cert.get()));
  ASSERT_EQ(subject.size(), 7u);
  EXPECT_EQ(subject[0].oid, "2.5.4.6");
  EXPECT_EQ(subject[1].oid, "2.5.4.10");
  EXPECT_EQ(subject[1].value, "Primer d.o.o.");
  EXPECT_EQ(subject[2].oid, "2.5.4.97");
  EXPECT_EQ(subject[2].value, "VATRS-100000024");
  EXPECT_EQ(subject[3].oid, "2.5.4.4");
  // Still a natural person's qualified certificate.
  auto policies = FindExtension(issued->cert.get(), "2.5.29.32");
  ASSERT_TRUE(policies.has_value());
  EXPECT_THAT(FirstOids(policies->der), ElementsAre("0.4.0.194112.1.2"));

  person.legal_person->pib = "100000025";
  auto refused = IssueQualified(*cas, person, SoftwareSpki());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("check digit"));
}

TEST_F(CaTest, SubjectThatDoesNotFitIsRefused) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  NaturalPersonSubject person = Person();
  person.given_name = std::string(40, 'a');
  person.surname = std::string(40, 'b');  // CN over 64 characters.
  auto refused = IssueQualified(*cas, person, SoftwareSpki());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("commonName"));
}

TEST_F(CaTest, OpensslCommandLineShowsTheQcStatements) {
  auto cas = Init();
  ASSERT_NE(cas, nullptr);
  auto issued = IssueQualified(*cas, Person(), SoftwareSpki());
  ASSERT_TRUE(issued.ok()) << issued.status();
  const std::string path = testing::WriteTempFile(issued->der, ".der");
  std::string out;
  ASSERT_EQ(testing::RunCommand("openssl x509 -inform DER -noout -text -in " + path, &out), 0)
      << out;
  // OpenSSL 3.0 does not decode QCStatements; it names the extension (or its OID) and dumps it.
  EXPECT_THAT(out, ::testing::AnyOf(HasSubstr("qcStatements"), HasSubstr("1.3.6.1.5.5.7.1.3")));
  EXPECT_THAT(out, HasSubstr("Non Repudiation"));
  EXPECT_THAT(out, HasSubstr("Policy: 0.4.0.194112.1.2"));
  EXPECT_THAT(out, HasSubstr("OCSP - URI:http://ca.qsign.test/ocsp"));
  EXPECT_THAT(out, HasSubstr("serialNumber = PNORS-0101990710006"));
  EXPECT_THAT(out, HasSubstr("email:milica@example.rs"));
  // And the chain verifies with the command-line tool too.
  const std::string root =
      testing::WriteTempFile(testing::CertificatePem(cas->root().cert_der()), ".pem");
  const std::string sub =
      testing::WriteTempFile(testing::CertificatePem(cas->qualified().cert_der()), ".pem");
  const std::string leaf = testing::WriteTempFile(testing::CertificatePem(issued->der), ".pem");
  ASSERT_EQ(testing::RunCommand("openssl verify -attime " +
                                    std::to_string(absl::ToUnixSeconds(kNow) + 60) + " -CAfile " +
                                    root + " -untrusted " + sub + " " + leaf,
                                &out),
            0)
      << out;
  for (const auto& p : {path, root, sub, leaf}) unlink(p.c_str());
}

TEST_F(CaTest, QsignCaInitCommandIsIdempotent) {
  const std::string command = absl::StrCat(
      QSIGN_CA_PATH, " init --db='", database().conninfo, "' --token_label=", token_->label(),
      " --pin_file=", token_->pin_file(),
      " --pkcs11_module=", hsm::testing::SoftHsmToken::ModulePath(), " --public_base_url=", kBase);
  std::string first;
  ASSERT_EQ(testing::RunCommand(command, &first), 0) << first;
  EXPECT_THAT(first, HasSubstr("qualified-ocsp"));
  EXPECT_THAT(first, HasSubstr("CN=qsign Root CA"));
  std::string second;
  ASSERT_EQ(testing::RunCommand(command, &second), 0) << second;
  // The same CAs (same serials), nothing created the second time.
  EXPECT_THAT(second, ::testing::Not(HasSubstr("\"msg\":\"created\"")));
  auto loaded = CaSet::Load(hsm_.get(), store_.get(), config_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(second, HasSubstr((*loaded)->qualified().record().serial_hex));
  EXPECT_THAT(first, HasSubstr((*loaded)->qualified().record().serial_hex));

  std::string usage;
  EXPECT_EQ(testing::RunCommand(absl::StrCat(QSIGN_CA_PATH, " frobnicate"), &usage), 2);
}

TEST(ProfileTest, FiveYearsIsCalendarYears) {
  const auto t = [](int y, int m, int d) {
    return absl::FromCivil(absl::CivilSecond(y, m, d, 12, 0, 0), absl::UTCTimeZone());
  };
  EXPECT_EQ(AddYears(t(2026, 1, 31), 5), t(2031, 1, 31));
  EXPECT_EQ(AddYears(t(2028, 2, 29), 5), t(2033, 2, 28));
  EXPECT_EQ(AddYears(t(2027, 2, 28), 5), t(2032, 2, 28));
}

TEST(ProfileTest, PibCheckDigit) {
  EXPECT_TRUE(ValidatePib("100000024").ok());
  // A published Croatian OIB, the same ISO 7064 MOD 11,10 scheme with 11 digits.
  EXPECT_TRUE(Iso7064Mod1110Valid("69435151530"));
  EXPECT_FALSE(Iso7064Mod1110Valid("69435151531"));
  EXPECT_THAT(ValidatePib("10000002").message(), HasSubstr("9 digits"));
  EXPECT_THAT(ValidatePib("10000002a").message(), HasSubstr("9 digits"));
  EXPECT_THAT(ValidatePib("100000020").message(), HasSubstr("check digit"));
  // Every single-digit change of a valid PIB is caught.
  std::string pib = "100000024";
  for (size_t i = 0; i < pib.size(); ++i) {
    for (char c = '0'; c <= '9'; ++c) {
      if (c == pib[i]) continue;
      std::string changed = pib;
      changed[i] = c;
      EXPECT_FALSE(ValidatePib(changed).ok()) << changed;
    }
  }
}

TEST(ProfileTest, RandomSerialIsPositiveSixteenBytes) {
  for (int i = 0; i < 200; ++i) {
    const std::string s = RandomSerial();
    ASSERT_EQ(s.size(), 16u);
    EXPECT_EQ(static_cast<uint8_t>(s[0]) & 0xc0, 0x40);
    EXPECT_EQ(der::UnsignedInteger(s).size(), 18u);  // Tag, length, 16 bytes: no padding.
  }
  EXPECT_NE(RandomSerial(), RandomSerial());
}

TEST(DerTest, RoundTrips) {
  EXPECT_EQ(absl::BytesToHexString(der::Oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  EXPECT_EQ(*der::OidText(der::ReadAll(der::Oid("0.4.0.194112.1.2"))->content), "0.4.0.194112.1.2");
  EXPECT_EQ(absl::BytesToHexString(der::Integer(0)), "020100");
  EXPECT_EQ(absl::BytesToHexString(der::Integer(128)), "02020080");
  EXPECT_EQ(absl::BytesToHexString(der::Integer(-1)), "0201ff");
  EXPECT_EQ(absl::BytesToHexString(der::UnsignedInteger(std::string("\x00\x80", 2))), "02020080");
  EXPECT_EQ(absl::BytesToHexString(der::NamedBits({1})), "03020640");
  EXPECT_EQ(absl::BytesToHexString(der::NamedBits({5, 6})), "03020106");
  EXPECT_EQ(absl::BytesToHexString(der::Tlv(0x04, std::string(200, 'x'))).substr(0, 6), "0481c8");
  EXPECT_EQ(absl::BytesToHexString(der::Time(absl::FromUnixSeconds(0))),
            "170d3730303130313030303030305a");
  EXPECT_EQ(
      der::Time(absl::FromCivil(absl::CivilSecond(2050, 1, 1, 0, 0, 0), absl::UTCTimeZone()))[0],
      der::kGeneralizedTime);
  EXPECT_FALSE(der::ReadAll(std::string("\x30\x80\x00\x00", 4)).ok());   // Indefinite length.
  EXPECT_FALSE(der::ReadAll(std::string("\x04\x81\x05hello", 8)).ok());  // Non-minimal length.
  EXPECT_FALSE(der::ReadAll(std::string("\x04\x05hell", 6)).ok());       // Truncated.
}

}  // namespace
}  // namespace qsign::lifecycle
