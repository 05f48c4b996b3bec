// medmesh mask kernels: the mask PRG's keystreams (src/privacy/prg.ts) added into a vector
// modulo 2^32 in one pass, through the AES-128-CTR of the OpenSSL that Node itself carries.
//
// Why: in JavaScript every keystream chunk is a new Buffer from node:crypto's `update`, copied
// into WebAssembly memory to be added and copied back; the allocations, copies and their garbage
// collection cost more than the cipher (bench/masking, bench/round). Here each chunk of keystream
// is written into one reused, cache-resident buffer and added straight into the caller's vector.
//
// No cryptography is implemented here: the keystream is OpenSSL's EVP AES-128-CTR, the same code
// node:crypto's createCipheriv('aes-128-ctr') runs. The addon does not link libcrypto: its EVP
// symbols resolve at load time to those the Node binary exports (Node links OpenSSL statically
// and exports it for addons); only OpenSSL 3's headers are needed to build it (Debian:
// libssl-dev). The results are bit-identical to the JavaScript path (test/node/mask-kernel.test.ts).
//
// Exports:
//   addKeystreams(acc: Uint32Array, keys: Uint8Array(16m), iv: Uint8Array(16), skip: 0..15,
//                 signs: Int8Array(m) of ±1): acc[i] += Σ_t signs[t] · word i of stream t, where
//                 stream t is AES-128-CTR(keys[t], counter block iv) with its first `skip` bytes
//                 discarded (every stream at the same position: a slice of the vector).
//   expandKeystream(out: Uint32Array, key: Uint8Array(16), iv: Uint8Array(16), skip: 0..15):
//                 out = the same stream's words (what expandMask writes).
//   opensslVersion(): the OpenSSL version string these calls run on.
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr size_t kChunkBytes = 64 * 1024; // fits L2 with the vector's chunk beside it
alignas(64) const uint8_t kZeros[kChunkBytes] = {0};

struct Failure { std::string message; };

struct CtxFree { void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); } };
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

Ctx openStream(const uint8_t* key, const uint8_t* iv, size_t skip) {
  Ctx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw Failure{"EVP_CIPHER_CTX_new failed"};
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_ctr(), nullptr, key, iv) != 1) throw Failure{"EVP_EncryptInit_ex failed"};
  if (skip > 0) {
    uint8_t discard[16];
    int len = 0;
    const int ok = EVP_EncryptUpdate(ctx.get(), discard, &len, kZeros, static_cast<int>(skip));
    OPENSSL_cleanse(discard, sizeof discard); // keystream is mask material
    if (ok != 1 || len != static_cast<int>(skip)) throw Failure{"EVP_EncryptUpdate failed"};
  }
  return ctx;
}

void keystream(EVP_CIPHER_CTX* ctx, uint8_t* out, size_t bytes) {
  int len = 0;
  if (EVP_EncryptUpdate(ctx, out, &len, kZeros, static_cast<int>(bytes)) != 1 || static_cast<size_t>(len) != bytes) throw Failure{"EVP_EncryptUpdate failed"};
}

// ---- Node-API plumbing ----

void check(napi_env env, napi_status s, const char* what) {
  if (s != napi_ok) throw Failure{std::string(what) + " failed"};
  (void)env;
}

struct Typed { void* data = nullptr; size_t length = 0; napi_typedarray_type type = napi_uint8_array; };

Typed typedArray(napi_env env, napi_value v, napi_typedarray_type want, const char* name) {
  bool is = false;
  check(env, napi_is_typedarray(env, v, &is), "napi_is_typedarray");
  if (!is) throw Failure{std::string(name) + " must be a typed array"};
  Typed t;
  napi_value buffer;
  size_t offset = 0;
  check(env, napi_get_typedarray_info(env, v, &t.type, &t.length, &t.data, &buffer, &offset), "napi_get_typedarray_info");
  if (t.type != want) throw Failure{std::string(name) + " has the wrong element type"};
  if (t.length > 0 && t.data == nullptr) throw Failure{std::string(name) + " has no data"};
  return t;
}

size_t smallInt(napi_env env, napi_value v, uint32_t max, const char* name) {
  double x = -1;
  if (napi_get_value_double(env, v, &x) != napi_ok || !(x >= 0 && x <= max) || x != static_cast<double>(static_cast<uint32_t>(x))) throw Failure{std::string(name) + " out of range"};
  return static_cast<size_t>(x);
}

template <size_t N>
void args(napi_env env, napi_callback_info info, napi_value (&argv)[N]) {
  size_t argc = N;
  check(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr), "napi_get_cb_info");
  if (argc != N) throw Failure{"expected " + std::to_string(N) + " arguments"};
}

