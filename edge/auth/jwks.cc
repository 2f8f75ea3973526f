#include "edge/auth/jwks.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <boost/json.hpp>
#include <fstream>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "edge/auth/base64url.h"

namespace parley::edge {
namespace {

constexpr size_t kMaxJwksBytes = 1 << 20;
constexpr int kMinRsaBits = 2048;
constexpr size_t kP256CoordinateBytes = 32;

struct BnDeleter {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
struct ParamBldDeleter {
  void operator()(OSSL_PARAM_BLD* bld) const { OSSL_PARAM_BLD_free(bld); }
};
struct ParamDeleter {
  void operator()(OSSL_PARAM* params) const { OSSL_PARAM_free(params); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};

std::shared_ptr<EVP_PKEY> WrapPkey(EVP_PKEY* pkey) {
  return std::shared_ptr<EVP_PKEY>(pkey, [](EVP_PKEY* p) { EVP_PKEY_free(p); });
}

// Returns the string member `name`, or nullopt when it is absent or not a string.
std::optional<std::string_view> StringMember(const boost::json::object& object,
                                             std::string_view name) {
  const boost::json::value* value = object.if_contains(name);
  if (value == nullptr || !value->is_string()) {
    return std::nullopt;
  }
  const boost::json::string& s = value->get_string();
  return std::string_view(s.data(), s.size());
}

absl::StatusOr<std::string> DecodeMember(const boost::json::object& object, std::string_view name,
                                         absl::string_view what) {
  std::optional<std::string_view> text = StringMember(object, name);
  if (!text.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing \"", std::string(name), "\""));
  }
  std::optional<std::string> bytes = Base64UrlDecode(*text);
  if (!bytes.has_value() || bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", std::string(name), "\" is not base64url"));
  }
  return *std::move(bytes);
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> PkeyFromParams(const char* key_type, OSSL_PARAM_BLD* bld,
                                                         absl::string_view what) {
  std::unique_ptr<OSSL_PARAM, ParamDeleter> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, key_type, nullptr));
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) <= 0) {
    return absl::InternalError(absl::StrCat(what, ": OpenSSL could not set up key import"));
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0 ||
      raw == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": key material rejected by OpenSSL"));
  }
  std::shared_ptr<EVP_PKEY> pkey = WrapPkey(raw);
  // Checks, among others, that an EC point lies on the curve.
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> check(
      EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (check == nullptr || EVP_PKEY_public_check(check.get()) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": public key check failed"));
  }
  return pkey;
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> RsaKey(const boost::json::object& jwk,
                                                 absl::string_view what) {
  absl::StatusOr<std::string> n = DecodeMember(jwk, "n", what);
  if (!n.ok()) {
    return n.status();
  }
  absl::StatusOr<std::string> e = DecodeMember(jwk, "e", what);
  if (!e.ok()) {
    return e.status();
  }
  std::unique_ptr<BIGNUM, BnDeleter> bn_n(BN_bin2bn(
      reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr));
  std::unique_ptr<BIGNUM, BnDeleter> bn_e(BN_bin2bn(
      reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr));
  if (bn_n == nullptr || bn_e == nullptr) {
    return absl::InternalError(absl::StrCat(what, ": out of memory"));
  }
  if (BN_num_bits(bn_n.get()) < kMinRsaBits) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": RSA modulus has ",
                                                   BN_num_bits(bn_n.get()), " bits; at least ",
                                                   kMinRsaBits, " are required"));
  }
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get())) {
    return absl::InternalError(absl::StrCat(what, ": out of memory"));
  }
  return PkeyFromParams("RSA", bld.get(), what);
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> EcP256Key(const boost::json::object& jwk,
                                                    absl::string_view what) {
  absl::StatusOr<std::string> x = DecodeMember(jwk, "x", what);
  if (!x.ok()) {
    return x.status();
  }
  absl::StatusOr<std::string> y = DecodeMember(jwk, "y", what);
  if (!y.ok()) {
    return y.status();
  }
  // RFC 7518 section 6.2.1.2: coordinates are the full-length big-endian octets.
  if (x->size() != kP256CoordinateBytes || y->size() != kP256CoordinateBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": P-256 coordinates must be 32 bytes each"));
  }
  std::string point = absl::StrCat("\x04", *x, *y);  // uncompressed SEC1 point
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size())) {
    return absl::InternalError(absl::StrCat(what, ": out of memory"));
  }
  return PkeyFromParams("EC", bld.get(), what);
}

}  // namespace

absl::StatusOr<KeySet> ParseJwks(std::string_view json) {
  boost::system::error_code ec;
  boost::json::value document =
      boost::json::parse(boost::json::string_view(json.data(), json.size()), ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("JWKS is not valid JSON: ", ec.message()));
  }
  const boost::json::object* root = document.if_object();
  const boost::json::value* keys = root != nullptr ? root->if_contains("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  }
  KeySet set;
  int index = 0;
  for (const boost::json::value& entry : keys->get_array()) {
    std::string what = absl::StrCat("JWKS key #", index++);
    const boost::json::object* jwk = entry.if_object();
    if (jwk == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is not an object"));
    }
    std::optional<std::string_view> kid = StringMember(*jwk, "kid");
    if (kid.has_value()) {
      absl::StrAppend(&what, " (kid \"", std::string(*kid), "\")");
    }
    std::optional<std::string_view> kty = StringMember(*jwk, "kty");
    std::optional<std::string_view> use = StringMember(*jwk, "use");
    std::optional<std::string_view> alg = StringMember(*jwk, "alg");
    if (use.has_value() && *use != "sig") {
      ++set.skipped;
      continue;
    }
    PublicKey key;
    key.kid = std::string(kid.value_or(""));
    absl::StatusOr<std::shared_ptr<EVP_PKEY>> pkey;
    if (kty == "RSA" && (!alg.has_value() || *alg == "RS256")) {
      key.type = KeyType::kRsa;
      pkey = RsaKey(*jwk, what);
    } else if (kty == "EC" && StringMember(*jwk, "crv") == "P-256" &&
               (!alg.has_value() || *alg == "ES256")) {
      key.type = KeyType::kEcP256;
      pkey = EcP256Key(*jwk, what);
    } else {
      ++set.skipped;
      continue;
    }
    if (!pkey.ok()) {
      return pkey.status();
    }
    key.pkey = *std::move(pkey);
    set.keys.push_back(std::move(key));
  }
  if (set.keys.empty()) {
    return absl::InvalidArgumentError(
        "JWKS has no usable key (RSA of at least 2048 bits for RS256, or EC P-256 for ES256)");
  }
  return set;
}

absl::StatusOr<KeySet> LoadJwksFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open JWKS file ", path));
  }
  std::string text;
  text.resize(kMaxJwksBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::UnavailableError(absl::StrCat("cannot read JWKS file ", path));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxJwksBytes) {
    return absl::InvalidArgumentError(absl::StrCat("JWKS file ", path, " is larger than 1 MiB"));
  }
  absl::StatusOr<KeySet> set = ParseJwks(text);
  if (!set.ok()) {
    return absl::Status(set.status().code(), absl::StrCat(path, ": ", set.status().message()));
  }
  return set;
}

}  // namespace parley::edge
