// Content-addressed blob storage: each blob is stored once, under its
// SHA-256. The directory store is the default; an object store (S3, MinIO)
// implements the same interface.
#pragma once

#include <optional>
#include <string>

namespace sopflow::archiver {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // Stores `data` (once) and returns its lowercase hex SHA-256.
  virtual std::string Put(const std::string& data) = 0;
  virtual std::optional<std::string> Get(const std::string& sha256) const = 0;
  virtual bool Remove(const std::string& sha256) = 0;
};

// <root>/ab/cdef... (the first two hex digits as a folder). Writes go to a
// temporary file and are renamed into place, so a blob is whole or absent.
class DirectoryBlobStore final : public BlobStore {
 public:
  explicit DirectoryBlobStore(std::string root);
  std::string Put(const std::string& data) override;
  std::optional<std::string> Get(const std::string& sha256) const override;
  bool Remove(const std::string& sha256) override;
  std::string PathOf(const std::string& sha256) const;

 private:
  std::string root_;
};

}  // namespace sopflow::archiver