napi_value fail(napi_env env, const char* message) {
  napi_throw_error(env, "ERR_MEDMESH_MASK_KERNEL", message);
  return nullptr;
}

// no C++ exception may cross into Node: every callback ends in one of these
#define CATCH_ALL(env) \
  catch (const Failure& f) { return fail(env, f.message.c_str()); } \
  catch (const std::exception& e) { return fail(env, e.what()); } \
  catch (...) { return fail(env, "unexpected failure"); }

napi_value AddKeystreams(napi_env env, napi_callback_info info) {
  try {
    napi_value argv[5];
    args(env, info, argv);
    Typed acc = typedArray(env, argv[0], napi_uint32_array, "acc");
    Typed keys = typedArray(env, argv[1], napi_uint8_array, "keys");
    Typed iv = typedArray(env, argv[2], napi_uint8_array, "iv");
    size_t skip = smallInt(env, argv[3], 15, "skip");
    Typed signs = typedArray(env, argv[4], napi_int8_array, "signs");
    size_t m = signs.length;
    if (keys.length != 16 * m) throw Failure{"keys must hold 16 bytes per sign"};
    if (iv.length != 16) throw Failure{"iv must be 16 bytes"};
    const int8_t* sign = static_cast<const int8_t*>(signs.data);
    for (size_t t = 0; t < m; t++) if (sign[t] != 1 && sign[t] != -1) throw Failure{"signs must be 1 or -1"};
    std::vector<Ctx> streams;
    streams.reserve(m);
    for (size_t t = 0; t < m; t++) streams.push_back(openStream(static_cast<uint8_t*>(keys.data) + 16 * t, static_cast<uint8_t*>(iv.data), skip));
    alignas(64) static thread_local uint32_t ks[kChunkBytes / 4];
    uint32_t* a = static_cast<uint32_t*>(acc.data);
    const size_t words = acc.length;
    // all streams advance in lockstep, one chunk of the vector at a time, so that the chunk is
    // read and written while it is in cache instead of once per stream
    for (size_t off = 0; off < words; off += kChunkBytes / 4) {
      const size_t count = std::min(kChunkBytes / 4, words - off);
      uint32_t* dst = a + off;
      for (size_t t = 0; t < m; t++) {
        keystream(streams[t].get(), reinterpret_cast<uint8_t*>(ks), 4 * count);
        // unsigned arithmetic wraps modulo 2^32, as the JavaScript path's Uint32Array stores do
        if (sign[t] == 1) for (size_t i = 0; i < count; i++) dst[i] += ks[i];
        else for (size_t i = 0; i < count; i++) dst[i] -= ks[i];
      }
    }
    OPENSSL_cleanse(ks, sizeof ks); // the last chunk of mask keystream does not stay behind
    return nullptr;
  } CATCH_ALL(env)
}

napi_value ExpandKeystream(napi_env env, napi_callback_info info) {
  try {
    napi_value argv[4];
    args(env, info, argv);
    Typed out = typedArray(env, argv[0], napi_uint32_array, "out");
    Typed key = typedArray(env, argv[1], napi_uint8_array, "key");
    Typed iv = typedArray(env, argv[2], napi_uint8_array, "iv");
    size_t skip = smallInt(env, argv[3], 15, "skip");
    if (key.length != 16 || iv.length != 16) throw Failure{"key and iv must be 16 bytes"};
    Ctx stream = openStream(static_cast<uint8_t*>(key.data), static_cast<uint8_t*>(iv.data), skip);
    uint8_t* o = static_cast<uint8_t*>(out.data);
    const size_t bytes = 4 * out.length;
    for (size_t off = 0; off < bytes; off += kChunkBytes) keystream(stream.get(), o + off, std::min(kChunkBytes, bytes - off));
    return nullptr;
  } CATCH_ALL(env)
}

napi_value OpensslVersion(napi_env env, napi_callback_info) {
  napi_value s;
  const char* v = OpenSSL_version(OPENSSL_VERSION);
  napi_create_string_utf8(env, v == nullptr ? "unknown" : v, NAPI_AUTO_LENGTH, &s);
  return s;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
    {"addKeystreams", nullptr, AddKeystreams, nullptr, nullptr, nullptr, napi_default, nullptr},
    {"expandKeystream", nullptr, ExpandKeystream, nullptr, nullptr, nullptr, napi_default, nullptr},
    {"opensslVersion", nullptr, OpensslVersion, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

} // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
