// The executor: one background worker that runs queued tasks over libpq
// loopback connections, waiting on its latch and every socket in one
// WaitEventSet. It runs outside any transaction; its state is owned with RAII
// and a task's failures are values. PostgreSQL calls that may raise an ERROR
// run inside pg_guarded(), which turns the ERROR into a C++ exception; the
// executor then exits and is restarted.
#include "pg.hpp"
#include "lantern.hpp"
#include "guard.hpp"

#include "libpq-fe.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace lantern {
namespace {

constexpr long kConnectTimeoutMs = 10000;
constexpr long kCancelRetryMs = 100;
constexpr long kCannotConnectPauseMs = 1000;
constexpr long kMaintenanceRetryMs = 1000;
// How long to start nothing once a backend has died without cleaning up: the
// postmaster stops every process within milliseconds of it (see
// backend_died_uncleanly); this bound only matters if it somehow does not.
constexpr long kCrashHoldMs = 10000;
constexpr long kMaxRetentionIntervalMs = 60000;
constexpr int kMaxRecordAttempts = 2;
constexpr int kMaxMaintenanceAttempts = 5;

const char *const kLoopbackHint = "HINT:  lantern_fdw.host and lantern_fdw.connection_options must lead to this "
								  "server itself, not to another server or a connection pooler (see docs/settings.md).";
const char *const kConnectHint = "HINT:  The lantern_fdw executor connects to the server like any client: allow it "
								 "in pg_hba.conf (see docs/setup.md).";

struct ConnDeleter {
	void
	operator()(PGconn *c) const noexcept
	{
		PQfinish(c);
	}
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;

struct ResultDeleter {
	void
	operator()(PGresult *r) const noexcept
	{
		PQclear(r);
	}
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

uint64 next_connection_id = 1;

struct Connection {
	uint64 id = next_connection_id++; // a socket number can be reused; this cannot
	ConnPtr pg;
	Oid dboid = InvalidOid;
	std::string user;
	int backend_pid = 0;
	TimestampTz idle_since = 0;
	bool ready = false; // its socket was reported ready by the last wait
};

// Chained: the job's record_start rides on the end of the previous task on
// the same connection (see Executor::chain_next).
enum class Step { Connecting, Chained, Starting, SettingRole, Running, RollingBack, Recording, Done };

struct Job {
	SlotRef ref{};
	int64 jobid = 0;
	Oid dboid = InvalidOid;
	std::string dbname, connect_as, set_role;
	std::unique_ptr<Connection> conn;
	Step step = Step::Connecting;
	PostgresPollingStatusType connect_poll = PGRES_POLLING_WRITING;
	TimestampTz connect_deadline = 0;
	bool in_flight = false;	 // a query was sent and its results are not all read
	bool want_write = false; // libpq has output it could not send yet
	bool copy_out = false;	 // draining COPY TO STDOUT data
	std::vector<std::string> statements;
	size_t next_statement = 0;
	std::string step_error; // first error of the current query
	std::string step_sqlstate;
	Outcome outcome = Outcome::None;
	std::string error;
	bool cancel_requested = false;
	bool cancel_sent = false;
	TimestampTz cancel_signaled_at = 0; // a signal can land while the backend still reads the statement
	bool reusable = true;
	int record_attempts = 0;
	Job *chained = nullptr; // Recording: the next task, started in the same transaction
};

std::string
trim_trailing(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

void
discard_notice(void *, const char *)
{
}

class Executor {
  public:
	void run();

  private:
	std::vector<std::unique_ptr<Job>> jobs_;
	std::vector<std::unique_ptr<Connection>> idle_;
	WaitEventSet *wait_set_ = nullptr;
	struct WaitSocket {
		pgsocket fd;
		uint64 connection_id;
		uint32 events;
	};
	std::vector<WaitSocket> wait_sockets_; // as registered, after latch + postmaster
	uint32 close_idle_seen_ = 0;
	TimestampTz dispatch_paused_until_ = 0; // the server refused connections for now

	// Maintenance workers, by database.
	struct MaintenanceRun {
		BackgroundWorkerHandle *handle;
		bool recover;
		std::vector<SlotRef> pending; // outcomes waiting when it started
	};
	std::map<Oid, MaintenanceRun> maintenance_;
	std::map<Oid, int> failures_;			// consecutive failed runs
	std::map<Oid, TimestampTz> retry_at_; // no new run before then
	std::vector<Oid> to_recover_;
	Oid recovering_db_ = InvalidOid; // its recovery worker runs
	std::vector<Oid> to_retain_;
	Oid retaining_db_ = InvalidOid;
	bool recovering_ = false;
	std::set<Oid> known_dbs_;
	TimestampTz maintenance_retry_at_ = 0;
	TimestampTz next_retention_at_ = 0;

	void adopt_orphans();
	void dispatch();
	void start_job(const TaskSlot &slot, SlotRef ref);
	void connect(Job &job);
	void poll_connect(Job &job);
	void poll_job(Job &job);
	bool send(Job &job, const char *sql);
	bool send_record_end(Job &job);
	void record_end(Job &job);
	Job *chain_next(Job &job);
	void unchain(Job &job);
	void started(Job &job);
	void flush(Job &job);
	void handle_result(Job &job, PGresult *res);
	void query_done(Job &job);
	void next_statement(Job &job);
	void cleanup(Job &job);
	void connection_failed(Job &job, const std::string &message);
	void finish(Job &job);
	void record_pending(Job &job);
	void crash_coming(int pid);
	void apply_cancels(TimestampTz now);
	void reap_idle(TimestampTz now);
	void manage_maintenance(TimestampTz now);
	void worker_stopped(Oid db, const MaintenanceRun &run, TimestampTz now);
	long wait_timeout(TimestampTz now) const;
	void wait(long timeout_ms);
	std::vector<WaitSocket> wanted_sockets() const;
};

extern "C" {
static bool lookup_database_name(Oid dboid, char *out);
static int list_databases(Oid **oids);
}

// ---- board access --------------------------------------------------------

// Moves a slot to state (and records what is >= 0). Returns whether a
// cancel has been requested for it.
bool
set_slot(const SlotRef &ref, SlotState state, int backend_pid, int stmt_index, int stmt_count)
{
	bool cancel_requested = false;
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	TaskSlot *s = board_slot(ref.index);
	if (s->generation == ref.generation && s->state != SlotState::Free) {
		cancel_requested = s->cancel_requested;
		board_set_state(ref.index, state);
		if (backend_pid >= 0)
			s->backend_pid = backend_pid;
		if (stmt_index >= 0)
			s->stmt_index = stmt_index;
		if (stmt_count >= 0)
			s->stmt_count = stmt_count;
		if (state == SlotState::Running && stmt_index == 1)
			s->run_started_at = GetCurrentTimestamp();
	}
	LWLockRelease(board_lock());
	return cancel_requested;
}

// Puts a slot the executor took back in the queue, at its old place.
void
requeue_slot(const SlotRef &ref)
{
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	TaskSlot *s = board_slot(ref.index);
	if (s->generation == ref.generation && s->state == SlotState::Starting) {
		s->backend_pid = 0;
		board_set_state(ref.index, SlotState::Queued);
	}
	LWLockRelease(board_lock());
}

void
free_slot(const SlotRef &ref)
{
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	TaskSlot *s = board_slot(ref.index);
	if (s->generation == ref.generation)
		board_set_state(ref.index, SlotState::Free);
	LWLockRelease(board_lock());
	ConditionVariableBroadcast(board_cv());
}

// Moves a slot to Ending or RecordPending with the outcome to record. In
// Ending it is kept for a successor, should this executor stop before the
// outcome is committed.
void
set_slot_outcome(const SlotRef &ref, SlotState state, Outcome outcome, const std::string &message)
{
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	TaskSlot *s = board_slot(ref.index);
	if (s->generation == ref.generation && s->state != SlotState::Free) {
		s->outcome = outcome;
		board_set_message(ref.index, message.c_str());
		board_set_state(ref.index, state);
	}
	LWLockRelease(board_lock());
}

std::string
executor_host()
{
	if (guc_host != nullptr && guc_host[0] != '\0')
		return guc_host;
	std::string dirs = Unix_socket_directories != nullptr ? Unix_socket_directories : "";
	std::string first = dirs.substr(0, dirs.find(','));
	first.erase(0, first.find_first_not_of(" \t"));
	first.erase(first.find_last_not_of(" \t") + 1);
	return first.empty() ? "localhost" : first;
}

// ---- the job state machine ----------------------------------------------

void
Executor::dispatch()
{
	if (dispatch_paused_until_ != 0 && GetCurrentTimestamp() < dispatch_paused_until_)
		return;
	dispatch_paused_until_ = 0;
	while (static_cast<int>(jobs_.size()) < guc_max_parallel_tasks) {
		TaskSlot picked;
		SlotRef ref{-1, 0};
		LWLockAcquire(board_lock(), LW_EXCLUSIVE);
		ref.index = board_queue_head();
		if (ref.index >= 0) {
			TaskSlot *s = board_slot(ref.index);
			s->backend_pid = 0;
			s->cancel_sent = false;
			board_set_state(ref.index, SlotState::Starting);
			ref.generation = s->generation;
			memcpy(&picked, s, sizeof(TaskSlot));
		}
		LWLockRelease(board_lock());
		if (ref.index < 0)
			return;
		start_job(picked, ref);
	}
}

void
Executor::start_job(const TaskSlot &slot, SlotRef ref)
{
	auto job = std::make_unique<Job>();
	job->ref = ref;
	job->jobid = slot.jobid;
	job->dboid = slot.dboid;
	job->connect_as = NameStr(slot.connect_as);
	job->set_role = NameStr(slot.set_role);
	job->cancel_requested = slot.cancel_requested;
	known_dbs_.insert(slot.dboid);

	// Reuse an idle connection of the same database and login role.
	auto it = std::find_if(idle_.begin(), idle_.end(), [&](const std::unique_ptr<Connection> &c) {
		return c->dboid == job->dboid && c->user == job->connect_as;
	});
	Job &j = *job;
	jobs_.push_back(std::move(job));
	if (it != idle_.end()) {
		j.conn = std::move(*it);
		idle_.erase(it);
		j.step = Step::Starting;
		set_slot(j.ref, SlotState::Starting, j.conn->backend_pid, -1, -1);
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT * FROM _lantern_fdw.record_start(%lld)", static_cast<long long>(j.jobid));
		send(j, sql);
		return;
	}
	connect(j);
}

void
Executor::connect(Job &job)
{
	// Looked up now, not at submit time: the database may have been renamed.
	char dbname[NAMEDATALEN];
	bool found = false;
	Oid dboid = job.dboid;
	pg_guarded([&] { found = lookup_database_name(dboid, dbname); });
	if (!found) {
		job.outcome = Outcome::Failed;
		job.error = "ERROR:  the database of the task no longer exists";
		record_pending(job);
		return;
	}
	job.dbname = dbname;
	std::vector<const char *> keys, values;
	std::string host = executor_host();
	std::string port = std::to_string(PostPortNumber);
	keys.push_back("host");
	values.push_back(host.c_str());
	keys.push_back("port");
	values.push_back(port.c_str());
	// The settings' options come after host and port, so they may override them.
	PQconninfoOption *extra = nullptr;
	if (guc_connection_options != nullptr && guc_connection_options[0] != '\0')
		extra = PQconninfoParse(guc_connection_options, nullptr);
	for (PQconninfoOption *o = extra; o != nullptr && o->keyword != nullptr; o++)
		if (o->val != nullptr) {
			keys.push_back(o->keyword);
			values.push_back(o->val);
		}
	keys.push_back("dbname");
	values.push_back(job.dbname.c_str());
	keys.push_back("user");
	values.push_back(job.connect_as.c_str());
	keys.push_back("application_name");
	values.push_back("lantern_fdw");
	keys.push_back(nullptr);
	values.push_back(nullptr);

	job.conn = std::make_unique<Connection>();
	job.conn->dboid = job.dboid;
	job.conn->user = job.connect_as;
	job.conn->pg.reset(PQconnectStartParams(keys.data(), values.data(), 0));
	if (extra != nullptr)
		PQconninfoFree(extra);
	job.step = Step::Connecting;
	job.connect_poll = PGRES_POLLING_WRITING;
	job.connect_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kConnectTimeoutMs);
	if (!job.conn->pg)
		connection_failed(job, "out of memory");
	else if (PQstatus(job.conn->pg.get()) == CONNECTION_BAD)
		connection_failed(job, PQerrorMessage(job.conn->pg.get()));
}

void
Executor::poll_connect(Job &job)
{
	if (job.cancel_requested) {
		job.outcome = Outcome::Canceled;
		job.error = "Canceled by user";
		job.conn.reset();
		record_pending(job);
		return;
	}
	if (!job.conn->ready) {
		if (GetCurrentTimestamp() >= job.connect_deadline)
			connection_failed(job, "could not connect to the server within 10 seconds");
		return;
	}
	job.conn->ready = false;
	PGconn *pg = job.conn->pg.get();
	job.connect_poll = PQconnectPoll(pg);
	if (job.connect_poll == PGRES_POLLING_FAILED) {
		connection_failed(job, PQerrorMessage(pg));
		return;
	}
	if (job.connect_poll != PGRES_POLLING_OK)
		return;
	PQsetnonblocking(pg, 1);
	PQsetNoticeProcessor(pg, discard_notice, nullptr);
	job.conn->backend_pid = PQbackendPID(pg);
	// The executor signals, and watches, the task's backend by its pid: the
	// connection must reach a backend of this server, in the task's database
	// (not another server, nor a connection pooler).
	PGPROC *proc = job.conn->backend_pid > 0 ? BackendPidGetProc(job.conn->backend_pid) : nullptr;
	if (proc == nullptr || proc->databaseId != job.dboid) {
		job.conn->backend_pid = 0;
		job.step = Step::Starting; // connected: no pg_hba.conf hint
		connection_failed(job, "the task connection did not reach a backend of this server in database \"" +
								   job.dbname + "\"\n" + kLoopbackHint);
		return;
	}
	job.step = Step::Starting;
	set_slot(job.ref, SlotState::Starting, job.conn->backend_pid, -1, -1);
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT * FROM _lantern_fdw.record_start(%lld)", static_cast<long long>(job.jobid));
	send(job, sql);
}

bool
Executor::send(Job &job, const char *sql)
{
	job.step_error.clear();
	job.step_sqlstate.clear();
	if (!PQsendQuery(job.conn->pg.get(), sql)) {
		connection_failed(job, PQerrorMessage(job.conn->pg.get()));
		return false;
	}
	job.in_flight = true;
	if (job.step == Step::Running)
		PQsetSingleRowMode(job.conn->pg.get());
	flush(job);
	return true;
}

// What DISCARD ALL does, in statements that may run in one transaction with
// the recording call (DISCARD ALL itself may not): one round trip, one commit.
const char *const kResetSession = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; "
								  "UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD SEQUENCES; "
								  "DISCARD TEMP; ";

// Resets the session and records the outcome, in one transaction; when the
// next queued task can use this connection, its start is recorded in the
// same transaction too, saving it a round trip and a commit.
bool
Executor::send_record_end(Job &job)
{
	PGconn *pg = job.conn->pg.get();
	std::string sql = kResetSession;
	char *error = job.error.empty() ? nullptr : PQescapeLiteral(pg, job.error.c_str(), job.error.size());
	sql += "SELECT _lantern_fdw.record_end(" + std::to_string(job.jobid) + ", '" + outcome_name(job.outcome) + "', " +
		   (error != nullptr ? error : "NULL") + ")";
	if (error != nullptr)
		PQfreemem(error);
	if (job.chained == nullptr && job.record_attempts == 0 && job.reusable && guc_idle_connection_timeout_ms > 0)
		job.chained = chain_next(job);
	if (job.chained != nullptr)
		sql += "; SELECT * FROM _lantern_fdw.record_start(" + std::to_string(job.chained->jobid) + ")";
	return send(job, sql.c_str());
}

// Takes the head of the queue if it can run on job's connection (same
// database and login role), as a job waiting for job's recording call.
Job *
Executor::chain_next(Job &job)
{
	// The next task takes this one's place: only while there is a place (the
	// limit may have been lowered meanwhile).
	long active = std::count_if(jobs_.begin(), jobs_.end(),
								[](const std::unique_ptr<Job> &j) { return j->step != Step::Done; });
	if (active > guc_max_parallel_tasks)
		return nullptr;
	if (dispatch_paused_until_ != 0 && GetCurrentTimestamp() < dispatch_paused_until_)
		return nullptr;
	TaskSlot picked;
	SlotRef ref{-1, 0};
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	int head = board_queue_head();
	if (head >= 0 && board_slot(head)->dboid == job.dboid &&
		strcmp(NameStr(board_slot(head)->connect_as), job.conn->user.c_str()) == 0) {
		TaskSlot *s = board_slot(head);
		s->backend_pid = job.conn->backend_pid;
		s->cancel_sent = false;
		board_set_state(head, SlotState::Starting);
		ref = SlotRef{head, s->generation};
		memcpy(&picked, s, sizeof(TaskSlot));
	}
	LWLockRelease(board_lock());
	if (ref.index < 0)
		return nullptr;
	auto next = std::make_unique<Job>();
	next->ref = ref;
	next->jobid = picked.jobid;
	next->dboid = picked.dboid;
	next->dbname = job.dbname;
	next->connect_as = NameStr(picked.connect_as);
	next->set_role = NameStr(picked.set_role);
	next->cancel_requested = picked.cancel_requested;
	next->step = Step::Chained;
	Job *raw = next.get();
	jobs_.push_back(std::move(next));
	return raw;
}

// The chained next task goes back to its place in the queue.
void
Executor::unchain(Job &job)
{
	if (job.chained == nullptr)
		return;
	requeue_slot(job.chained->ref);
	job.chained->step = Step::Done;
	job.chained = nullptr;
}

void
Executor::flush(Job &job)
{
	int r = PQflush(job.conn->pg.get());
	if (r < 0)
		connection_failed(job, PQerrorMessage(job.conn->pg.get()));
	else
		job.want_write = (r == 1);
}

void
Executor::poll_job(Job &job)
{
	if (job.step == Step::Done || job.step == Step::Chained)
		return; // a chained job has no connection yet
	if (job.step == Step::Connecting) {
		poll_connect(job);
		return;
	}
	PGconn *pg = job.conn->pg.get();
	job.conn->ready = false;
	if (job.want_write) {
		flush(job);
		if (job.step == Step::Done)
			return;
	}
	if (!PQconsumeInput(pg)) {
		connection_failed(job, PQerrorMessage(pg));
		return;
	}
	while (PGnotify *n = PQnotifies(pg)) // a task that LISTENs: drop what it hears
		PQfreemem(n);
	while (job.in_flight) {
		if (job.copy_out) {
			char *buf = nullptr;
			int n;
			while ((n = PQgetCopyData(pg, &buf, 1)) > 0)
				PQfreemem(buf);
			if (n == 0)
				return; // more data to come
			job.copy_out = false;
			if (n == -2) {
				connection_failed(job, PQerrorMessage(pg));
				return;
			}
		}
		if (PQisBusy(pg))
			return;
		ResultPtr res(PQgetResult(pg));
		if (!res) {
			job.in_flight = false;
			query_done(job); // may send the next query
			if (job.step == Step::Done || job.step == Step::Connecting)
				return;
			continue;
		}
		handle_result(job, res.get());
		if (job.step == Step::Done)
			return;
	}
}

void
Executor::handle_result(Job &job, PGresult *res)
{
	PGconn *pg = job.conn->pg.get();
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK: {
		// record_start's rows: the statements of this job, or of the one chained to it.
		Job *target = job.step == Step::Starting ? &job : nullptr;
		if (job.step == Step::Recording && job.chained != nullptr && PQnfields(res) == 1 &&
			strcmp(PQfname(res, 0), "record_start") == 0)
			target = job.chained;
		if (target != nullptr)
			for (int i = 0; i < PQntuples(res); i++)
				target->statements.emplace_back(PQgetvalue(res, i, 0), PQgetlength(res, i, 0));
		break;
	}
	case PGRES_FATAL_ERROR:
		if (job.step_error.empty()) {
			job.step_error = trim_trailing(PQresultErrorMessage(res));
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			job.step_sqlstate = state != nullptr ? state : "";
		}
		break;
	case PGRES_COPY_IN:
		// Nobody can feed it: end it with an error the server reports back.
		PQputCopyEnd(pg, "COPY FROM STDIN is not supported in lantern_fdw tasks");
		flush(job);
		break;
	case PGRES_COPY_OUT:
		job.copy_out = true;
		break;
	case PGRES_COPY_BOTH:
		connection_failed(job, "replication commands are not supported in lantern_fdw tasks");
		break;
	default: // single rows, command completions, empty queries, notices
		break;
	}
}

void
Executor::next_statement(Job &job)
{
	if (job.next_statement >= job.statements.size()) { // all done: a late cancel changes nothing
		job.outcome = Outcome::Succeeded;
		cleanup(job);
		return;
	}
	// The board's flag, read as the statement is marked started: a cancel
	// requested until now stops the task before its next statement.
	size_t k = job.next_statement;
	int count = static_cast<int>(job.statements.size());
	if (set_slot(job.ref, SlotState::Running, -1, static_cast<int>(k + 1), count))
		job.cancel_requested = true;
	if (job.cancel_requested) {
		job.outcome = Outcome::Canceled;
		job.error = "Canceled by user";
		cleanup(job);
		return;
	}
	job.next_statement++;
	send(job, job.statements[k].c_str());
}

void
Executor::query_done(Job &job)
{
	switch (job.step) {
	case Step::Starting:
		if (!job.step_error.empty()) {
			// The extension was dropped (or recreated): nothing is left to record.
			if (job.step_sqlstate == "42883" || job.step_sqlstate == "3F000" || job.step_sqlstate == "55000") {
				elog(LOG, "lantern_fdw: task %lld of database \"%s\" no longer exists: %s",
					 static_cast<long long>(job.jobid), job.dbname.c_str(), job.step_error.c_str());
				job.reusable = false;
				job.conn.reset();
				free_slot(job.ref);
				job.step = Step::Done;
				return;
			}
			job.outcome = Outcome::Failed;
			job.error = job.step_error;
			cleanup(job);
			return;
		}
		started(job);
		return;
	case Step::SettingRole:
		if (!job.step_error.empty()) {
			job.outcome = Outcome::Failed;
			job.error = job.step_error;
			cleanup(job);
			return;
		}
		job.step = Step::Running;
		next_statement(job);
		return;
	case Step::Running:
		if (!job.step_error.empty()) {
			bool canceled = job.cancel_sent && job.step_sqlstate == "57014";
			job.outcome = canceled ? Outcome::Canceled : Outcome::Failed;
			job.error = canceled ? "Canceled by user" : job.step_error;
			cleanup(job);
			return;
		}
		next_statement(job);
		return;
	case Step::RollingBack:
		if (!job.step_error.empty())
			job.reusable = false;
		record_end(job);
		return;
	case Step::Recording:
		if (job.step_error.empty()) {
			Job *next = job.chained;
			job.chained = nullptr;
			std::unique_ptr<Connection> conn;
			if (next != nullptr)
				conn = std::move(job.conn); // it goes on with the next task
			finish(job);
			if (next != nullptr) {
				next->conn = std::move(conn);
				started(*next);
			}
			return;
		}
		// The whole transaction failed, the chained start with it: that task
		// goes back to the queue. A cancel signal that arrived late can hit the
		// recording call: retry alone.
		unchain(job);
		if (++job.record_attempts < kMaxRecordAttempts) {
			send_record_end(job);
			return;
		}
		elog(LOG, "lantern_fdw: could not record the end of task %lld: %s", static_cast<long long>(job.jobid),
			 job.step_error.c_str());
		job.reusable = false;
		record_pending(job);
		return;
	case Step::Connecting:
	case Step::Chained:
	case Step::Done:
		return;
	}
}

// record_start has answered: on to SET ROLE, or to the first statement.
void
Executor::started(Job &job)
{
	if (!job.set_role.empty() && !job.cancel_requested) {
		char *ident = PQescapeIdentifier(job.conn->pg.get(), job.set_role.c_str(), job.set_role.size());
		std::string sql = std::string("SET ROLE ") + (ident ? ident : "\"\"");
		PQfreemem(ident);
		job.step = Step::SettingRole;
		send(job, sql.c_str());
		return;
	}
	job.step = Step::Running;
	next_statement(job);
}

// After the task's statements: roll back what it left open, reset the
// session, then record the outcome.
void
Executor::cleanup(Job &job)
{
	PGTransactionStatusType tx = PQtransactionStatus(job.conn->pg.get());
	if (tx == PQTRANS_INTRANS || tx == PQTRANS_INERROR) {
		if (job.outcome == Outcome::Succeeded) {
			job.outcome = Outcome::Failed;
			job.error = "ERROR:  the task ended inside a transaction block; its transaction was rolled back";
		}
		job.step = Step::RollingBack;
		// The outcome is final: a successor records it if we stop now.
		set_slot_outcome(job.ref, SlotState::Running, job.outcome, job.error);
		send(job, "ROLLBACK");
		return;
	}
	record_end(job);
}

// The task's outcome is known: record it.
void
Executor::record_end(Job &job)
{
	job.step = Step::Recording;
	set_slot_outcome(job.ref, SlotState::Ending, job.outcome, job.error);
	send_record_end(job);
}

// The server refuses connections for now (starting up, shutting down, in
// recovery: SQLSTATE 57P03): not the task's fault, and not final. libpq gives
// no SQLSTATE for a failed connection attempt, so these are the server's
// texts for 57P03. The refusing backend writes them in the server's
// lc_messages, which is this process's too: look for the translation as well.
bool
cannot_connect_now(const std::string &message)
{
	static const char *const kTexts[] = {
		gettext_noop("the database system is starting up"),
		gettext_noop("the database system is not yet accepting connections"),
		gettext_noop("the database system is not accepting connections"),
		gettext_noop("the database system is shutting down"),
		gettext_noop("the database system is in recovery mode"),
	};
	for (const char *text : kTexts)
		if (message.find(text) != std::string::npos || message.find(_(text)) != std::string::npos)
			return true;
	return false;
}

// A backend that exits cleanly leaves the proc array before its socket
// closes; one still there after its connection broke died without cleaning
// up (SIGKILL, a crash), and the postmaster is about to stop every process
// and reinitialize shared memory. We often see the broken connection first.
bool
backend_died_uncleanly(int pid)
{
	return pid != 0 && BackendPidGetProc(pid) != nullptr;
}

void
Executor::connection_failed(Job &job, const std::string &message)
{
	std::string text = trim_trailing(message);
	int pid = job.step != Step::Connecting && job.conn ? job.conn->backend_pid : 0;
	bool crashed = backend_died_uncleanly(pid);
	if (job.step == Step::Connecting && !job.cancel_requested && cannot_connect_now(text)) {
		// Back in the queue, in its place; dispatching pauses for a while.
		elog(LOG, "lantern_fdw: task %lld stays queued: %s", static_cast<long long>(job.jobid), text.c_str());
		requeue_slot(job.ref);
		dispatch_paused_until_ = std::max(dispatch_paused_until_,
										  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kCannotConnectPauseMs));
		job.conn.reset();
		job.step = Step::Done;
		return;
	}
	if (job.step == Step::Connecting) {
		text += "\n";
		text += kConnectHint;
	}
	if (job.outcome == Outcome::None || job.step < Step::RollingBack) {
		if (job.cancel_requested && job.cancel_sent) {
			job.outcome = Outcome::Canceled;
			job.error = "Canceled by user";
		} else {
			job.outcome = Outcome::Failed;
			job.error = text;
		}
	}
	job.reusable = false;
	job.conn.reset();
	unchain(job);
	record_pending(job);
	if (crashed)
		crash_coming(pid);
}

// Until the postmaster stops us, start no task and write no outcome: a task
// started now would fail with the restart without having run, and an outcome
// written now would differ from the one recovery gives the other tasks that
// were running. (The postmaster may even start a maintenance worker we ask
// for before it handles the crash.)
void
Executor::crash_coming(int pid)
{
	elog(LOG, "lantern_fdw: task connection backend %d died without cleaning up; waiting for the server to restart",
		 pid);
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kCrashHoldMs);
	dispatch_paused_until_ = std::max(dispatch_paused_until_, until);
	maintenance_retry_at_ = std::max(maintenance_retry_at_, until);
}

