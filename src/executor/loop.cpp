// The executor: one background worker that runs queued tasks over libpq
// loopback connections, waiting on its latch and every socket in one
// WaitEventSet. It runs outside any transaction. Its state is C++ owned with
// RAII: the jobs and their protocol (task.cpp), the idle connections
// (connection.cpp), the maintenance workers (maintenance_runs.cpp) and the
// wait (wait.cpp). Every PostgreSQL call that may raise an ERROR runs inside
// pg_guarded(), which turns the ERROR into a C++ exception; the executor then
// exits and is restarted.
#include "pg.hpp"
#include "board.hpp"
#include "catalog.hpp"
#include "executor/guard.hpp"
#include "executor/slots.hpp"
#include "executor/task.hpp"

#include <string>

extern "C" {
PGDLLEXPORT void lantern_executor_main(Datum arg);
}

namespace lantern {
namespace {

class Executor {
  public:
	void run();

  private:
	ConnectionPool pool_;
	MaintenanceScheduler maintenance_;
	Tasks tasks_{pool_, maintenance_};
	Waiter waiter_;
	uint32 close_idle_seen_ = 0;

	void start();
	void reap_idle(TimestampTz now);
	long wait_timeout(TimestampTz now) const;
	void wait(long timeout_ms);
};

// Adopts what a predecessor left, and lists the databases.
void
Executor::start()
{
	pg_guarded([] { board_set_executor(MyLatch); });
	for (int pid : slots_adopt_orphans()) // no statement goes on without an executor to watch it
		pg_guarded([&] {
			if (BackendPidGetProc(pid) != nullptr)
				kill(pid, SIGTERM);
		});
	Oid *oids = nullptr;
	int n = 0;
	bool recover = false;
	pg_guarded([&] {
		n = catalog_list_databases(&oids);
		recover = board_recovery_needed();
	});
	std::vector<Oid> databases(oids, oids + n);
	pg_guarded([&] { pfree(oids); });
	maintenance_.start(databases, recover);
	pg_guarded([&] { close_idle_seen_ = board_close_idle_requests(); });
}

void
Executor::reap_idle(TimestampTz now)
{
	uint32 close_requests = 0;
	pg_guarded([&] { close_requests = board_close_idle_requests(); });
	bool close_all = close_requests != close_idle_seen_;
	close_idle_seen_ = close_requests;
	for (int pid : pool_.reap(now, close_all))
		tasks_.crash_coming(pid);
}

long
Executor::wait_timeout(TimestampTz now) const
{
	TimestampTz next = 0;
	for (TimestampTz t : {tasks_.next_deadline(now), pool_.next_expiry(), maintenance_.next_deadline(now)})
		earliest(next, t);
	if (next == 0)
		return -1;
	return std::max<long>(0, TimestampDifferenceMilliseconds(now, next) + 1);
}

void
Executor::wait(long timeout_ms)
{
	std::vector<WaitSocket> wanted;
	tasks_.add_sockets(wanted);
	pool_.add_sockets(wanted);
	// A connection attempt may close and reopen its socket: rebuild the set
	// while one is under way.
	for (pgsocket fd : waiter_.wait(wanted, tasks_.connecting() || pool_.connecting(), timeout_ms)) {
		tasks_.mark_ready(fd);
		pool_.mark_ready(fd);
	}
}

void
Executor::run()
{
	start();
	for (;;) {
		pg_guarded([] { CHECK_FOR_INTERRUPTS(); });
		if (ConfigReloadPending) {
			ConfigReloadPending = false;
			pg_guarded([] { ProcessConfigFile(PGC_SIGHUP); });
			pool_.clear();			// connection settings may have changed
			maintenance_.reloaded(); // apply a new retention at once
		}
		tasks_.apply_cancels(GetCurrentTimestamp());
		pool_.open_wished(); // before the commit of the tasks wished for, with luck
		tasks_.dispatch();
		tasks_.poll();
		pool_.poll(GetCurrentTimestamp());
		if (!tasks_.full())
			tasks_.dispatch(); // take the places of the jobs that just ended
		TimestampTz now = GetCurrentTimestamp();
		reap_idle(now);
		maintenance_.tick(now);
		wait(wait_timeout(now));
	}
}

} // namespace
} // namespace lantern

extern "C" void
lantern_executor_main(Datum)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGINT, SIG_IGN); // nothing to cancel: it runs no statement itself
	BackgroundWorkerUnblockSignals();
	// Connected to no database: shared catalogs only (to list databases), and
	// a row in pg_stat_activity.
	BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
	std::string failure;
	try {
		lantern::Executor executor;
		executor.run();
	} catch (const std::exception &e) {
		failure = e.what();
	}
	// Every C++ frame is gone: now it may report and exit.
	ereport(LOG, (errmsg("lantern_fdw executor stopping after an error: %s", failure.c_str())));
	proc_exit(1);
}
