#include "blob_store.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "ids.h"

namespace sopflow::archiver {

namespace fs = std::filesystem;

DirectoryBlobStore::DirectoryBlobStore(std::string root) : root_(std::move(root)) { fs::create_directories(root_); }

std::string DirectoryBlobStore::PathOf(const std::string& sha256) const {
  static const std::regex kHex("[0-9a-f]{64}");
  if (!std::regex_match(sha256, kHex)) throw std::invalid_argument("not a sha256: " + sha256);
  return root_ + "/" + sha256.substr(0, 2) + "/" + sha256.substr(2);
}

std::string DirectoryBlobStore::Put(const std::string& data) {
  std::string sha = Sha256Hex(data);
  std::string path = PathOf(sha);
  if (fs::exists(path)) return sha;  // content-addressed: already there
  fs::create_directories(fs::path(path).parent_path());
  std::string tmp = path + ".tmp-" + RandomHex(4);
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  fs::rename(tmp, path);
  return sha;
}

std::optional<std::string> DirectoryBlobStore::Get(const std::string& sha256) const {
  std::ifstream in(PathOf(sha256), std::ios::binary);
  if (!in) return std::nullopt;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool DirectoryBlobStore::Remove(const std::string& sha256) {
  std::error_code ec;
  return fs::remove(PathOf(sha256), ec);
}

}  // namespace sopflow::archiver
