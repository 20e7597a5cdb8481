// CAdES B-T and B-LT end to end with software stand-ins for what is remote in production: a CA,
// an RFC 3161 TSA (OpenSSL's own TS_RESP_CTX, independent of services/tsa) and OCSP responses;
// the verifier's report for the cases a relying party meets (valid, revoked later, revoked
// before, expired since, no revocation data, changed content, changed signature) and openssl's
// own judgement of the B-LT file.
#include <gtest/gtest.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "common/cades/validation_data.h"
#include "common/cades/verify.h"
#include "common/ossl.h"
#include "tests/testing/shell.h"

namespace qsign::cades {
namespace {

struct Party {
  OsslPtr<EVP_PKEY> key;
  OsslPtr<X509> cert;
  std::string der() const { return ToDer(cert.get(), i2d_X509); }
};

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  OsslPtr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  ASSERT_TRUE(ext) << nid;
  X509_add_ext(cert, ext.get(), -1);
}

// A certificate for a fresh P-256 key, issued by `issuer` (nullptr: self-signed).
Party Issue(const std::string& cn, const Party* issuer, absl::Time from, absl::Time until, bool ca,
            bool tsa = false) {
  Party p{OsslPtr<EVP_PKEY>(EVP_EC_gen("P-256")), OsslPtr<X509>(X509_new())};
  static long serial = 1;
  X509* c = p.cert.get();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), ++serial);
  X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, nullptr);
  ASN1_TIME_set(X509_getm_notBefore(c), absl::ToTimeT(from));
  ASN1_TIME_set(X509_getm_notAfter(c), absl::ToTimeT(until));
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, Bytes("RS"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, Bytes(cn), -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer->cert.get()) : name);
  X509_set_pubkey(c, p.key.get());
  X509* issuer_cert = issuer ? issuer->cert.get() : c;
  AddExt(c, issuer_cert, NID_subject_key_identifier, "hash");
  AddExt(c, issuer_cert, NID_authority_key_identifier, "keyid");
  if (ca) {
    AddExt(c, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(c, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  } else if (tsa) {
    AddExt(c, issuer_cert, NID_key_usage, "critical,digitalSignature,nonRepudiation");
    AddExt(c, issuer_cert, NID_ext_key_usage, "critical,timeStamping");
  } else {
    AddExt(c, issuer_cert, NID_key_usage, "critical,nonRepudiation");
  }
  X509_sign(c, issuer ? issuer->key.get() : p.key.get(), EVP_sha256());
  return p;
}

std::string SignWith(EVP_PKEY* key, const std::string& digest) {
  OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(key, nullptr));
  EVP_PKEY_sign_init(ctx.get());
  EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256());
  size_t len = 0;
  EVP_PKEY_sign(ctx.get(), nullptr, &len, Bytes(digest), digest.size());
  std::string out(len, '\0');
  EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, Bytes(digest),
                digest.size());
  out.resize(len);
  return out;
}

struct TsRespCtxDeleter {
  void operator()(TS_RESP_CTX* p) const { TS_RESP_CTX_free(p); }
};

// OpenSSL's own TSA with a software key: the reply to a DER query.
absl::StatusOr<std::string> SoftwareTsa(const Party& tsa, const std::string& query) {
  std::unique_ptr<TS_RESP_CTX, TsRespCtxDeleter> ctx(TS_RESP_CTX_new());
  OsslPtr<ASN1_OBJECT> policy(OBJ_txt2obj("0.4.0.2023.1.1", 1));
  TS_RESP_CTX_set_signer_cert(ctx.get(), tsa.cert.get());
  TS_RESP_CTX_set_signer_key(ctx.get(), tsa.key.get());
  TS_RESP_CTX_set_def_policy(ctx.get(), policy.get());
  TS_RESP_CTX_set_ess_cert_id_digest(ctx.get(), EVP_sha256());
  TS_RESP_CTX_add_md(ctx.get(), EVP_sha256());
  OsslPtr<BIO> in(BIO_new_mem_buf(query.data(), static_cast<int>(query.size())));
  OsslPtr<TS_RESP> resp(TS_RESP_create_response(ctx.get(), in.get()));
  if (!resp) return absl::InternalError("TS_RESP_create_response");
  return ToDer(resp.get(), i2d_TS_RESP);
}

struct Status {
  const Party* cert;
  int status;  // V_OCSP_CERTSTATUS_*
  absl::Time revoked_at;
};