// No connection to record through: a maintenance worker writes the outcome.
void
Executor::record_pending(Job &job)
{
	set_slot_outcome(job.ref, SlotState::RecordPending, job.outcome, job.error);
	job.step = Step::Done;
	job.in_flight = false;
}

void
Executor::finish(Job &job)
{
	free_slot(job.ref);
	job.step = Step::Done;
	if (job.conn && job.reusable && guc_idle_connection_timeout_ms > 0 &&
		PQtransactionStatus(job.conn->pg.get()) == PQTRANS_IDLE) {
		job.conn->idle_since = GetCurrentTimestamp();
		idle_.push_back(std::move(job.conn));
	}
	job.conn.reset();
}

void
Executor::apply_cancels(TimestampTz now)
{
	if (jobs_.empty())
		return;
	std::vector<Job *> to_signal;
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	for (auto &job : jobs_) {
		TaskSlot *s = board_slot(job->ref.index);
		if (s->generation == job->ref.generation && s->cancel_requested)
			job->cancel_requested = true;
		if (!job->cancel_requested || job->step != Step::Running || !job->in_flight || !job->conn)
			continue;
		// A backend drops a cancel signal that arrives while it still reads
		// the statement: signal again until the statement ends.
		if (job->cancel_sent && now < TimestampTzPlusMilliseconds(job->cancel_signaled_at, kCancelRetryMs))
			continue;
		s->cancel_sent = true;
		job->cancel_sent = true;
		job->cancel_signaled_at = now;
		to_signal.push_back(job.get());
	}
	LWLockRelease(board_lock());
	// The backend runs the task's statement: cancel it, like pg_cancel_backend.
	for (Job *job : to_signal)
		kill(job->conn->backend_pid, SIGINT);
}

