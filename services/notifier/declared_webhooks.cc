#include "declared_webhooks.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <regex>
#include <set>

#include "error.h"

namespace sopflow::notifier {
namespace {

const std::set<std::string> kFields = {"id", "url", "unit", "role", "kinds", "secret_env"};
const std::regex kId("[a-z0-9][a-z0-9-]{0,62}");

struct Problems {
  std::string file;
  std::vector<std::string> lines;
  void Add(const YAML::Node& at, const std::string& field, const std::string& message) {
    lines.push_back(file + ":" + std::to_string(at.Mark().line + 1) + ": " + field + ": " + message);
  }
};

std::string Text(const YAML::Node& entry, const char* field) {
  return entry[field] && entry[field].IsScalar() ? entry[field].as<std::string>() : "";
}

std::optional<v1::Webhook> ParseEntry(const YAML::Node& entry, const EnvLookup& env, std::set<std::string>& ids,
                                      Problems& p) {
  if (!entry.IsMap()) {
    p.Add(entry, "webhooks", "each entry is a map");
    return std::nullopt;
  }
  size_t before = p.lines.size();
  for (const auto& kv : entry)
    if (!kFields.count(kv.first.as<std::string>())) p.Add(kv.first, kv.first.as<std::string>(), "unknown field");
  v1::Webhook hook;
  std::string id = Text(entry, "id");
  if (!std::regex_match(id, kId))
    p.Add(entry, "id", "required: lowercase letters, digits and '-'");
  else if (!ids.insert(id).second)
    p.Add(entry["id"], "id", "declared twice");
  hook.set_id("wh-" + id);
  hook.set_url(Text(entry, "url"));
  if (hook.url().rfind("http://", 0) != 0 && hook.url().rfind("https://", 0) != 0)
    p.Add(entry, "url", "required, http:// or https://");
  hook.set_unit(Text(entry, "unit"));
  if (hook.unit().empty()) p.Add(entry, "unit", "required");
  hook.set_role(Text(entry, "role"));
  if (entry["kinds"]) {
    if (!entry["kinds"].IsSequence()) p.Add(entry["kinds"], "kinds", "a list of notification kinds");
    for (const auto& k : entry["kinds"]) {
      v1::Notification::Kind kind;
      if (!k.IsScalar() || !v1::Notification::Kind_Parse(k.as<std::string>(), &kind) ||
          kind == v1::Notification::KIND_UNSPECIFIED)
        p.Add(k, "kinds", "unknown kind '" + (k.IsScalar() ? k.as<std::string>() : "") + "'");
      else
        hook.add_kinds(kind);
    }
  }
  std::string secret_env = Text(entry, "secret_env");
  auto secret = secret_env.empty() ? std::nullopt : env(secret_env);
  if (secret_env.empty())
    p.Add(entry, "secret_env", "required: the environment variable holding the signing secret");
  else if (!secret || secret->size() < 16)
    p.Add(entry["secret_env"], "secret_env", "$" + secret_env + " must hold a secret of at least 16 characters");
  else
    hook.set_secret(*secret);
  hook.set_created_by("declared:" + p.file);
  if (p.lines.size() != before) return std::nullopt;
  return hook;
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
}

std::vector<v1::Webhook> LoadDeclaredWebhooks(const std::string& path, const EnvLookup& env) {
  Problems p{path, {}};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw DomainError(ErrorCode::kInvalidArgument, path + ": cannot read");
  } catch (const YAML::Exception& e) {
    throw DomainError(ErrorCode::kInvalidArgument, path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  std::vector<v1::Webhook> hooks;
  if (!root.IsMap() || !root["webhooks"] || !root["webhooks"].IsSequence()) {
    p.Add(root, "webhooks", "the file holds `webhooks:`, a list");
  } else {
    std::set<std::string> ids;
    for (const auto& entry : root["webhooks"])
      if (auto hook = ParseEntry(entry, env, ids, p)) hooks.push_back(std::move(*hook));
  }
  if (p.lines.empty()) return hooks;
  std::string all;
  for (const auto& line : p.lines) all += (all.empty() ? "" : "\n") + line;
  throw DomainError(ErrorCode::kInvalidArgument, all);
}

}  // namespace sopflow::notifier
