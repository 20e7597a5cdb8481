#include "common/cades/timestamp.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ts.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cades/der.h"
#include "common/cades/signed_data.h"
#include "common/ossl.h"
#include "common/strings.h"

namespace qsign::cades {
namespace {

// Big-endian magnitude of an INTEGER; empty for 0 or absent.
std::string IntegerBytes(const ASN1_INTEGER* i) {
  if (i == nullptr) return "";
  OsslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(i, nullptr));
  if (!bn) return "";
  std::string out(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// SHA-256, SHA-384 or SHA-512 by digest length; nullptr for another length.
const EVP_MD* DigestOfLength(size_t length) {
  if (length == 32) return EVP_sha256();
  if (length == 48) return EVP_sha384();
  if (length == 64) return EVP_sha512();
  return nullptr;
}

std::string StripZeros(std::string_view s) {
  while (!s.empty() && s.front() == '\0') s.remove_prefix(1);
  return std::string(s);
}

absl::StatusOr<TimestampToken> FromTstInfo(TS_TST_INFO* tst, std::string token_der) {
  TimestampToken out{.der = std::move(token_der)};
  const ASN1_GENERALIZEDTIME* when = TS_TST_INFO_get_time(tst);  // Owned by tst.
  struct tm tm {};
  if (when == nullptr || ASN1_TIME_to_tm(when, &tm) != 1) {
    return absl::InvalidArgumentError("timestamp token: no genTime");
  }
  out.gen_time = absl::FromTM(tm, absl::UTCTimeZone());
  out.serial_hex =
      absl::AsciiStrToUpper(absl::BytesToHexString(IntegerBytes(TS_TST_INFO_get_serial(tst))));
  char oid[128] = {0};
  const ASN1_OBJECT* policy = TS_TST_INFO_get_policy_id(tst);  // Owned by tst.
  if (policy != nullptr) OBJ_obj2txt(oid, sizeof(oid), policy, 1);
  out.policy_oid = oid;
  return out;
}

}  // namespace

std::string RandomNonce() {
  std::string nonce(8, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size()));
  nonce[0] = static_cast<char>(nonce[0] | 0x01);  // Never leading zeros: compared as bytes.
  return nonce;
}

absl::StatusOr<std::string> TimestampQuery(std::string_view sha256, std::string_view nonce,
                                           bool cert_req) {
  const EVP_MD* md = DigestOfLength(sha256.size());
  if (md == nullptr) return absl::InvalidArgumentError("imprint: not SHA-256/384/512");
  if (nonce.size() > 32) return absl::InvalidArgumentError("nonce: at most 32 bytes");
  OsslPtr<TS_REQ> req(TS_REQ_new());
  OsslPtr<TS_MSG_IMPRINT> imprint(TS_MSG_IMPRINT_new());
  OsslPtr<X509_ALGOR> algo(X509_ALGOR_new());
  if (!req || !imprint || !algo) return OpenSslError("TimeStampReq");
  X509_ALGOR_set_md(algo.get(), md);
  if (TS_REQ_set_version(req.get(), 1) != 1 ||
      TS_MSG_IMPRINT_set_algo(imprint.get(), algo.get()) != 1 ||
      TS_MSG_IMPRINT_set_msg(imprint.get(), const_cast<unsigned char*>(Bytes(sha256)),
                             static_cast<int>(sha256.size())) != 1 ||
      TS_REQ_set_msg_imprint(req.get(), imprint.get()) != 1 ||
      TS_REQ_set_cert_req(req.get(), cert_req ? 1 : 0) != 1) {
    return OpenSslError("TimeStampReq");
  }
  if (!nonce.empty()) {
    OsslPtr<BIGNUM> bn(BN_bin2bn(Bytes(nonce), static_cast<int>(nonce.size()), nullptr));
    OsslPtr<ASN1_INTEGER> n(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    if (!n || TS_REQ_set_nonce(req.get(), n.get()) != 1) return OpenSslError("nonce");
  }
  std::string der = ToDer(req.get(), i2d_TS_REQ);
  if (der.empty()) return OpenSslError("TimeStampReq encoding");
  return der;
}

absl::StatusOr<TimestampToken> ParseTimestampReply(std::string_view reply_der,
                                                   std::string_view sha256,
                                                   std::string_view nonce) {
  const unsigned char* p = Bytes(reply_der);
  OsslPtr<TS_RESP> resp(d2i_TS_RESP(nullptr, &p, static_cast<long>(reply_der.size())));
  if (!resp || p != Bytes(reply_der) + reply_der.size()) {
    ERR_clear_error();
    return absl::InvalidArgumentError("timestamp reply: not a DER TimeStampResp");
  }
  TS_STATUS_INFO* info = TS_RESP_get_status_info(resp.get());  // Owned by resp.
  const long status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(info));
  if (status != 0 && status != 1) {
    std::vector<std::string> text;
    const STACK_OF(ASN1_UTF8STRING)* texts = TS_STATUS_INFO_get0_text(info);
    for (int i = 0; texts != nullptr && i < sk_ASN1_UTF8STRING_num(texts); ++i) {
      text.push_back(StringOf(sk_ASN1_UTF8STRING_value(texts, i)));
    }
    return absl::FailedPreconditionError(absl::StrCat("the TSA refused the timestamp (PKIStatus ",
                                                      status, text.empty() ? "" : ": ",
                                                      absl::StrJoin(text, "; "), ")"));
  }
  TS_TST_INFO* tst = TS_RESP_get_tst_info(resp.get());  // Owned by resp.
  PKCS7* token = TS_RESP_get_token(resp.get());         // Owned by resp.
  if (tst == nullptr || token == nullptr) {
    return absl::InvalidArgumentError("timestamp reply: granted without a token");
  }
  TS_MSG_IMPRINT* imprint = TS_TST_INFO_get_msg_imprint(tst);  // Owned by tst.
  const ASN1_STRING* msg = TS_MSG_IMPRINT_get_msg(imprint);
  const X509_ALGOR* algo = TS_MSG_IMPRINT_get_algo(imprint);
  const ASN1_OBJECT* algo_oid = nullptr;
  X509_ALGOR_get0(&algo_oid, nullptr, nullptr, algo);
  const EVP_MD* md = DigestOfLength(sha256.size());
  if (md == nullptr || OBJ_obj2nid(algo_oid) != EVP_MD_get_type(md) || StringOf(msg) != sha256) {
    return absl::InvalidArgumentError("timestamp reply: the token is for another imprint");
  }
  if (StripZeros(IntegerBytes(TS_TST_INFO_get_nonce(tst))) != StripZeros(nonce)) {
    return absl::InvalidArgumentError("timestamp reply: the nonce is not the query's");
  }
  std::string token_der = ToDer(token, i2d_PKCS7);
  if (token_der.empty()) return OpenSslError("timestamp token encoding");
  return FromTstInfo(tst, std::move(token_der));
}

absl::StatusOr<TimestampToken> ReadTimestampToken(std::string_view token_der) {
  const unsigned char* p = Bytes(token_der);
  OsslPtr<PKCS7> token(d2i_PKCS7(nullptr, &p, static_cast<long>(token_der.size())));
  if (!token || p != Bytes(token_der) + token_der.size()) {
    ERR_clear_error();
    return absl::InvalidArgumentError("timestamp token: not a DER ContentInfo");
  }
  OsslPtr<TS_TST_INFO> tst(PKCS7_to_TS_TST_INFO(token.get()));
  if (!tst) {
    ERR_clear_error();
    return absl::InvalidArgumentError("timestamp token: no TSTInfo");
  }
  return FromTstInfo(tst.get(), std::string(token_der));
}

absl::StatusOr<TimestampToken> RequestTimestamp(std::string_view sha256, const TimestampFn& tsa) {
  const std::string nonce = RandomNonce();
  auto query = TimestampQuery(sha256, nonce, /*cert_req=*/true);
  if (!query.ok()) return query.status();
  auto reply = tsa(*query);
  if (!reply.ok()) return reply.status();
  return ParseTimestampReply(*reply, sha256, nonce);
}

std::string GrantedReply(std::string_view token_der) {
  // TimeStampResp { PKIStatusInfo { granted(0) }, timeStampToken }.
  return Tlv(0x30, absl::StrCat(Tlv(0x30, Tlv(0x02, std::string(1, '\0'))), Av(token_der)));
}

std::string RejectionReply(int fail_info_bit, std::string_view text) {
  // PKIStatusInfo { status rejection(2), statusString { text }, failInfo (named bits, DER) }.
  const int bit = fail_info_bit;
  std::string bits(static_cast<size_t>(bit / 8 + 1), '\0');
  bits.back() = static_cast<char>(0x80 >> (bit % 8));
  const std::string fail_info = Tlv(0x03, std::string(1, static_cast<char>(7 - bit % 8)) + bits);
  const std::string status_info = Tlv(
      0x30, absl::StrCat(Tlv(0x02, std::string(1, '\x02')), Tlv(0x30, Tlv(0x0c, text)), fail_info));
  return Tlv(0x30, status_info);
}

absl::StatusOr<std::string> AddSignatureTimestamp(std::string_view cms_der,
                                                  const TimestampFn& tsa) {
  auto cms = CmsOf(cms_der);
  if (!cms.ok()) return cms.status();
  auto si = OnlySignerInfo(cms->get());
  if (!si.ok()) return si.status();
  const std::string value = StringOf(CMS_SignerInfo_get0_signature(*si));
  auto token = RequestTimestamp(Sha256(value), tsa);
  if (!token.ok()) return token.status();
  if (CMS_unsigned_add1_attr_by_NID(*si, NID_id_smime_aa_timeStampToken, V_ASN1_SEQUENCE,
                                    token->der.data(), static_cast<int>(token->der.size())) != 1) {
    return OpenSslError("signature-time-stamp attribute");
  }
  return CmsDer(cms->get());
}

}  // namespace qsign::cades