void
Executor::reap_idle(TimestampTz now)
{
	uint32 close_requests = board_close_idle_requests();
	bool close_all = close_requests != close_idle_seen_;
	close_idle_seen_ = close_requests;
	for (auto it = idle_.begin(); it != idle_.end();) {
		Connection &c = **it;
		bool dead = false;
		if (c.ready) {
			// Data on an idle connection: the server closed it, or a notice.
			c.ready = false;
			dead = !PQconsumeInput(c.pg.get()) || PQstatus(c.pg.get()) != CONNECTION_OK;
			if (dead && backend_died_uncleanly(c.backend_pid))
				crash_coming(c.backend_pid);
			while (PGnotify *n = PQnotifies(c.pg.get()))
				PQfreemem(n);
		}
		bool expired = now >= TimestampTzPlusMilliseconds(c.idle_since, guc_idle_connection_timeout_ms);
		if (dead || expired || close_all)
			it = idle_.erase(it);
		else
			++it;
	}
}

// ---- maintenance workers --------------------------------------------------

// The RecordPending slots of a database (of all databases if db is invalid).
std::vector<SlotRef>
pending_outcomes(Oid db)
{
	std::vector<SlotRef> refs;
	LWLockAcquire(board_lock(), LW_SHARED);
	if (board_record_pending_count() > 0)
		for (int i = board_first_active(); i >= 0; i = board_next_active(i)) {
			const TaskSlot *s = board_slot(i);
			if (s->state == SlotState::RecordPending && (!OidIsValid(db) || s->dboid == db))
				refs.push_back(SlotRef{i, s->generation});
		}
	LWLockRelease(board_lock());
	return refs;
}

