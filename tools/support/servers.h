// Real redis-server and nats-server for integration tests and sopbench:
// free loopback ports, data in a given folder, stopped (and killed with
// the parent process, via PR_SET_PDEATHSIG) afterwards. Redis runs with
// appendonly yes, appendfsync everysec; JetStream with file storage.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sopflow::testing {

std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);
int FreePort();
// Waits until a TCP connect to 127.0.0.1:port succeeds (at most timeout_ms).
bool WaitForPort(int port, int timeout_ms);
// A TCP connection to 127.0.0.1:port: its descriptor, or -1.
int ConnectLoopback(int port);

// A child is killed when the thread that started it ends (PR_SET_PDEATHSIG
// follows the forking thread, not the process): start children from a
// thread that outlives them, such as the test's own.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  void Start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& log_file);
  void Stop(int signal_number = 15, int timeout_ms = 10000);  // SIGTERM, then SIGKILL
  void Kill();                                                // SIGKILL
  // Waits for the process to exit by itself; its exit code, or -1 on timeout.
  int WaitExit(int timeout_ms);
  // Waits until the process accepts TCP connections on 127.0.0.1:port.
  // Empty when it does; otherwise why not (it exited, with its code, or it
  // timed out) and the last lines of its log, so a failure on a CI machine
  // can be read without the log, which the fixture deletes.
  std::string WaitListening(int port, int timeout_ms);
  // Starts the sopflow service `argv` on a port it chooses itself: with
  // --listen 127.0.0.1:0 --port-file <log_file>.port appended (an old port
  // file removed first, so a restart with the same log writes it anew). A
  // port chosen by the service cannot be taken by another process between
  // its choice and the bind, as one from FreePort() can (two of them were,
  // in parallel test runs). WaitOwnPort then waits for it.
  void StartWithOwnPort(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                        const std::string& log_file);
  // After StartWithOwnPort: waits until the service has written the port it
  // listens on, and gives it in *port. Empty, or why not, as WaitListening.
  std::string WaitOwnPort(int timeout_ms, int* port);
  // For a server that cannot choose its own port (redis-server's --port 0
  // turns TCP off): starts argv_for(port) on a FreePort() port, and waits
  // until its log, from this start on, has `ready_line` (written once it
  // has bound the port, so a connect answered by another process does not
  // count). If another process took the port first, the server exits
  // saying the address is in use, and is started again on another port
  // (at most 5 times). The port it listens on, or throws saying why not.
  int StartOnFreePort(const std::function<std::vector<std::string>(int port)>& argv_for,
                      const std::map<std::string, std::string>& env, const std::string& log_file,
                      const std::string& ready_line, int timeout_ms);
  // Starts argv and waits until its log, from this start on, has
  // `ready_line`: empty, or why not (as WaitListening).
  std::string StartAndWaitForLine(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                                  const std::string& log_file, const std::string& ready_line, int timeout_ms);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  // Polls `ready` (which paces itself) until it holds; otherwise why not,
  // as WaitListening says it: `what` is what the child did not get to do.
  std::string WaitReady(const std::function<bool()>& ready, const std::string& what, int timeout_ms);
  // Reaps the process if it has exited; its exit code (128+signal), else -1.
  int ReapIfExited();
  std::string LogTail(size_t max_lines) const;
  // The log from byte `from` on.
  std::string LogSince(size_t from) const;

  pid_t pid_ = -1;
  std::string log_file_;
  std::string port_file_;  // StartWithOwnPort's
};

class RedisServer {
 public:
  explicit RedisServer(const std::string& dir);
  ~RedisServer();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  pid_t pid() const { return process_.pid(); }
  // SIGKILL, then started again on the same port and folder, as Kubernetes
  // reschedules a pod with its volume: it loads its append-only file.
  // `extra_flags` are added to its command line (--key-load-delay holds it
  // loading). Returns once it accepts connections, which is before it has
  // loaded: until then it answers every command with LOADING.
  void KillAndRestart(const std::vector<std::string>& extra_flags = {});

 private:
  std::vector<std::string> Argv(int port) const;
  std::string dir_;
  int port_;
  ChildProcess process_;
};

class NatsServer {
 public:
  explicit NatsServer(const std::string& dir);
  ~NatsServer();
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return process_.pid(); }
  // SIGKILL, then started again on the same port and store, JetStream
  // restoring its stream and consumers from disk; returns once it is ready.
  void KillAndRestart();

 private:
  std::vector<std::string> Argv(int port) const;
  inline static const std::map<std::string, std::string> kEnv{{"GOMAXPROCS", "1"}};
  static constexpr char kReadyLine[] = "Server is ready";
  std::string dir_;
  int port_;
  ChildProcess process_;
};

}  // namespace sopflow::testing
