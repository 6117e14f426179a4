#pragma once
// The store's threads (file writers, group commit, flushes, WAL checkpoints) and the event
// log's writer do batch work for many sessions at once; the network thread answers clients.
// A thread marked SCHED_BATCH that wakes up does not preempt the thread running on its core
// (the network thread, or a client on the same machine): it runs at the next scheduling point.
// Measured with 50 sessions on 2 cores (bench/RESULTS.md, session 5): less CPU per message and
// ~6% more messages per second; the final 250 waits a little longer (p50 3.7 -> 5.2 ms, p99
// 10.7 -> 11.4 ms, target 20 ms).
// Header-only, like the rest of src/common.
#include <pthread.h>
#include <sched.h>

namespace relaybait::threads {

// Names the calling thread (top, perf; at most 15 characters) and makes it a batch thread.
// False when the policy could not be set (not Linux, or refused): the thread runs as before.
inline bool become_background_thread(const char* name) {
    ::pthread_setname_np(::pthread_self(), name);
#ifdef SCHED_BATCH
    sched_param param{};
    param.sched_priority = 0;
    return ::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &param) == 0;
#else
    return false;
#endif
}

}  // namespace relaybait::threads