// How many of refs are still waiting for their outcome to be written.
int
still_pending(const std::vector<SlotRef> &refs)
{
	int n = 0;
	LWLockAcquire(board_lock(), LW_SHARED);
	for (const SlotRef &r : refs) {
		const TaskSlot *s = board_slot(r.index);
		n += s->generation == r.generation && s->state == SlotState::RecordPending;
	}
	LWLockRelease(board_lock());
	return n;
}

// Gives up the outcomes of a database that workers failed to write, loudly.
void
give_up_outcomes(Oid db)
{
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	for (int i = board_first_active(), next; i >= 0; i = next) {
		next = board_next_active(i);
		TaskSlot *s = board_slot(i);
		if (s->state == SlotState::RecordPending && s->dboid == db) {
			elog(WARNING, "lantern_fdw: could not record the outcome of task %lld in database %u: %s",
				 static_cast<long long>(s->jobid), db, board_message(i));
			board_set_state(i, SlotState::Free);
		}
	}
	LWLockRelease(board_lock());
	ConditionVariableBroadcast(board_cv());
}

void
Executor::worker_stopped(Oid db, const MaintenanceRun &run, TimestampTz now)
{
	// A run failed if it left outcomes it was started for unwritten, or if it
	// was to recover the database and did not say it had.
	bool failed = still_pending(run.pending) > 0 || (run.recover && !board_take_recovery_ack(db));
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
			elog(WARNING, "lantern_fdw: could not recover the tasks of database %u; they will be recovered at the "
						  "next server start", db);
	}
}

