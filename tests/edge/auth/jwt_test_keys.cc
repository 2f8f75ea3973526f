#include "tests/edge/auth/jwt_test_keys.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdlib>

#include "edge/auth/base64url.h"

namespace parley::edge::testing {
namespace {

std::shared_ptr<EVP_PKEY> Wrap(EVP_PKEY* pkey) {
  if (pkey == nullptr) {
    std::abort();
  }
  return std::shared_ptr<EVP_PKEY>(pkey, [](EVP_PKEY* p) { EVP_PKEY_free(p); });
}

std::string BigNumParam(EVP_PKEY* pkey, const char* name, int pad_to = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
    std::abort();
  }
  int size = pad_to > 0 ? pad_to : BN_num_bytes(bn);
  std::string out(static_cast<size_t>(size), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), size);
  BN_free(bn);
  return out;
}

std::string DigestSign(EVP_PKEY* pkey, std::string_view input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t length = 0;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) != 1 ||
      EVP_DigestSign(ctx, nullptr, &length, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    std::abort();
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    std::abort();
  }
  signature.resize(length);
  EVP_MD_CTX_free(ctx);
  return signature;
}

std::string SigningInput(std::string_view header_json, std::string_view claims_json) {
  return Base64UrlEncode(header_json) + "." + Base64UrlEncode(claims_json);
}

}  // namespace

TestKey GenerateRsaKey(std::string kid, int bits) {
  return {Wrap(EVP_RSA_gen(static_cast<unsigned int>(bits))), std::move(kid)};
}

TestKey GenerateEcKey(std::string kid) { return {Wrap(EVP_EC_gen("P-256")), std::move(kid)}; }

std::string PublicJwk(const TestKey& key, std::string_view alg) {
  std::string jwk = "{";
  if (!key.kid.empty()) {
    jwk += "\"kid\":\"" + key.kid + "\",";
  }
  if (!alg.empty()) {
    jwk += "\"alg\":\"" + std::string(alg) + "\",";
  }
  if (EVP_PKEY_is_a(key.pkey.get(), "RSA")) {
    jwk += "\"kty\":\"RSA\",\"n\":\"" +
           Base64UrlEncode(BigNumParam(key.pkey.get(), OSSL_PKEY_PARAM_RSA_N)) + "\",\"e\":\"" +
           Base64UrlEncode(BigNumParam(key.pkey.get(), OSSL_PKEY_PARAM_RSA_E)) + "\"}";
  } else {
    jwk += "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" +
           Base64UrlEncode(BigNumParam(key.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32)) +
           "\",\"y\":\"" +
           Base64UrlEncode(BigNumParam(key.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"}";
  }
  return jwk;
}

std::string PublicKeyPem(const TestKey& key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key.pkey.get());
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  return pem;
}

std::string RsaModulus(const TestKey& key) {
  return BigNumParam(key.pkey.get(), OSSL_PKEY_PARAM_RSA_N);
}

std::string SignHs256(std::string_view header_json, std::string_view claims_json,
                      std::string_view secret) {
  std::string input = SigningInput(header_json, claims_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t length = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                sizeof(mac), &length) == nullptr) {
    std::abort();
  }
  return input + "." +
         Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string SignRs256(std::string_view header_json, std::string_view claims_json,
                      const TestKey& key) {
  std::string input = SigningInput(header_json, claims_json);
  return input + "." + Base64UrlEncode(DigestSign(key.pkey.get(), input));
}

std::string SignEs256(std::string_view header_json, std::string_view claims_json,
                      const TestKey& key, bool raw_signature) {
  std::string input = SigningInput(header_json, claims_json);
  std::string der = DigestSign(key.pkey.get(), input);
  if (!raw_signature) {
    return input + "." + Base64UrlEncode(der);
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (sig == nullptr) {
    std::abort();
  }
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return input + "." + Base64UrlEncode(raw);
}

}  // namespace parley::edge::testing
