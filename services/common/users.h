// Users and their bearer tokens, from the token file (path from config).
//
//   users:
//     - id: rita                  # user id, shown in histories
//       name: Rita Hastarita
//       unit: biro-organisasi     # the unit the user works in
//       roles: [karo_organisasi]  # pelaksana ids the user may act as
//       admin: false              # admins deploy definitions, see all
//       email: rita@example.go.id
//       language: id              # e-mail language: id (default) or en
//       job_types: []             # SYSTEM job types this user may work
//       permissions: []           # e.g. attach_documents (service accounts)
//       token_sha256: 5e88...     # or `token: <plain>` for local demos
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sopflow {

struct User {
  std::string id;
  std::string name;
  std::string unit;
  std::vector<std::string> roles;
  std::vector<std::string> job_types;
  std::vector<std::string> permissions;
  std::string email;
  std::string language = "id";
  bool admin = false;

  bool HasRole(const std::string& role) const;
  bool MayWorkJob(const std::string& job_type) const;
  bool Has(const std::string& permission) const;
};

class UserDirectory {
 public:
  // Throws std::runtime_error naming file:line for a malformed file.
  static std::shared_ptr<const UserDirectory> LoadFile(const std::string& path);
  static std::shared_ptr<const UserDirectory> LoadText(const std::string& text, const std::string& name);

  // The user a presented bearer token belongs to.
  std::optional<User> FindByToken(const std::string& token) const;
  std::optional<User> FindById(const std::string& id) const;
  // The same without a copy; null when unknown. Valid as long as this directory.
  const User* ById(const std::string& id) const;
  const std::vector<User>& users() const { return users_; }
  // The users holding `role` in `unit`, in the file's order: looked up, not
  // searched, since every notification asks it and a province's directory
  // holds thousands of users, most with the same few roles.
  std::vector<const User*> InRole(const std::string& role, const std::string& unit) const;

 private:
  std::vector<User> users_;
  std::map<std::string, size_t> by_token_hash_;
  std::map<std::string, size_t> by_id_;
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> by_role_and_unit_;
};

// What one service needs of the account it calls another with.
struct ServiceAccount {
  std::string service;     // e.g. "notifier", for the message
  std::string flag;        // the option that gave the token, e.g. "--service-token"
  std::string permission;  // e.g. "read_runs"; admins hold every one
  std::string needed_for;  // e.g. "the router's GetTask asks of a service"
};

// The user behind `token`, checked when a service starts: the services
// share the tokens file, so a token the other service would refuse is
// known here, and said at once (naming the option and the file) instead
// of failing every call made with it later, in a log line far from the cause.
// Throws std::invalid_argument.
User RequireServiceAccount(const UserDirectory& users, const std::string& tokens_file, const std::string& token,
                           const ServiceAccount& account);

}  // namespace sopflow
