#include "users.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ids.h"

namespace sopflow {

bool User::HasRole(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool User::Has(const std::string& permission) const {
  return admin || std::find(permissions.begin(), permissions.end(), permission) != permissions.end();
}

bool User::MayWorkJob(const std::string& job_type) const {
  return admin || std::find(job_types.begin(), job_types.end(), job_type) != job_types.end();
}

namespace {
std::vector<std::string> StringList(const YAML::Node& n) {
  std::vector<std::string> out;
  if (n && n.IsSequence())
    for (const auto& item : n) out.push_back(item.as<std::string>());
  return out;
}
}  // namespace

std::shared_ptr<const UserDirectory> UserDirectory::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open token file");
  std::stringstream ss;
  ss << in.rdbuf();
  return LoadText(ss.str(), path);
}

std::shared_ptr<const UserDirectory> UserDirectory::LoadText(const std::string& text, const std::string& name) {
  auto dir = std::make_shared<UserDirectory>();
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  const YAML::Node users = root["users"];
  if (!users || !users.IsSequence()) throw std::runtime_error(name + ": 'users' must be a list");
  for (const auto& u : users) {
    auto where = name + ":" + std::to_string(u.Mark().line + 1) + ": ";
    try {
      User user;
      user.id = u["id"].as<std::string>("");
      user.name = u["name"].as<std::string>(user.id);
      user.unit = u["unit"].as<std::string>("");
      user.roles = StringList(u["roles"]);
      user.job_types = StringList(u["job_types"]);
      user.permissions = StringList(u["permissions"]);
      user.email = u["email"].as<std::string>("");
      user.admin = u["admin"].as<bool>(false);
      user.language = u["language"].as<std::string>("id");
      if (user.language != "id" && user.language != "en") throw std::runtime_error("language must be id or en");
      std::string hash = u["token_sha256"].as<std::string>("");
      if (hash.empty() && u["token"]) hash = Sha256Hex(u["token"].as<std::string>());
      if (user.id.empty()) throw std::runtime_error("user without id");
      if (hash.empty()) throw std::runtime_error("user " + user.id + " has no token or token_sha256");
      if (dir->by_id_.count(user.id)) throw std::runtime_error("duplicate user id " + user.id);
      if (dir->by_token_hash_.count(hash)) throw std::runtime_error("user " + user.id + " reuses a token");
      dir->by_id_[user.id] = dir->users_.size();
      dir->by_token_hash_[hash] = dir->users_.size();
      for (const auto& role : user.roles) {
        auto& holders = dir->by_role_and_unit_[{role, user.unit}];
        if (holders.empty() || holders.back() != dir->users_.size()) holders.push_back(dir->users_.size());
      }
      dir->users_.push_back(std::move(user));
    } catch (const YAML::Exception& e) {
      throw std::runtime_error(where + e.msg);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(where + e.what());
    }
  }
  return dir;
}

std::optional<User> UserDirectory::FindByToken(const std::string& token) const {
  // Tokens are compared by hash, so the file need not hold them in clear.
  auto it = by_token_hash_.find(Sha256Hex(token));
  if (it == by_token_hash_.end()) return std::nullopt;
  return users_[it->second];
}

std::optional<User> UserDirectory::FindById(const std::string& id) const {
  const User* user = ById(id);
  if (!user) return std::nullopt;
  return *user;
}

const User* UserDirectory::ById(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &users_[it->second];
}

std::vector<const User*> UserDirectory::InRole(const std::string& role, const std::string& unit) const {
  std::vector<const User*> out;
  auto it = by_role_and_unit_.find({role, unit});
  if (it == by_role_and_unit_.end()) return out;
  out.reserve(it->second.size());
  for (size_t i : it->second) out.push_back(&users_[i]);
  return out;
}

User RequireServiceAccount(const UserDirectory& users, const std::string& tokens_file, const std::string& token,
                           const ServiceAccount& account) {
  auto user = users.FindByToken(token);
  if (!user)
    throw std::invalid_argument(account.service + ": " + account.flag + " is no user's token in " + tokens_file);
  if (!user->Has(account.permission))
    throw std::invalid_argument(account.service + ": " + account.flag + " is user '" + user->id + "', who lacks the " +
                                account.permission + " permission " + account.needed_for);
  return *user;
}

}  // namespace sopflow
