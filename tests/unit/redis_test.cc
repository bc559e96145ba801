// Which Redis error replies mean "Redis is away for now" (retry, as a
// refused connection) and which mean the command was wrong.
#include <gtest/gtest.h>

#include <hiredis/hiredis.h>

#include <cstring>

#include "error.h"
#include "redis.h"

namespace sopflow {
namespace {

TEST(RedisErrorTest, AServerThatCannotServeNowIsUnavailableWhateverTheCommand) {
  for (const char* error : {"LOADING Redis is loading the dataset in memory",
                            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
                            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                            "READONLY You can't write against a read only replica.",
                            "MISCONF Errors writing to the AOF file: No space left on device",
                            "OOM command not allowed when used memory > 'maxmemory'.",
                            "NOREPLICAS Not enough good replicas to write.", "TRYAGAIN", "CLUSTERDOWN"})
    EXPECT_TRUE(IsServerUnavailableError(error)) << error;
}

TEST(RedisErrorTest, TheCommandsOwnFaultsAreNot) {
  for (const char* error : {"ERR wrong number of arguments for 'hset' command",
                            "WRONGTYPE Operation against a key holding the wrong kind of value",
                            "BUSYGROUP Consumer Group name already exists", "NOSCRIPT No matching script.",
                            "EXECABORT Transaction discarded because of previous errors.", "LOADINGX", ""})
    EXPECT_FALSE(IsServerUnavailableError(error)) << error;
}

TEST(RedisErrorTest, ThrowIfErrorSaysWhichAndPassesOtherReplies) {
  auto code_of = [](const char* text) {
    redisReply reply{};
    reply.type = REDIS_REPLY_ERROR;
    reply.str = const_cast<char*>(text);
    reply.len = std::strlen(text);
    try {
      ThrowIfError(&reply);
    } catch (const DomainError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << "the message keeps Redis's words";
      return e.code();
    }
    ADD_FAILURE() << "no throw for " << text;
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code_of("LOADING Redis is loading the dataset in memory"), ErrorCode::kUnavailable);
  EXPECT_EQ(code_of("WRONGTYPE Operation against a key holding the wrong kind of value"), ErrorCode::kInternal);
  redisReply status{};
  status.type = REDIS_REPLY_STATUS;
  status.str = const_cast<char*>("OK");
  status.len = 2;
  EXPECT_NO_THROW(ThrowIfError(&status));
  EXPECT_NO_THROW(ThrowIfError(nullptr));
}

}  // namespace
}  // namespace sopflow
