// Waiting (wait.cpp): one WaitEventSet over the executor's latch, postmaster
// death and the sockets of its connections. Include after pg.hpp.
#pragma once

#include <vector>

namespace lantern {

struct WaitSocket {
	pgsocket fd;
	uint64 connection_id; // a socket number can be reused; a connection id cannot
	uint32 events;
};

// Makes next the earlier of next and t, where 0 means "none".
inline void
earliest(TimestampTz &next, TimestampTz t)
{
	if (t != 0 && (next == 0 || t < next))
		next = t;
}

class Waiter {
  public:
	// Waits up to timeout_ms (-1: no limit) for the latch (reset here), or an
	// event of one of sockets; returns the sockets reported ready. The set is
	// kept while it watches the same sockets, unless rebuild.
	std::vector<pgsocket> wait(const std::vector<WaitSocket> &sockets, bool rebuild, long timeout_ms);

  private:
	WaitEventSet *set_ = nullptr;
	std::vector<WaitSocket> registered_; // as registered, after latch + postmaster
};

} // namespace lantern
