// The task protocol: each job's steps over its libpq connection, and the
// slot state each step keeps its slot in (step_info). A task's failures
// are values (an outcome and a message), never errors.
#include "pg.hpp"
#include "board.hpp"
#include "catalog.hpp"
#include "executor/guard.hpp"
#include "executor/slots.hpp"
#include "executor/task.hpp"

#include <algorithm>

namespace lantern {

constexpr long kCancelRetryMs = 100;
constexpr long kCannotConnectPauseMs = 1000;
// How long to start nothing once a backend has died without cleaning up: the
// postmaster stops every process within milliseconds of it (see
// backend_died_uncleanly); this bound only matters if it somehow does not.
constexpr long kCrashHoldMs = 10000;
constexpr int kMaxRecordAttempts = 2;

const char *const kLoopbackHint = "HINT:  lantern_fdw.host and lantern_fdw.connection_options must lead to this "
								  "server itself, not to another server or a connection pooler (see docs/settings.md).";
const char *const kConnectHint = "HINT:  The lantern_fdw executor connects to the server like any client: allow it "
								 "in pg_hba.conf (see docs/setup.md).";

// What DISCARD ALL does, in statements that may run in one transaction with
// the recording call (DISCARD ALL itself may not): one round trip, one commit.
const char *const kResetSession = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; "
								  "UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD SEQUENCES; "
								  "DISCARD TEMP; ";

static std::string
record_start_sql(int64 jobid, const Connection &conn)
{
	std::string sql = "SELECT * FROM _lantern_fdw.record_start(" + std::to_string(jobid) + ")";
	if (conn.output != OutputRecording::Yes)
		sql += std::string("; ") + kOutputProbe;
	return sql;
}

static void
discard_notice(void *, const char *)
{
}

// What a running statement says is kept while the task's output stays under
// lantern_fdw.max_output_size; past it, whole messages and rows are dropped
// (so what is kept is whole text) and the statement is marked truncated.

// Room for bytes more in the job's output.
static bool
output_fits(Job &job, size_t bytes)
{
	size_t cap = static_cast<size_t>(std::max(guc_max_output_size, 0));
	if (job.output_bytes + bytes > cap)
		return false;
	job.output_bytes += bytes;
	return true;
}

// A notice or warning of the running statement, as psql prints it.
static void
output_notice(void *arg, const char *message)
{
	Job &job = *static_cast<Job *>(arg);
	if (job.output.empty())
		return;
	StatementOutput &out = job.output.back();
	size_t len = strlen(message);
	if (output_fits(job, len))
		out.messages.append(message, len);
	else
		out.truncated = true;
}

static void
append_json_string(std::string &to, const char *s, size_t len)
{
	to += '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = static_cast<unsigned char>(s[i]);
		switch (c) {
		case '"':
			to += "\\\"";
			break;
		case '\\':
			to += "\\\\";
			break;
		case '\n':
			to += "\\n";
			break;
		case '\r':
			to += "\\r";
			break;
		case '\t':
			to += "\\t";
			break;
		default:
			if (c < 0x20) {
				char buf[8];
				snprintf(buf, sizeof(buf), "\\u%04x", c);
				to += buf;
			} else {
				to += static_cast<char>(c);
			}
		}
	}
	to += '"';
}

// Whether values of a column of type oid are JSON numbers (when finite).
static bool
numeric_type(Oid type)
{
	return type == INT2OID || type == INT4OID || type == INT8OID || type == FLOAT4OID || type == FLOAT8OID ||
		   type == NUMERICOID || type == OIDOID;
}

static bool
finite_number(const char *v)
{
	return strcmp(v, "NaN") != 0 && strcmp(v, "Infinity") != 0 && strcmp(v, "-Infinity") != 0;
}