void
Executor::manage_maintenance(TimestampTz now)
{
	// Take note of the workers that have exited.
	for (auto it = maintenance_.begin(); it != maintenance_.end();) {
		pid_t pid;
		if (GetBackgroundWorkerPid(it->second.handle, &pid) == BGWH_STOPPED) {
			pfree(it->second.handle);
			MaintenanceRun run = std::move(it->second);
			Oid db = it->first;
			it = maintenance_.erase(it);
			worker_stopped(db, run, now);
		} else
			++it;
	}
	if (now < maintenance_retry_at_)
		return;

	auto can_start = [&](Oid db) {
		auto r = retry_at_.find(db);
		return !maintenance_.count(db) && (r == retry_at_.end() || now >= r->second);
	};
	auto start = [&](Oid db, bool recover) {
		BackgroundWorkerHandle *handle = nullptr;
		std::vector<SlotRef> pending = pending_outcomes(db);
		if (!start_maintenance_worker(db, recover, &handle)) {
			// No background worker slot free now: not the database's fault.
			maintenance_retry_at_ = TimestampTzPlusMilliseconds(now, kMaintenanceRetryMs);
			return false;
		}
		maintenance_[db] = MaintenanceRun{handle, recover, std::move(pending)};
		return true;
	};

	// Outcomes to write.
	std::set<Oid> pending_dbs;
	for (const SlotRef &r : pending_outcomes(InvalidOid))
		pending_dbs.insert(board_slot(r.index)->dboid);
	for (Oid db : pending_dbs) {
		if (!can_start(db))
			continue;
		auto f = failures_.find(db);
		if (f != failures_.end() && f->second >= kMaxMaintenanceAttempts) {
			give_up_outcomes(db); // the database is gone, or refuses its workers
			failures_.erase(db);
			continue;
		}
		if (!start(db, false))
			return;
	}

	// Recovery, one database at a time.
	if (OidIsValid(recovering_db_) && !maintenance_.count(recovering_db_))
		recovering_db_ = InvalidOid;
	if (!OidIsValid(recovering_db_) && !to_recover_.empty() && can_start(to_recover_.back()) &&
		start(to_recover_.back(), true)) {
		recovering_db_ = to_recover_.back();
		to_recover_.pop_back();
	}
	if (recovering_ && to_recover_.empty() && !OidIsValid(recovering_db_)) {
		board_recovery_done();
		recovering_ = false;
	}

	// Retention, now and then: every half retention period, at most once a
	// minute, one database at a time.
	if (guc_task_retention_s > 0 && now >= next_retention_at_ && to_retain_.empty()) {
		long interval_ms = std::clamp<long>(guc_task_retention_s * 500L, 1000, kMaxRetentionIntervalMs);
		next_retention_at_ = TimestampTzPlusMilliseconds(now, interval_ms);
		to_retain_.assign(known_dbs_.begin(), known_dbs_.end());
	}
	if (OidIsValid(retaining_db_) && !maintenance_.count(retaining_db_))
		retaining_db_ = InvalidOid;
	if (!OidIsValid(retaining_db_) && !to_retain_.empty()) {
		Oid db = to_retain_.back();
		if (maintenance_.count(db)) {
			to_retain_.pop_back(); // a worker runs there already and applies retention too
		} else if (start(db, false)) {
			retaining_db_ = db;
			to_retain_.pop_back();
		}
	}
}

