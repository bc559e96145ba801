// The event types sopflow publishes; each is also the NATS subject of its
// events. Documented in protos/sopflow/v1/event.proto.
#pragma once

namespace sopflow::events {

inline constexpr char kRunStarted[] = "sopflow.v1.run.started";
inline constexpr char kStepCompleted[] = "sopflow.v1.run.step_completed";
inline constexpr char kRunCompleted[] = "sopflow.v1.run.completed";
inline constexpr char kRunCancelled[] = "sopflow.v1.run.cancelled";
inline constexpr char kTaskCreated[] = "sopflow.v1.task.created";
inline constexpr char kTaskClaimed[] = "sopflow.v1.task.claimed";
inline constexpr char kTaskCompleted[] = "sopflow.v1.task.completed";
inline constexpr char kTaskReturned[] = "sopflow.v1.task.returned";

}  // namespace sopflow::events