// The object keys of res's columns: the column names, a repeated one
// followed by _2, _3, ... (skipping keys taken already).
static std::vector<std::string>
result_keys(const PGresult *res)
{
	std::vector<std::string> keys;
	int n = PQnfields(res);
	auto taken = [&](const std::string &k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
	for (int i = 0; i < n; i++) {
		std::string name = PQfname(res, i);
		std::string key = name;
		for (int k = 2; taken(key); k++)
			key = name + "_" + std::to_string(k);
		keys.push_back(key);
	}
	return keys;
}

// The rows of res (one row in single-row mode), kept as JSON objects.
static void
output_rows(Job &job, const PGresult *res)
{
	StatementOutput &out = job.output.back();
	if (!out.has_result) {
		out.has_result = true;
		out.keys = result_keys(res);
		out.result = "[";
	}
	for (int r = 0; r < PQntuples(res) && !out.result_full; r++) {
		std::string row = out.result.size() > 1 ? ", {" : "{";
		for (int c = 0; c < PQnfields(res); c++) {
			if (c > 0)
				row += ", ";
			append_json_string(row, out.keys[c].data(), out.keys[c].size());
			row += ": ";
			const char *v = PQgetvalue(res, r, c);
			if (PQgetisnull(res, r, c))
				row += "null";
			else if (numeric_type(PQftype(res, c)) && finite_number(v))
				row += v;
			else
				append_json_string(row, v, PQgetlength(res, r, c));
		}
		row += "}";
		if (output_fits(job, row.size())) {
			out.result += row;
		} else {
			out.result_full = true;
			out.truncated = true;
		}
	}
}

// The tag of a command completion, and its row count where it has one.
static void
output_command(StatementOutput &out, const PGresult *res)
{
	out.command = PQcmdStatus(const_cast<PGresult *>(res));
	const char *rows = PQcmdTuples(const_cast<PGresult *>(res));
	out.has_rows = rows[0] != '\0';
	out.rows = out.has_rows ? strtoll(rows, nullptr, 10) : 0;
}

// Appends the recording calls of the job's output to sql, in statement
// order, freeing each value once copied: built in place (one escaped copy of one
// value at a time), so that the executor holds little more than the cap.
static void
append_record_output_sql(std::string &sql, PGconn *pg, Job &job)
{
	size_t n = std::min(job.output.size(), job.statements.size());
	size_t need = 0;
	for (size_t i = 0; i < n; i++)
		need += 200 + job.statements[i].size() + job.output[i].command.size() + job.output[i].messages.size() +
				job.output[i].result.size();
	sql.reserve(sql.size() + need + need / 16);
	auto literal = [&](const std::string &v) {
		char *e = PQescapeLiteral(pg, v.data(), v.size());
		sql += e != nullptr ? e : "NULL";
		PQfreemem(e);
	};
	for (size_t i = 0; i < n; i++) {
		StatementOutput &out = job.output[i];
		sql += "SELECT _lantern_fdw.record_output(";
		sql += std::to_string(job.jobid);
		sql += ", ";
		sql += std::to_string(i + 1);
		sql += ", ";
		literal(job.statements[i]);
		sql += ", ";
		if (out.failed)
			sql += "NULL";
		else
			literal(out.command);
		sql += ", ";
		sql += out.has_rows && !out.failed ? std::to_string(out.rows) : "NULL";
		sql += ", ";
		sql += std::to_string(out.started_at);
		sql += ", ";
		sql += std::to_string(out.duration_us);
		sql += ", ";
		if (out.messages.empty())
			sql += "NULL";
		else
			literal(out.messages);
		std::string().swap(out.messages);
		sql += ", ";
		if (out.has_result && !out.failed) {
			out.result += ']';
			literal(out.result);
		} else {
			sql += "NULL";
		}
		std::string().swap(out.result);
		sql += ", ";
		sql += out.truncated ? "true" : "false";
		sql += "); ";
	}
}

// ---- steps ------------------------------------------------------------------

// The one place a job's step changes. The job's slot follows it to the
// state step_info names; entering Done, the slot goes to done_as: Free (the
// outcome is committed, or there is nothing to record), Queued (back in its
// place) or RecordPending (a maintenance worker writes the outcome).
void
Tasks::set_step(Job &job, Step step, SlotState done_as)
{
	if (job.step == Step::Done)
		return;
	SlotState from = step_info(job.step).slot;
	job.step = step;
	if (step == Step::Done) {
		if (done_as == SlotState::RecordPending) {
			slots_set_outcome(job.ref, SlotState::RecordPending, job.outcome, job.error);
			job.in_flight = false;
		} else {
			Assert(done_as == SlotState::Free || done_as == SlotState::Queued);
			slots_move(job.ref, done_as);
		}
		return;
	}
	StepInfo info = step_info(step);
	if (info.outcome_final) {
		// The outcome is known: it is kept in the slot, so that a successor
		// records it if this executor stops now.
		slots_set_outcome(job.ref, info.slot, job.outcome, job.error);
	} else if (info.slot != from) {
		slots_move(job.ref, info.slot);
	} else if (step == Step::Starting && job.conn && job.conn->backend_pid != 0) {
		slots_set_backend(job.ref, job.conn->backend_pid);
	}
}

// ---- starting -----------------------------------------------------------------

bool
Tasks::dispatch_paused() const
{
	return dispatch_paused_until_ != 0 && GetCurrentTimestamp() < dispatch_paused_until_;
}

Job &
Tasks::add_job(const TaskSlot &slot, SlotRef ref, Step step)
{
	auto job = std::make_unique<Job>();
	job->ref = ref;
	job->jobid = slot.jobid;
	job->dboid = slot.dboid;
	job->connect_as = NameStr(slot.connect_as);
	job->set_role = NameStr(slot.set_role);
	job->cancel_requested = slot.cancel_requested;
	job->max_runtime_ms = slot.max_runtime_us > 0 ? static_cast<long>(std::clamp<int64>(slot.max_runtime_us / 1000, 1, LONG_MAX)) : 0;
	job->keep_result = slot.keep_result;
	job->step = step;
	jobs_.push_back(std::move(job));
	return *jobs_.back();
}

void
Tasks::dispatch()
{
	if (dispatch_paused())
		return;
	dispatch_paused_until_ = 0;
	while (!full()) {
		TaskSlot picked;
		SlotRef ref{-1, 0};
		if (!slots_take_queue_head(InvalidOid, nullptr, 0, &picked, &ref))
			return;
		maintenance_.note_database(picked.dboid);
		start_job(add_job(picked, ref, Step::Connecting));
	}
}

void
Tasks::start_job(Job &job)
{
	// Reuse an idle connection of the same database and login role, or go
	// on with one opened ahead of this task (or of another of the pair).
	job.conn = pool_.take(job.dboid, job.connect_as);
	if (!job.conn) {
		connect(job);
		return;
	}
	if (!job.conn->dbname.empty())
		job.dbname = job.conn->dbname;
	job.conn->wish = SlotRef{-1, 0};
	if (job.conn->opening || job.conn->warming) {
		job.connect_poll = job.conn->opening ? job.conn->poll : PGRES_POLLING_READING;
		job.connect_deadline = job.conn->deadline;
		return; // Connecting: poll_connect goes on
	}
	set_step(job, Step::Starting);
	send_record_start(job);
}

void
Tasks::connect(Job &job)
{
	// Looked up now, not at submit time: the database may have been renamed.
	char dbname[NAMEDATALEN];
	bool found = false;
	Oid dboid = job.dboid;
	pg_guarded([&] { found = catalog_database_name(dboid, dbname); });
	if (!found) {
		job.outcome = Outcome::Failed;
		job.error = "ERROR:  the database of the task no longer exists";
		record_pending(job);
		return;
	}
	job.dbname = dbname;
	job.conn = connection_start(job.dboid, job.dbname, job.connect_as);
	job.connect_poll = PGRES_POLLING_WRITING;
	job.connect_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kConnectTimeoutMs);
	if (!job.conn->pg)
		connection_failed(job, "out of memory");
	else if (PQstatus(job.conn->pg.get()) == CONNECTION_BAD)
		connection_failed(job, PQerrorMessage(job.conn->pg.get()));
}