// ---- waiting ---------------------------------------------------------------

std::vector<Executor::WaitSocket>
Executor::wanted_sockets() const
{
	std::vector<WaitSocket> out;
	for (auto &job : jobs_) {
		if (!job->conn || !job->conn->pg || job->step == Step::Done)
			continue;
		pgsocket fd = PQsocket(job->conn->pg.get());
		if (fd == PGINVALID_SOCKET)
			continue;
		uint32 events;
		if (job->step == Step::Connecting)
			events = job->connect_poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		else
			events = WL_SOCKET_READABLE | (job->want_write ? WL_SOCKET_WRITEABLE : 0);
		out.push_back(WaitSocket{fd, job->conn->id, events});
	}
	for (auto &c : idle_) {
		pgsocket fd = PQsocket(c->pg.get());
		if (fd != PGINVALID_SOCKET)
			out.push_back(WaitSocket{fd, c->id, WL_SOCKET_READABLE});
	}
	return out;
}

long
Executor::wait_timeout(TimestampTz now) const
{
	TimestampTz next = 0;
	auto consider = [&](TimestampTz t) {
		if (t != 0 && (next == 0 || t < next))
			next = t;
	};
	for (auto &job : jobs_) {
		if (job->step == Step::Connecting)
			consider(job->connect_deadline);
		if (job->cancel_sent && job->in_flight && job->step == Step::Running)
			consider(TimestampTzPlusMilliseconds(job->cancel_signaled_at, kCancelRetryMs));
	}
	for (auto &c : idle_)
		consider(TimestampTzPlusMilliseconds(c->idle_since, guc_idle_connection_timeout_ms));
	if (maintenance_retry_at_ > now)
		consider(maintenance_retry_at_);
	if (dispatch_paused_until_ > now)
		consider(dispatch_paused_until_);
	for (auto &r : retry_at_)
		if (r.second > now)
			consider(r.second);
	if (!to_recover_.empty() || !to_retain_.empty())
		consider(TimestampTzPlusMilliseconds(now, kMaintenanceRetryMs));
	if (guc_task_retention_s > 0)
		consider(next_retention_at_);
	if (next == 0)
		return -1;
	return std::max<long>(0, TimestampDifferenceMilliseconds(now, next) + 1);
}

