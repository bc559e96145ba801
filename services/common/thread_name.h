// Threads of ours carry a name of their own for `top -H`, `perf report
// --sort comm` and /proc/<pid>/task/*/comm: unnamed, each takes the
// process's name and a profile cannot tell the outbox relay from an event
// consumer (the eleventh session told them apart with gdb backtraces).
#pragma once

#include <pthread.h>

#include <string>
#include <thread>
#include <utility>

namespace sopflow {

// Starts `fn` on a thread named `name` (Linux keeps the first 15 characters).
template <typename Fn>
std::thread NamedThread(std::string name, Fn fn) {
  return std::thread([name = std::move(name), fn = std::move(fn)]() mutable {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    fn();
  });
}

}  // namespace sopflow