// One OCSP response from `ca` for several certificates it issued, produced now.
std::string OcspResponse(const Party& ca, const std::vector<Status>& statuses) {
  OsslPtr<OCSP_BASICRESP> basic(OCSP_BASICRESP_new());
  OsslPtr<ASN1_STRING> now(ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(absl::Now())));
  OsslPtr<ASN1_STRING> next(
      ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(absl::Now() + absl::Hours(1))));
  for (const Status& s : statuses) {
    OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), s.cert->cert.get(), ca.cert.get());
    OsslPtr<ASN1_STRING> revoked(ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(s.revoked_at)));
    OCSP_basic_add1_status(
        basic.get(), id, s.status,
        s.status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : -1,
        s.status == V_OCSP_CERTSTATUS_REVOKED ? revoked.get() : nullptr, now.get(), next.get());
    OCSP_CERTID_free(id);
  }
  OCSP_basic_sign(basic.get(), ca.cert.get(), ca.key.get(), EVP_sha256(), nullptr, 0);
  OsslPtr<OCSP_RESPONSE> resp(OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
  return ToDer(resp.get(), i2d_OCSP_RESPONSE);
}

class CadesLevelsTest : public ::testing::Test {
 protected:
  CadesLevelsTest()
      : now_(absl::Now()),
        root_(Issue("Test Root", nullptr, now_ - absl::Hours(24), now_ + absl::Hours(24 * 3650),
                    true)),
        ca_(Issue("Test Qualified CA", &root_, now_ - absl::Hours(24),
                  now_ + absl::Hours(24 * 3650), true)),
        signer_(Issue("Ana Petrović", &ca_, now_ - absl::Hours(24), now_ + absl::Hours(24 * 365),
                      false)),
        tsa_(Issue("Test TSA", &ca_, now_ - absl::Hours(24), now_ + absl::Hours(24 * 3650), false,
                   /*tsa=*/true)) {}

  std::string BT() {
    auto bb = Sign({.content_sha256 = Sha256(content_),
                    .signer_cert_der = signer_.der(),
                    .chain_der = {ca_.der()},
                    .signing_time = now_},
                   [this](const std::string& d) { return SignWith(signer_.key.get(), d); });
    EXPECT_TRUE(bb.ok()) << bb.status();
    auto bt =
        AddSignatureTimestamp(*bb, [this](const std::string& q) { return SoftwareTsa(tsa_, q); });
    EXPECT_TRUE(bt.ok()) << bt.status();
    return bt.ok() ? *bt : "";
  }

  std::string BLT(int signer_status, absl::Time revoked_at = absl::InfinitePast()) {
    ValidationData data{.certificates_der = {signer_.der(), ca_.der(), tsa_.der(), root_.der()}};
    data.ocsp_responses_der.push_back(OcspResponse(
        ca_, {{&signer_, signer_status, revoked_at}, {&tsa_, V_OCSP_CERTSTATUS_GOOD, {}}}));
    // The CA's own status: the root's word, as an OCSP response here.
    data.ocsp_responses_der.push_back(OcspResponse(root_, {{&ca_, V_OCSP_CERTSTATUS_GOOD, {}}}));
    auto blt = AddValidationData(BT(), data);
    EXPECT_TRUE(blt.ok()) << blt.status();
    return blt.ok() ? *blt : "";
  }

  Report Verify(const std::string& p7s, absl::Time at, const std::string& content = "") {
    auto r = VerifyDetached(p7s, Sha256(content.empty() ? content_ : content),
                            {.trust_anchors_der = {root_.der()}, .now = at});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : Report{};
  }

  const absl::Time now_;
  const std::string content_ = "Ugovor o zakupu stana, Beograd\n";
  Party root_, ca_, signer_, tsa_;
};