void
Executor::wait(long timeout_ms)
{
	auto wanted = wanted_sockets();
	// Keep the set while it watches the same sockets; a connection attempt
	// may close and reopen its socket, so rebuild while one is under way.
	bool same = wait_set_ != nullptr && wanted.size() == wait_sockets_.size();
	for (auto &job : jobs_)
		same = same && job->step != Step::Connecting;
	for (size_t i = 0; same && i < wanted.size(); i++)
		same = wanted[i].fd == wait_sockets_[i].fd && wanted[i].connection_id == wait_sockets_[i].connection_id;
	WaitEvent events[64];
	int n = 0;
	WaitSocket *sockets = wanted.data();
	int nsockets = static_cast<int>(wanted.size());
	pg_guarded([&] {
		if (!same) {
			if (wait_set_ != nullptr)
				FreeWaitEventSet(wait_set_);
			wait_set_ = nullptr;
			wait_set_ = CreateWaitEventSet(TopMemoryContext, 2 + nsockets);
			AddWaitEventToSet(wait_set_, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
			AddWaitEventToSet(wait_set_, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
			for (int i = 0; i < nsockets; i++)
				AddWaitEventToSet(wait_set_, sockets[i].events, sockets[i].fd, nullptr, nullptr);
		} else {
			for (int i = 0; i < nsockets; i++)
				if (sockets[i].events != wait_sockets_[i].events)
					ModifyWaitEvent(wait_set_, i + 2, sockets[i].events, nullptr);
		}
		n = WaitEventSetWait(wait_set_, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	});
	wait_sockets_ = wanted;
	for (int i = 0; i < n; i++) {
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (events[i].pos < 2)
			continue;
		pgsocket fd = events[i].fd;
		for (auto &job : jobs_)
			if (job->conn && job->conn->pg && PQsocket(job->conn->pg.get()) == fd)
				job->conn->ready = true;
		for (auto &c : idle_)
			if (PQsocket(c->pg.get()) == fd)
				c->ready = true;
	}
}

// ---- start-up --------------------------------------------------------------

// Slots left in flight by a previous executor: requeue the ones that never
// started their statements, fail the others, and end their backends.
void
Executor::adopt_orphans()
{
	std::vector<int> pids;
	LWLockAcquire(board_lock(), LW_EXCLUSIVE);
	for (int i = board_first_active(); i >= 0; i = board_next_active(i)) {
		TaskSlot *s = board_slot(i);
		if (s->state != SlotState::Starting && s->state != SlotState::Running && s->state != SlotState::Ending)
			continue;
		if (s->backend_pid != 0)
			pids.push_back(s->backend_pid);
		if (s->state == SlotState::Starting) {
			board_set_state(i, SlotState::Queued); // its old place in the queue
		} else if (s->outcome != Outcome::None) {
			// Its statements were done: the outcome it was recording stands.
			board_set_state(i, SlotState::RecordPending);
		} else {
			s->outcome = Outcome::Failed;
			board_set_message(i, "ERROR:  the lantern_fdw executor stopped while the task was running; its backend "
								 "was terminated, and its statements that had not committed were rolled back");
			board_set_state(i, SlotState::RecordPending);
		}
		s->backend_pid = 0;
	}
	LWLockRelease(board_lock());
	for (int pid : pids)
		if (BackendPidGetProc(pid) != nullptr)
			kill(pid, SIGTERM);
}

extern "C" {
// Plain C, like list_databases below.
static bool
lookup_database_name(Oid dboid, char *out)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	char *name = get_database_name(dboid);
	if (name != nullptr)
		strlcpy(out, name, NAMEDATALEN);
	CommitTransactionCommand();
	return name != nullptr;
}

// Fills *oids (palloc'd in TopMemoryContext) with the databases that may
// hold tasks. Plain C, called through pg_guarded.
static int
list_databases(Oid **oids)
{
	int n = 0, cap = 16;
	*oids = static_cast<Oid *>(MemoryContextAlloc(TopMemoryContext, cap * sizeof(Oid)));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	Relation rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
	HeapTuple tup;
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
		Form_pg_database db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tup));
		if (!db->datallowconn && db->datistemplate)
			continue; // template0

		if (n == cap) {
			cap *= 2;
			*oids = static_cast<Oid *>(repalloc(*oids, cap * sizeof(Oid)));
		}
		(*oids)[n++] = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return n;
}
}

