// Owning handles for the OpenSSL objects hsm/ uses: every one is freed by its typed deleter.
#ifndef QSIGN_HSM_OSSL_H_
#define QSIGN_HSM_OSSL_H_

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include <memory>

namespace qsign::hsm {

#define QSIGN_OSSL_PTR(alias, type, free_fn)       \
  struct alias##Deleter {                          \
    void operator()(type* p) const { free_fn(p); } \
  };                                               \
  using alias = std::unique_ptr<type, alias##Deleter>

QSIGN_OSSL_PTR(EvpPkeyPtr, EVP_PKEY, EVP_PKEY_free);
QSIGN_OSSL_PTR(EvpPkeyCtxPtr, EVP_PKEY_CTX, EVP_PKEY_CTX_free);
QSIGN_OSSL_PTR(EvpMdCtxPtr, EVP_MD_CTX, EVP_MD_CTX_free);
QSIGN_OSSL_PTR(OsslParamBldPtr, OSSL_PARAM_BLD, OSSL_PARAM_BLD_free);
QSIGN_OSSL_PTR(OsslParamPtr, OSSL_PARAM, OSSL_PARAM_free);
QSIGN_OSSL_PTR(BignumPtr, BIGNUM, BN_free);
QSIGN_OSSL_PTR(EcdsaSigPtr, ECDSA_SIG, ECDSA_SIG_free);
QSIGN_OSSL_PTR(Asn1OctetStringPtr, ASN1_OCTET_STRING, ASN1_OCTET_STRING_free);

#undef QSIGN_OSSL_PTR

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_OSSL_H_