void
Tasks::poll_connect(Job &job)
{
	if (job.cancel_requested) {
		job.outcome = Outcome::Canceled;
		job.error = kCanceledByUser;
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
	if (job.conn->warming) {
		// Opened ahead of the task, its backend was checked and is loading
		// its caches: once that is done, the task starts.
		if (!connection_warm_up_done(*job.conn))
			return;
		if (job.conn->warming || PQstatus(pg) != CONNECTION_OK) {
			connection_failed(job, PQerrorMessage(pg));
			return;
		}
		set_step(job, Step::Starting);
		send_record_start(job);
		return;
	}
	job.connect_poll = PQconnectPoll(pg);
	if (job.connect_poll == PGRES_POLLING_FAILED) {
		connection_failed(job, PQerrorMessage(pg));
		return;
	}
	if (job.connect_poll != PGRES_POLLING_OK)
		return;
	job.conn->opening = false;
	PQsetnonblocking(pg, 1);
	PQsetNoticeProcessor(pg, discard_notice, nullptr);
	job.conn->backend_pid = PQbackendPID(pg);
	// The executor signals, and watches, the task's backend by its pid: the
	// connection must reach a backend of this server, in the task's database
	// (not another server, nor a connection pooler).
	if (!backend_in_database(job.conn->backend_pid, job.dboid)) {
		job.conn->backend_pid = 0;
		set_step(job, Step::Starting); // connected: no pg_hba.conf hint
		connection_failed(job, "the task connection did not reach a backend of this server in database \"" +
								   job.dbname + "\"\n" + kLoopbackHint);
		return;
	}
	set_step(job, Step::Starting);
	send_record_start(job);
}

// ---- talking to the task's backend ------------------------------------------

bool
Tasks::send(Job &job, const char *sql)
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

bool
Tasks::send_record_start(Job &job)
{
	return send(job, record_start_sql(job.jobid, *job.conn).c_str());
}

// Resets the session and records the outcome, in one transaction; when the
// next queued task can use this connection, its start is recorded in the
// same transaction too, saving it a round trip and a commit.
bool
Tasks::send_record_end(Job &job)
{
	PGconn *pg = job.conn->pg.get();
	// The reset and the output calls are built once and kept for a retry
	// (see query_done); a database without record_output gets the outcome alone.
	std::string &sql = job.record_sql;
	if (sql.empty()) {
		sql = kResetSession;
		if (job.conn->output == OutputRecording::Yes)
			append_record_output_sql(sql, pg, job);
		std::vector<StatementOutput>().swap(job.output);
		job.output_bytes = 0;
	}
	size_t kept = sql.size();
	char *error = job.error.empty() ? nullptr : PQescapeLiteral(pg, job.error.c_str(), job.error.size());
	sql += "SELECT _lantern_fdw.record_end(" + std::to_string(job.jobid) + ", '" + outcome_name(job.outcome) + "', " +
		   (error != nullptr ? error : "NULL") + ")";
	if (error != nullptr)
		PQfreemem(error);
	if (job.chained == nullptr && job.record_attempts == 0 && job.reusable && guc_idle_connection_timeout_ms > 0)
		job.chained = chain_next(job);
	if (job.chained != nullptr)
		sql += "; " + record_start_sql(job.chained->jobid, *job.conn);
	bool sent = send(job, sql.c_str());
	sql.resize(kept);
	return sent;
}

// Takes the head of the queue if it can run on job's connection (same
// database and login role), as a job waiting for job's recording call.
Job *
Tasks::chain_next(Job &job)
{
	// The next task takes this one's place: only while there is a place (the
	// limit may have been lowered meanwhile).
	long active = std::count_if(jobs_.begin(), jobs_.end(),
								[](const std::unique_ptr<Job> &j) { return j->step != Step::Done; });
	if (active > guc_max_parallel_tasks)
		return nullptr;
	if (dispatch_paused())
		return nullptr;
	TaskSlot picked;
	SlotRef ref{-1, 0};
	if (!slots_take_queue_head(job.dboid, job.conn->user.c_str(), job.conn->backend_pid, &picked, &ref))
		return nullptr;
	Job &next = add_job(picked, ref, Step::Chained);
	next.dbname = job.dbname;
	return &next;
}

// The chained next task goes back to its place in the queue.
void
Tasks::unchain(Job &job)
{
	if (job.chained == nullptr)
		return;
	set_step(*job.chained, Step::Done, SlotState::Queued);
	job.chained = nullptr;
}

void
Tasks::flush(Job &job)
{
	int r = PQflush(job.conn->pg.get());
	if (r < 0)
		connection_failed(job, PQerrorMessage(job.conn->pg.get()));
	else
		job.want_write = (r == 1);
}

void
Tasks::poll_job(Job &job)
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
Tasks::handle_result(Job &job, PGresult *res)
{
	PGconn *pg = job.conn->pg.get();
	switch (PQresultStatus(res)) {
	case PGRES_SINGLE_TUPLE:
		if (job.step == Step::Running && job.keep_result && job.next_statement == job.statements.size())
			output_rows(job, res);
		break;
	case PGRES_COMMAND_OK:
		if (job.step == Step::Running && !job.output.empty())
			output_command(job.output.back(), res);
		break;
	case PGRES_TUPLES_OK: {
		if (job.step == Step::Running && !job.output.empty()) {
			output_command(job.output.back(), res);
			if (job.keep_result && job.next_statement == job.statements.size())
				output_rows(job, res); // the columns of an empty result
			break;
		}
		if (connection_read_output_probe(*job.conn, res))
			break;
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
		if (job.step == Step::Running && !job.output.empty())
			job.output.back().failed = true;
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

// The task ends with outcome: on to the rollback and the recording.
void
Tasks::end_with(Job &job, Outcome outcome, const std::string &error)
{
	if (job.conn && job.conn->pg)
		PQsetNoticeProcessor(job.conn->pg.get(), discard_notice, nullptr);
	job.outcome = outcome;
	job.error = error;
	cleanup(job);
}

// The error_message of a task stopped at its maximum run time: the limit as
// an interval's text (hours:minutes:seconds), then the server's text.
static std::string
timed_out_message(const Job &job, const std::string &server_text)
{
	long ms = job.max_runtime_ms;
	char buf[64];
	snprintf(buf, sizeof(buf), "%02ld:%02ld:%02ld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60);
	std::string limit = buf;
	if (ms % 1000 != 0) {
		snprintf(buf, sizeof(buf), ".%03ld", ms % 1000);
		std::string frac = buf;
		while (frac.back() == '0')
			frac.pop_back();
		limit += frac;
	}
	std::string msg = "ERROR:  the task exceeded its maximum run time of " + limit;
	if (!server_text.empty())
		msg += "\n" + server_text;
	return msg;
}

void
Tasks::next_statement(Job &job)
{
	if (job.next_statement >= job.statements.size()) { // all done: a late cancel changes nothing
		end_with(job, Outcome::Succeeded, job.error);
		return;
	}
	// The board's flag, read as the statement is marked started: a cancel
	// requested until now stops the task before its next statement.
	size_t k = job.next_statement;
	int count = static_cast<int>(job.statements.size());
	if (slots_mark_statement(job.ref, static_cast<int>(k + 1), count))
		job.cancel_requested = true;
	TimestampTz now = GetCurrentTimestamp();
	if (k == 0) {
		if (job.max_runtime_ms <= 0)
			job.max_runtime_ms = guc_default_max_runtime_ms; // the task has none of its own
		if (job.max_runtime_ms > 0)
			job.run_deadline = TimestampTzPlusMilliseconds(now, job.max_runtime_ms);
	}
	if (job.run_deadline != 0 && now >= job.run_deadline)
		job.timed_out = true;
	if (job.timed_out) {
		end_with(job, Outcome::Failed, timed_out_message(job, ""));
		return;
	}
	if (job.cancel_requested) {
		end_with(job, Outcome::Canceled, kCanceledByUser);
		return;
	}
	job.next_statement++;
	job.output.emplace_back();
	job.output.back().started_at = GetCurrentTimestamp();
	PQsetNoticeProcessor(job.conn->pg.get(), output_notice, &job);
	send(job, job.statements[k].c_str());
}

void
Tasks::query_done(Job &job)
{
	switch (job.step) {
	case Step::Starting:
		if (!job.step_error.empty()) {
			// The extension was dropped (or recreated): nothing is left to record.
			if (job.step_sqlstate == "42883" || job.step_sqlstate == "3F000" || job.step_sqlstate == "55000") {
				pg_log(LOG, "lantern_fdw: task " + std::to_string(job.jobid) + " of database \"" + job.dbname +
								"\" no longer exists: " + job.step_error);
				job.reusable = false;
				job.conn.reset();
				set_step(job, Step::Done, SlotState::Free);
				return;
			}
			end_with(job, Outcome::Failed, job.step_error);
			return;
		}
		started(job);
		return;
	case Step::SettingRole:
		if (!job.step_error.empty()) {
			end_with(job, Outcome::Failed, job.step_error);
			return;
		}
		set_step(job, Step::Running);
		next_statement(job);
		return;
	case Step::Running:
		if (!job.output.empty())
			job.output.back().duration_us = GetCurrentTimestamp() - job.output.back().started_at;
		if (!job.step_error.empty()) {
			bool canceled = job.cancel_sent && job.step_sqlstate == "57014";
			if (canceled && job.timed_out)
				end_with(job, Outcome::Failed, timed_out_message(job, job.step_error));
			else
				end_with(job, canceled ? Outcome::Canceled : Outcome::Failed, canceled ? kCanceledByUser : job.step_error);
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
		// goes back to the queue.
		unchain(job);
		// The database has no record_output (any more: the extension was
		// created again at 0.1.0 since it was asked): the outcome alone, at
		// once; not an attempt.
		if (job.step_sqlstate == "42883" && job.conn->output == OutputRecording::Yes &&
			job.step_error.find("record_output") != std::string::npos) {
			job.conn->output = OutputRecording::No;
			job.record_sql.clear();
			send_record_end(job);
			return;
		}
		// A cancel signal that arrived late can hit the recording call: retry,
		// with the output. Any other error: retry with the outcome alone.
		if (job.step_sqlstate != "57014")
			std::string().swap(job.record_sql);
		if (++job.record_attempts < kMaxRecordAttempts) {
			send_record_end(job);
			return;
		}
		pg_log(LOG, "lantern_fdw: could not record the end of task " + std::to_string(job.jobid) + ": " +
						job.step_error);
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
Tasks::started(Job &job)
{
	if (!job.set_role.empty() && !job.cancel_requested) {
		char *ident = PQescapeIdentifier(job.conn->pg.get(), job.set_role.c_str(), job.set_role.size());
		std::string sql = std::string("SET ROLE ") + (ident ? ident : "\"\"");
		PQfreemem(ident);
		set_step(job, Step::SettingRole);
		send(job, sql.c_str());
		return;
	}
	set_step(job, Step::Running);
	next_statement(job);
}

// After the task's statements: roll back what it left open, reset the
// session, then record the outcome.
void
Tasks::cleanup(Job &job)
{
	PGTransactionStatusType tx = PQtransactionStatus(job.conn->pg.get());
	if (tx == PQTRANS_INTRANS || tx == PQTRANS_INERROR) {
		if (job.outcome == Outcome::Succeeded) {
			job.outcome = Outcome::Failed;
			job.error = "ERROR:  the task ended inside a transaction block; its transaction was rolled back";
		}
		set_step(job, Step::RollingBack);
		send(job, "ROLLBACK");
		return;
	}
	record_end(job);
}

// The task's outcome is known: record it.
void
Tasks::record_end(Job &job)
{
	set_step(job, Step::Recording);
	send_record_end(job);
}

// The server refuses connections for now (starting up, shutting down, in
// recovery: SQLSTATE 57P03): not the task's fault, and not final. libpq gives
// no SQLSTATE for a failed connection attempt, so these are the server's
// texts for 57P03. The refusing backend writes them in the server's
// lc_messages, which is this process's too: look for the translation as well.
static bool
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

void
Tasks::connection_failed(Job &job, const std::string &message)
{
	std::string text = trim_trailing(message);
	int pid = job.step != Step::Connecting && job.conn ? job.conn->backend_pid : 0;
	bool crashed = backend_died_uncleanly(pid);
	if (job.step == Step::Connecting && !job.cancel_requested && cannot_connect_now(text)) {
		// Back in the queue, in its place; dispatching pauses for a while.
		pg_log(LOG, "lantern_fdw: task " + std::to_string(job.jobid) + " stays queued: " + text);
		job.conn.reset();
		set_step(job, Step::Done, SlotState::Queued);
		dispatch_paused_until_ = std::max(dispatch_paused_until_,
										  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kCannotConnectPauseMs));
		return;
	}
	if (job.step == Step::Connecting) {
		text += "\n";
		text += kConnectHint;
	}
	if (job.outcome == Outcome::None || !step_info(job.step).outcome_final) {
		if (job.cancel_requested && job.cancel_sent) {
			job.outcome = Outcome::Canceled;
			job.error = kCanceledByUser;
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
Tasks::crash_coming(int pid)
{
	pg_log(LOG, "lantern_fdw: task connection backend " + std::to_string(pid) +
					" died without cleaning up; waiting for the server to restart");
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kCrashHoldMs);
	dispatch_paused_until_ = std::max(dispatch_paused_until_, until);
	maintenance_.hold_until(until);
}

// No connection to record through: a maintenance worker writes the outcome.
void
Tasks::record_pending(Job &job)
{
	set_step(job, Step::Done, SlotState::RecordPending);
}

void
Tasks::finish(Job &job)
{
	set_step(job, Step::Done, SlotState::Free);
	if (job.conn && job.reusable && guc_idle_connection_timeout_ms > 0 &&
		PQtransactionStatus(job.conn->pg.get()) == PQTRANS_IDLE)
		pool_.give_back(std::move(job.conn));
	job.conn.reset();
}

// ---- the loop's view ------------------------------------------------------

void
Tasks::poll()
{
	for (size_t i = 0; i < jobs_.size(); i++)
		poll_job(*jobs_[i]);
	jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(),
							   [](const std::unique_ptr<Job> &j) { return j->step == Step::Done; }),
				jobs_.end());
}

void
Tasks::apply_cancels(TimestampTz now)
{
	if (jobs_.empty())
		return;
	std::vector<SlotRef> refs;
	for (auto &job : jobs_)
		refs.push_back(job->ref);
	std::vector<bool> requested = slots_cancel_requested(refs);
	for (size_t i = 0; i < jobs_.size(); i++) {
		Job &job = *jobs_[i];
		if (requested[i])
			job.cancel_requested = true;
		if (job.run_deadline != 0 && now >= job.run_deadline && job.step == Step::Running && !job.cancel_requested)
			job.timed_out = job.cancel_requested = true; // over its maximum run time: canceled, and failed
		if (!job.cancel_requested || job.step != Step::Running || !job.in_flight || !job.conn)
			continue;
		// A backend drops a cancel signal that arrives while it still reads
		// the statement: signal again until the statement ends.
		if (job.cancel_sent && now < TimestampTzPlusMilliseconds(job.cancel_signaled_at, kCancelRetryMs))
			continue;
		job.cancel_sent = true;
		job.cancel_signaled_at = now;
		// The backend runs the task's statement: cancel it, like pg_cancel_backend.
		kill(job.conn->backend_pid, SIGINT);
	}
}

bool
Tasks::connecting() const
{
	return std::any_of(jobs_.begin(), jobs_.end(),
					   [](const std::unique_ptr<Job> &j) { return j->step == Step::Connecting; });
}

void
Tasks::add_sockets(std::vector<WaitSocket> &out) const
{
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
}

void
Tasks::mark_ready(pgsocket fd)
{
	for (auto &job : jobs_)
		if (job->conn && job->conn->pg && PQsocket(job->conn->pg.get()) == fd)
			job->conn->ready = true;
}

TimestampTz
Tasks::next_deadline(TimestampTz now) const
{
	TimestampTz next = 0;
	auto consider = [&](TimestampTz t) { earliest(next, t); };
	for (auto &job : jobs_) {
		if (job->step == Step::Connecting)
			consider(job->connect_deadline);
		if (job->cancel_sent && job->in_flight && job->step == Step::Running)
			consider(TimestampTzPlusMilliseconds(job->cancel_signaled_at, kCancelRetryMs));
		if (job->run_deadline != 0 && !job->cancel_requested && job->step == Step::Running)
			consider(job->run_deadline);
	}
	if (dispatch_paused_until_ > now)
		consider(dispatch_paused_until_);
	return next;
}

} // namespace lantern
