// The task protocol (task.cpp): each job runs one task over a libpq
// connection — connect (or reuse an idle connection), record_start,
// [SET ROLE], the statements one by one, [ROLLBACK], then the session reset
// and record_end in one round trip. Include after pg.hpp and board.hpp.
#pragma once

#include "settings.hpp"
#include "executor/connection.hpp"
#include "executor/maintenance_runs.hpp"
#include "executor/wait.hpp"

#include <memory>
#include <string>
#include <vector>

namespace lantern {

// The steps of a job. Chained: the job's record_start rides on the end of
// the previous task on the same connection (see Tasks::chain_next).
enum class Step { Connecting, Chained, Starting, SettingRole, Running, RollingBack, Recording, Done };

// What a step means outside the job.
struct StepInfo {
	// The state of the job's slot during the step. Done: the slot is no
	// longer the job's (it was freed, queued again, or left RecordPending).
	SlotState slot;
	// The job's outcome is final: a failure of the connection does not change it.
	bool outcome_final;
};

constexpr StepInfo
step_info(Step step)
{
	switch (step) {
	case Step::Connecting:
	case Step::Chained:
	case Step::Starting:
	case Step::SettingRole:
		return {SlotState::Starting, false};
	case Step::Running:
		return {SlotState::Running, false};
	case Step::RollingBack:
		return {SlotState::Running, true};
	case Step::Recording:
		return {SlotState::Ending, true};
	case Step::Done:
		break;
	}
	return {SlotState::Free, true};
}

// What one statement said, kept until the recording call writes it.
struct StatementOutput {
	TimestampTz started_at = 0;
	int64 duration_us = 0;
	bool failed = false;
	std::string command; // the tag of its last command completion
	bool has_rows = false;
	int64 rows = 0;
	std::string messages;
	bool has_result = false;
	std::string result; // JSON array of row objects (without the closing bracket)
	std::vector<std::string> keys; // the result's object keys, made unique
	bool result_full = false;	   // a row did not fit: no more are kept
	bool truncated = false;
};

struct Job {
	SlotRef ref{};
	int64 jobid = 0;
	Oid dboid = InvalidOid;
	std::string dbname, connect_as, set_role;
	std::unique_ptr<Connection> conn;
	Step step = Step::Connecting; // changed by Tasks::set_step alone
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
	// The maximum run time (the task's, else lantern_fdw.default_max_runtime), counted from
	// the start of the first statement; 0: none. Once it has passed, the task
	// is canceled and ends failed.
	long max_runtime_ms = 0;
	TimestampTz run_deadline = 0;
	bool timed_out = false;
	bool reusable = true;
	int record_attempts = 0;
	Job *chained = nullptr; // Recording: the next task, started in the same transaction
	bool keep_result = false;			 // keep the rows of the last statement
	std::vector<StatementOutput> output; // one per statement sent
	size_t output_bytes = 0;			 // messages and result kept, against max_output_size
	std::string record_sql;				 // Recording: the session's reset and the output calls
};

class Tasks {
  public:
	Tasks(ConnectionPool &pool, MaintenanceScheduler &maintenance) : pool_(pool), maintenance_(maintenance) {}

	// Takes queued slots from the head of the queue while there is room.
	void dispatch();
	// Advances every job, and drops the ones that are done.
	void poll();
	// Signals the backends of running jobs whose cancel was requested.
	void apply_cancels(TimestampTz now);
	bool full() const { return static_cast<int>(jobs_.size()) >= guc_max_parallel_tasks; }
	// A backend died without cleaning up: start nothing for a while.
	void crash_coming(int pid);
	// Whether a connection is being made (its socket may change).
	bool connecting() const;
	void add_sockets(std::vector<WaitSocket> &out) const;
	void mark_ready(pgsocket fd);
	// The nearest deadline of a job or of the dispatch pause; 0 if none.
	TimestampTz next_deadline(TimestampTz now) const;

  private:
	ConnectionPool &pool_;
	MaintenanceScheduler &maintenance_;
	std::vector<std::unique_ptr<Job>> jobs_;
	TimestampTz dispatch_paused_until_ = 0; // the server refused connections for now

	bool dispatch_paused() const;
	Job &add_job(const TaskSlot &slot, SlotRef ref, Step step);
	void set_step(Job &job, Step step, SlotState done_as = SlotState::Free);
	void start_job(Job &job);
	void connect(Job &job);
	void poll_connect(Job &job);
	void poll_job(Job &job);
	bool send(Job &job, const char *sql);
	bool send_record_start(Job &job);
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
	void end_with(Job &job, Outcome outcome, const std::string &error);
};

} // namespace lantern
