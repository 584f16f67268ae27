// The executor's scheduling of maintenance workers.
#include "pg.hpp"
#include "board.hpp"
#include "maintenance.hpp"
#include "settings.hpp"
#include "executor/guard.hpp"
#include "executor/maintenance_runs.hpp"

#include <algorithm>
#include <string>

namespace lantern {

constexpr long kMaintenanceRetryMs = 1000;
constexpr long kMaxRetentionIntervalMs = 60000;
constexpr int kMaxMaintenanceAttempts = 5;
constexpr int kMaxLoaders = 4;			 // databases loaded from their stores at once
constexpr long kLoaderRestartMs = 100; // a loader that stopped while its database still waits

void
MaintenanceScheduler::start(const std::vector<Oid> &databases, bool recover)
{
	known_dbs_.insert(databases.begin(), databases.end());
	if (recover)
		to_recover_ = databases;
	recovering_ = !to_recover_.empty();
}

void
MaintenanceScheduler::hold_until(TimestampTz until)
{
	retry_all_at_ = std::max(retry_all_at_, until);
}

void
MaintenanceScheduler::stopped(Oid db, const Run &run, TimestampTz now)
{
	// A run failed if it left outcomes it was started for unwritten, or if it
	// was to recover the database and did not say it had.
	if (run.load)
		retry_at_[db] = TimestampTzPlusMilliseconds(now, kLoaderRestartMs);
	bool failed = slots_still_pending(run.pending) > 0;
	if (!failed && run.recover)
		pg_guarded([&] { failed = !board_take_recovery_ack(db); });
	if (!failed) {
		failures_.erase(db);
		return;
	}
	int n = ++failures_[db];
	retry_at_[db] = TimestampTzPlusMilliseconds(now, kMaintenanceRetryMs * n);
	if (run.recover) {
		if (n <= kMaxMaintenanceAttempts)
			to_recover_.push_back(db);
		else
			pg_log(WARNING, "lantern_fdw: could not recover the tasks of database " + std::to_string(db) +
								"; they will be recovered at the next server start");
	}
}

bool
MaintenanceScheduler::can_start(Oid db, TimestampTz now) const
{
	auto r = retry_at_.find(db);
	return !running_.count(db) && (r == retry_at_.end() || now >= r->second);
}

bool
MaintenanceScheduler::start_worker(Oid db, bool recover, TimestampTz now, bool load)
{
	MaintenanceKind kind = recover ? MaintenanceKind::Recover : load ? MaintenanceKind::Load : MaintenanceKind::Outcomes;
	BackgroundWorkerHandle *handle = nullptr;
	std::vector<PendingRef> pending = slots_pending_outcomes(db);
	bool started = false;
	pg_guarded([&] { started = start_maintenance_worker(db, kind, &handle); });
	if (!started) {
		// No background worker slot free now: not the database's fault.
		retry_all_at_ = TimestampTzPlusMilliseconds(now, kMaintenanceRetryMs);
		return false;
	}
	running_[db] = Run{handle, recover, load, std::move(pending)};
	return true;
}

void
MaintenanceScheduler::tick(TimestampTz now)
{
	// Take note of the workers that have exited.
	for (auto it = running_.begin(); it != running_.end();) {
		BgwHandleStatus status = BGWH_STARTED;
		BackgroundWorkerHandle *handle = it->second.handle;
		pg_guarded([&] {
			pid_t pid;
			status = GetBackgroundWorkerPid(handle, &pid);
			if (status == BGWH_STOPPED)
				pfree(handle);
		});
		if (status == BGWH_STOPPED) {
			Run run = std::move(it->second);
			Oid db = it->first;
			it = running_.erase(it);
			stopped(db, run, now);
		} else
			++it;
	}
	if (now < retry_all_at_)
		return;

	// Outcomes to write.
	std::set<Oid> pending_dbs;
	for (const PendingRef &r : slots_pending_outcomes(InvalidOid))
		pending_dbs.insert(r.dboid);
	for (Oid db : pending_dbs) {
		if (!can_start(db, now))
			continue;
		auto f = failures_.find(db);
		if (f != failures_.end() && f->second >= kMaxMaintenanceAttempts) {
			slots_give_up_outcomes(db); // the database is gone, or refuses its workers
			failures_.erase(db);
			continue;
		}
		if (!start_worker(db, false, now))
			return;
	}

	// Recovery, one database at a time.
	if (OidIsValid(recovering_db_) && !running_.count(recovering_db_))
		recovering_db_ = InvalidOid;
	if (!OidIsValid(recovering_db_) && !to_recover_.empty() && can_start(to_recover_.back(), now) &&
		start_worker(to_recover_.back(), true, now)) {
		recovering_db_ = to_recover_.back();
		to_recover_.pop_back();
	}
	if (recovering_ && to_recover_.empty() && !OidIsValid(recovering_db_)) {
		pg_guarded([] { board_recovery_done(); });
		recovering_ = false;
	}

	tick_loading(now);

	// Retention, now and then: every half retention period, at most once a
	// minute, one database at a time.
	if (guc_task_retention_s > 0 && now >= next_retention_at_ && to_retain_.empty()) {
		long interval_ms = std::clamp<long>(guc_task_retention_s * 500L, 1000, kMaxRetentionIntervalMs);
		next_retention_at_ = TimestampTzPlusMilliseconds(now, interval_ms);
		to_retain_.assign(known_dbs_.begin(), known_dbs_.end());
	}
	if (OidIsValid(retaining_db_) && !running_.count(retaining_db_))
		retaining_db_ = InvalidOid;
	if (!OidIsValid(retaining_db_) && !to_retain_.empty()) {
		Oid db = to_retain_.back();
		if (running_.count(db)) {
			to_retain_.pop_back(); // a worker runs there already and applies retention too
		} else if (start_worker(db, false, now)) {
			retaining_db_ = db;
			to_retain_.pop_back();
		}
	}
}

// The tasks that wait in stores (the board was full): a loader for each
// database that has some, a few databases at a time.
void
MaintenanceScheduler::tick_loading(TimestampTz now)
{
	bool overflow = false;
	next_load_due_ = 0;
	std::vector<Oid> waiting;
	for (auto &[db, due] : slots_waiting_dbs(&overflow)) {
		// Scheduled tasks: a loader shortly before the first is due (it waits
		// for run_at itself).
		TimestampTz start_at = TimestampTzPlusMilliseconds(due, -kLoadAheadMs);
		if (start_at <= now)
			waiting.push_back(db);
		else
			earliest(next_load_due_, start_at);
	}
	if (overflow)
		to_load_.insert(known_dbs_.begin(), known_dbs_.end());
	waiting.insert(waiting.end(), to_load_.begin(), to_load_.end());
	int loaders = static_cast<int>(std::count_if(running_.begin(), running_.end(),
												  [](const auto &r) { return r.second.load || r.second.recover; }));
	for (Oid db : waiting) {
		if (loaders >= kMaxLoaders)
			break;
		if (!can_start(db, now))
			continue;
		if (!start_worker(db, false, now, true))
			return;
		to_load_.erase(db);
		loaders++;
	}
}

TimestampTz
MaintenanceScheduler::next_deadline(TimestampTz now) const
{
	TimestampTz next = 0;
	auto consider = [&](TimestampTz t) { earliest(next, t); };
	if (retry_all_at_ > now)
		consider(retry_all_at_);
	for (auto &r : retry_at_)
		if (r.second > now)
			consider(r.second);
	if (!to_recover_.empty() || !to_retain_.empty() || !to_load_.empty())
		consider(TimestampTzPlusMilliseconds(now, kMaintenanceRetryMs));
	if (guc_task_retention_s > 0)
		consider(next_retention_at_);
	if (next_load_due_ > now)
		consider(next_load_due_);
	return next;
}

} // namespace lantern
