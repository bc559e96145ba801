#include "servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sopflow::testing {

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  close(fd);
  return -1;
}

bool WaitForPort(int port, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ConnectLoopback(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

ChildProcess::~ChildProcess() { Stop(); }

void ChildProcess::Start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         const std::string& log_file) {
  pid_t parent = getpid();
  log_file_ = log_file;
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (getppid() != parent) _exit(1);
    FILE* log = fopen(log_file.c_str(), "a");
    if (log) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
}

int ChildProcess::ReapIfExited() {
  if (pid_ <= 0) return -1;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return -1;
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ChildProcess::WaitExit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int code = ReapIfExited();
    if (code != -1) return code;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

std::string ChildProcess::WaitReady(const std::function<bool()>& ready, const std::string& what, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string why;
  while (why.empty()) {
    if (ready()) return "";
    int code = ReapIfExited();
    if (code != -1) {
      why = "exited with code " + std::to_string(code) + " before " + what;
    } else if (pid_ <= 0) {
      why = "is not running";
    } else if (std::chrono::steady_clock::now() >= deadline) {
      why = "not " + what + " after " + std::to_string(timeout_ms) + " ms";
    }
  }
  return why + "; last lines of " + log_file_ + ":\n" + LogTail(40);
}

std::string ChildProcess::WaitListening(int port, int timeout_ms) {
  return WaitReady([port] { return WaitForPort(port, 50); }, "listening on port " + std::to_string(port), timeout_ms);
}

void ChildProcess::StartWithOwnPort(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                                    const std::string& log_file) {
  port_file_ = log_file + ".port";
  std::remove(port_file_.c_str());
  argv.insert(argv.end(), {"--listen", "127.0.0.1:0", "--port-file", port_file_});
  Start(argv, env, log_file);
}

std::string ChildProcess::WaitOwnPort(int timeout_ms, int* port) {
  return WaitReady(
      [&] {
        std::ifstream in(port_file_);
        if (in >> *port && *port > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return false;
      },
      "writing its port to " + port_file_, timeout_ms);
}

std::string ChildProcess::LogTail(size_t max_lines) const {
  std::ifstream in(log_file_);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

void ChildProcess::Stop(int signal_number, int timeout_ms) {
  if (pid_ <= 0) return;
  kill(pid_, signal_number);
  if (WaitExit(timeout_ms) == -1 && pid_ > 0) Kill();
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string ChildProcess::LogSince(size_t from) const {
  std::ifstream in(log_file_);
  in.seekg(static_cast<std::streamoff>(from));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace {
// The size of a log so far: what a new start writes comes after it.
size_t LogSize(const std::string& log_file) {
  std::error_code ignored;
  return std::filesystem::exists(log_file) ? static_cast<size_t>(std::filesystem::file_size(log_file, ignored)) : 0;
}
}  // namespace

std::string ChildProcess::StartAndWaitForLine(const std::vector<std::string>& argv,
                                              const std::map<std::string, std::string>& env,
                                              const std::string& log_file, const std::string& ready_line,
                                              int timeout_ms) {
  const size_t from = LogSize(log_file);
  Start(argv, env, log_file);
  return WaitReady(
      [&] {
        if (LogSince(from).find(ready_line) != std::string::npos) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return false;
      },
      "ready (\"" + ready_line + "\")", timeout_ms);
}

int ChildProcess::StartOnFreePort(const std::function<std::vector<std::string>(int port)>& argv_for,
                                  const std::map<std::string, std::string>& env, const std::string& log_file,
                                  const std::string& ready_line, int timeout_ms) {
  constexpr int kAttempts = 5;
  std::string program, why;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const size_t from = LogSize(log_file);
    int port = FreePort();
    const std::vector<std::string> argv = argv_for(port);
    program = argv.front();
    why = StartAndWaitForLine(argv, env, log_file, ready_line, timeout_ms);
    if (why.empty()) return port;
    why = "on port " + std::to_string(port) + ": " + why;
    Stop();
    std::string log = LogSince(from);
    std::transform(log.begin(), log.end(), log.begin(), [](unsigned char c) { return std::tolower(c); });
    if (log.find("already in use") == std::string::npos) break;  // not the race: no use trying again
  }
  throw std::runtime_error(program + " " + why);
}

std::vector<std::string> RedisServer::Argv(int port) const {
  return {"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--dir", dir_, "--save", "",
          "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"};
}

RedisServer::RedisServer(const std::string& dir) : dir_(dir) {
  port_ = process_.StartOnFreePort([&](int port) { return Argv(port); }, {}, dir + "/redis.log",
                                   "Ready to accept connections", 10000);
}

RedisServer::~RedisServer() { process_.Stop(); }

void RedisServer::KillAndRestart(const std::vector<std::string>& extra_flags) {
  process_.Kill();
  auto argv = Argv(port_);
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  process_.Start(argv, {}, dir_ + "/redis.log");
  // Redis listens before it has loaded its files, and answers LOADING until then.
  std::string why = process_.WaitListening(port_, 10000);
  if (!why.empty()) throw std::runtime_error("redis-server restarted on port " + std::to_string(port_) + " " + why);
}

std::vector<std::string> NatsServer::Argv(int port) const {
  return {"nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(port), "-sd", dir_ + "/jetstream"};
}

NatsServer::NatsServer(const std::string& dir) : dir_(dir) {
  // One Go scheduler thread: here nats-server shares two cores with the
  // services and their clients, and with two it hands goroutines between
  // OS threads; sopbench then fell at random into a mode where nats-server
  // cost twice the CPU per hand-off (docs/performance.md, sixth session).
  // On Kubernetes GOMAXPROCS follows the pod's CPU limit (deploy/base/nats.yaml).
  port_ = process_.StartOnFreePort([&](int port) { return Argv(port); }, kEnv, dir + "/nats.log", kReadyLine, 10000);
}

NatsServer::~NatsServer() { process_.Stop(); }

void NatsServer::KillAndRestart() {
  process_.Kill();
  std::string why = process_.StartAndWaitForLine(Argv(port_), kEnv, dir_ + "/nats.log", kReadyLine, 20000);
  if (!why.empty()) throw std::runtime_error("nats-server restarted on port " + std::to_string(port_) + " " + why);
}

}  // namespace sopflow::testing