void
Executor::run()
{
	board_set_executor(MyLatch, MyProcPid);
	adopt_orphans();
	Oid *oids = nullptr;
	int n = 0;
	pg_guarded([&] { n = list_databases(&oids); });
	for (int i = 0; i < n; i++)
		known_dbs_.insert(oids[i]);
	if (board_recovery_needed())
		to_recover_.assign(oids, oids + n);
	recovering_ = !to_recover_.empty();
	pfree(oids);
	close_idle_seen_ = board_close_idle_requests();

	for (;;) {
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending) {
			ConfigReloadPending = false;
			pg_guarded([] { ProcessConfigFile(PGC_SIGHUP); });
			idle_.clear(); // connection settings may have changed
			next_retention_at_ = 0; // apply a new retention at once
		}
		apply_cancels(GetCurrentTimestamp());
		dispatch();
		for (size_t i = 0; i < jobs_.size(); i++)
			poll_job(*jobs_[i]);
		jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(),
								   [](const std::unique_ptr<Job> &j) { return j->step == Step::Done; }),
					jobs_.end());
		if (static_cast<int>(jobs_.size()) < guc_max_parallel_tasks)
			dispatch(); // take the places of the jobs that just ended
		TimestampTz now = GetCurrentTimestamp();
		reap_idle(now);
		manage_maintenance(now);
		wait(wait_timeout(now));
	}
}

} // namespace

void
register_executor()
{
	BackgroundWorker worker = {};
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "lantern_fdw", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "lantern_executor_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "lantern_fdw executor", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "lantern_fdw executor", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

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