TEST_F(CadesLevelsTest, BltPassesNowAndAfterTheCertificateExpired) {
  const std::string p7s = BLT(V_OCSP_CERTSTATUS_GOOD);
  Report r = Verify(p7s, now_ + absl::Minutes(1));
  EXPECT_EQ(r.indication, Indication::kTotalPassed) << absl::StrJoin(r.problems, "; ");
  EXPECT_EQ(r.level, "B-LT");
  ASSERT_TRUE(r.timestamp_time.has_value());
  EXPECT_LE(absl::AbsDuration(*r.timestamp_time - now_), absl::Seconds(5));
  EXPECT_EQ(r.signer, "CN=Ana Petrović,C=RS");
  ASSERT_EQ(r.chain.size(), 3u);
  EXPECT_EQ(r.chain[0].status, "good");
  EXPECT_EQ(r.chain[2].status, "trust anchor");
  EXPECT_EQ(r.tsa, "CN=Test TSA,C=RS");

  // Two years on the signer's certificate (one year) has expired: the timestamp proves the
  // signature is older, the embedded OCSP response its status then.
  r = Verify(p7s, now_ + absl::Hours(24 * 730));
  EXPECT_EQ(r.indication, Indication::kTotalPassed) << absl::StrJoin(r.problems, "; ");

  // openssl accepts the file with the OCSP responses in SignedData.crls.
  char dir_template[] = "/tmp/cades-levels.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  std::ofstream(dir + "/doc.txt", std::ios::binary) << content_;
  std::ofstream(dir + "/doc.p7s", std::ios::binary) << p7s;
  OsslPtr<BIO> pem(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(pem.get(), root_.cert.get());
  char* data = nullptr;
  const long len = BIO_get_mem_data(pem.get(), &data);
  std::ofstream(dir + "/root.pem") << std::string(data, static_cast<size_t>(len));
  std::string out;
  EXPECT_EQ(
      testing::RunCommand(
          absl::StrCat("openssl cms -verify -binary -inform DER -in ", dir, "/doc.p7s -content ",
                       dir, "/doc.txt -purpose any -CAfile ", dir, "/root.pem -out /dev/null"),
          &out),
      0)
      << out;
  testing::RunCommand(absl::StrCat("openssl cms -cmsout -print -inform DER -in ", dir, "/doc.p7s"),
                      &out);
  EXPECT_NE(out.find("1.3.6.1.5.5.7.16.2"), std::string::npos) << out;  // id-ri-ocsp-response.
  testing::RunCommand(absl::StrCat("rm -rf ", dir), &out);
}

TEST_F(CadesLevelsTest, RevokedAfterTheTimestampStillPassesRevokedBeforeFails) {
  Report later =
      Verify(BLT(V_OCSP_CERTSTATUS_REVOKED, now_ + absl::Hours(2)), now_ + absl::Hours(3));
  EXPECT_EQ(later.indication, Indication::kTotalPassed) << absl::StrJoin(later.problems, "; ");
  ASSERT_TRUE(later.chain[0].revoked_at.has_value());

  Report before =
      Verify(BLT(V_OCSP_CERTSTATUS_REVOKED, now_ - absl::Hours(2)), now_ + absl::Minutes(1));
  EXPECT_EQ(before.indication, Indication::kTotalFailed);
  EXPECT_EQ(before.sub_indication, "REVOKED");
}

TEST_F(CadesLevelsTest, WithoutRevocationDataBtIsIndeterminate) {
  Report r = Verify(BT(), now_ + absl::Minutes(1));
  EXPECT_EQ(r.indication, Indication::kIndeterminate);
  EXPECT_EQ(r.sub_indication, "TRY_LATER");
  EXPECT_EQ(r.level, "B-T");
  EXPECT_TRUE(r.timestamp_valid);
}

TEST_F(CadesLevelsTest, ChangedContentOrSignatureFails) {
  const std::string p7s = BLT(V_OCSP_CERTSTATUS_GOOD);
  Report changed = Verify(p7s, now_ + absl::Minutes(1), "Ugovor o zakupu stana, Novi Sad\n");
  EXPECT_EQ(changed.indication, Indication::kTotalFailed);
  EXPECT_EQ(changed.sub_indication, "HASH_FAILURE");

  // One byte of the signed attributes' signature value changed (its last byte).
  auto value_at = p7s.find(std::string("\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 10));
  ASSERT_NE(value_at, std::string::npos);
  std::string tampered = p7s;
  bool flipped = false;
  // Flip a byte inside the first SignerInfo's signature value: the OCTET STRING after the
  // signer's ecdsa-with-SHA256 AlgorithmIdentifier (the certificates' use BIT STRING).
  for (size_t at = tampered.find(std::string("\x2a\x86\x48\xce\x3d\x04\x03\x02", 8));
       at != std::string::npos && !flipped;
       at = tampered.find(std::string("\x2a\x86\x48\xce\x3d\x04\x03\x02", 8), at + 1)) {
    const size_t next = at + 8;
    if (next < tampered.size() && tampered[next] == '\x04') {
      tampered[next + 10] ^= 0x01;
      flipped = true;
    }
  }
  ASSERT_TRUE(flipped);
  Report bad = Verify(tampered, now_ + absl::Minutes(1));
  EXPECT_EQ(bad.indication, Indication::kTotalFailed);

  Report garbage = Verify("not a signature", now_);
  EXPECT_EQ(garbage.sub_indication, "FORMAT_FAILURE");
}

}  // namespace
}  // namespace qsign::cades
