// The executor's one wait: latch, postmaster death and every socket.
#include "pg.hpp"
#include "compat.hpp"
#include "executor/guard.hpp"
#include "executor/wait.hpp"

namespace lantern {

std::vector<pgsocket>
Waiter::wait(const std::vector<WaitSocket> &wanted, bool rebuild, long timeout_ms)
{
	bool same = !rebuild && set_ != nullptr && wanted.size() == registered_.size();
	for (size_t i = 0; same && i < wanted.size(); i++)
		same = wanted[i].fd == registered_[i].fd && wanted[i].connection_id == registered_[i].connection_id;
	WaitEvent events[64];
	int n = 0;
	const WaitSocket *sockets = wanted.data();
	int nsockets = static_cast<int>(wanted.size());
	pg_guarded([&] {
		if (!same) {
			if (set_ != nullptr)
				FreeWaitEventSet(set_);
			set_ = nullptr;
			set_ = compat_create_wait_event_set(2 + nsockets);
			AddWaitEventToSet(set_, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
			AddWaitEventToSet(set_, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
			for (int i = 0; i < nsockets; i++)
				AddWaitEventToSet(set_, sockets[i].events, sockets[i].fd, nullptr, nullptr);
		} else {
			for (int i = 0; i < nsockets; i++)
				if (sockets[i].events != registered_[i].events)
					ModifyWaitEvent(set_, i + 2, sockets[i].events, nullptr);
		}
		n = WaitEventSetWait(set_, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	});
	registered_ = wanted;
	std::vector<pgsocket> ready;
	for (int i = 0; i < n; i++) {
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (events[i].pos >= 2)
			ready.push_back(events[i].fd);
	}
	return ready;
}

} // namespace lantern
