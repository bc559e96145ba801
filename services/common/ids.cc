#include "ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <stdexcept>

namespace sopflow {
namespace {
constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void FillRandom(unsigned char* buf, size_t n) {
  if (RAND_bytes(buf, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}
}  // namespace

std::string NewRunId(TimePoint now) {
  uint64_t ms = static_cast<uint64_t>(UnixMillis(now));
  std::string id(20, '0');
  for (int i = 9; i >= 0; --i) {  // 10 chars = 50 bits of milliseconds
    id[i] = kCrockford[ms & 31];
    ms >>= 5;
  }
  unsigned char rnd[10];
  FillRandom(rnd, sizeof rnd);
  for (int i = 0; i < 10; ++i) id[10 + i] = kCrockford[rnd[i] & 31];
  return id;
}

std::string DefaultReplicaId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid()) + "-" + RandomHex(3);
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  FillRandom(reinterpret_cast<unsigned char*>(raw.data()), bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace sopflow
