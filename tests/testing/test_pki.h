// The tests' PKI: helpers that play the relying party and a throwaway CA with plain OpenSSL
// (independently of the code under test).
#ifndef QSIGN_TESTS_TESTING_TEST_PKI_H_
#define QSIGN_TESTS_TESTING_TEST_PKI_H_

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <string>

namespace qsign::testing {

// Verifies a signature over a pre-computed digest against a SubjectPublicKeyInfo.
// ECDSA signatures are DER; for RSA, `rsa_padding` selects PKCS#1 v1.5 or PSS (salt = digest).
bool VerifyDigestSignature(const std::string& spki_der, const std::string& digest,
                           const std::string& signature, const EVP_MD* md,
                           int rsa_padding = RSA_PKCS1_PADDING);

// ECDSA raw r||s -> DER Ecdsa-Sig-Value.
std::string EcdsaRawToDer(const std::string& raw);

// A DER certificate (CN=Test, valid from now for 5 years) for the key in `spki_der`, signed
// by a fresh software CA key.
std::string CertificateFor(const std::string& spki_der);

// The SubjectPublicKeyInfo (DER) of a DER certificate; empty if it does not parse.
std::string SpkiOfCertificate(const std::string& certificate_der);

// The signature value of the only SignerInfo of a DER CMS (what a signature timestamp stamps);
// empty if it does not parse or has another number of SignerInfos.
std::string SignatureValue(const std::string& cms_der);

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_TEST_PKI_H_
