// Scheduling the maintenance workers (maintenance_runs.cpp): which database
// gets a worker when, for pending outcomes, recovery and retention, with
// back-off after failed runs. Include after pg.hpp.
#pragma once

#include "executor/slots.hpp"
#include "executor/wait.hpp"

#include <map>
#include <set>
#include <vector>

namespace lantern {

class MaintenanceScheduler {
  public:
	// At the executor's start: the databases that may hold tasks, all to be
	// recovered if recover.
	void start(const std::vector<Oid> &databases, bool recover);
	// A task ran in db: retention covers it from now on.
	void note_database(Oid db) { known_dbs_.insert(db); }
	// Starts no worker before until (a crash is coming).
	void hold_until(TimestampTz until);
	// The settings were reloaded: apply a new retention at once.
	void reloaded() { next_retention_at_ = 0; }
	// Notes the workers that exited, and starts the workers due.
	void tick(TimestampTz now);
	// The nearest time tick has something to do; 0 if none.
	TimestampTz next_deadline(TimestampTz now) const;

  private:
	struct Run {
		BackgroundWorkerHandle *handle;
		bool recover;
		bool load;
		std::vector<PendingRef> pending; // outcomes waiting when it started
	};
	std::map<Oid, Run> running_;
	std::map<Oid, int> failures_;		  // consecutive failed runs
	std::map<Oid, TimestampTz> retry_at_; // no new run before then
	std::vector<Oid> to_recover_;
	Oid recovering_db_ = InvalidOid; // its recovery worker runs
	std::vector<Oid> to_retain_;
	Oid retaining_db_ = InvalidOid;
	bool recovering_ = false;
	std::set<Oid> known_dbs_;
	TimestampTz retry_all_at_ = 0; // no worker slot was free, or a crash is coming
	TimestampTz next_retention_at_ = 0;

	void stopped(Oid db, const Run &run, TimestampTz now);
	bool can_start(Oid db, TimestampTz now) const;
	std::set<Oid> to_load_; // every known database, after the waiting list overflowed
	TimestampTz next_load_due_ = 0; // when a loader for scheduled tasks is to start next
	bool start_worker(Oid db, bool recover, TimestampTz now, bool load = false);
	void tick_loading(TimestampTz now);
};

} // namespace lantern
