// Opening the executor's connections, and keeping idle ones for reuse.
#include "pg.hpp"
#include "settings.hpp"
#include "executor/connection.hpp"
#include "catalog.hpp"
#include "executor/guard.hpp"
#include "executor/slots.hpp"

#include <algorithm>

namespace lantern {

uint64 Connection::next_id = 1;

std::string
trim_trailing(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

static std::string
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

std::unique_ptr<Connection>
connection_start(Oid dboid, const std::string &dbname, const std::string &user)
{
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
	values.push_back(dbname.c_str());
	keys.push_back("user");
	values.push_back(user.c_str());
	keys.push_back("application_name");
	values.push_back("lantern_fdw");
	keys.push_back(nullptr);
	values.push_back(nullptr);

	auto conn = std::make_unique<Connection>();
	conn->dboid = dboid;
	conn->dbname = dbname;
	conn->user = user;
	conn->pg.reset(PQconnectStartParams(keys.data(), values.data(), 0));
	if (extra != nullptr)
		PQconninfoFree(extra);
	return conn;
}

static void
ignore_notice(void *, const char *)
{
}

const char *const kOutputProbe =
	"SELECT pg_catalog.to_regprocedure('_lantern_fdw.record_output(bigint, integer, text, text, "
	"bigint, bigint, bigint, text, jsonb, boolean)') IS NOT NULL AS lantern_fdw_output";

bool
connection_read_output_probe(Connection &conn, const PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 1 ||
		strcmp(PQfname(res, 0), "lantern_fdw_output") != 0)
		return false;
	bool yes = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	conn.output = yes ? OutputRecording::Yes : OutputRecording::No;
	return true;
}

// What _lantern_fdw.record_start opens, loaded without taking a lock that
// matters or writing anything: the store and its index (relcache, and their
// files), and the function called as the executor calls it (a strict
// function called with NULL does not run), and kOutputProbe, first (it
// runs even where the rest fails). Readable by every login role.
static const std::string kWarmUp =
	std::string(kOutputProbe) + "; " +
	"SELECT pg_catalog.pg_relation_size(pg_catalog.to_regclass('_lantern_fdw.task_log')), "
	"pg_catalog.pg_relation_size(pg_catalog.to_regclass('_lantern_fdw.task_log_pkey')); "
	"SELECT * FROM _lantern_fdw.record_start(NULL)";

bool
connection_send_warm_up(Connection &conn)
{
	PGconn *pg = conn.pg.get();
	PQsetnonblocking(pg, 1);
	PQsetNoticeProcessor(pg, ignore_notice, nullptr);
	if (!PQsendQuery(pg, kWarmUp.c_str()))
		return false;
	conn.warming = true;
	return PQflush(pg) >= 0; // the query is short: it leaves in one write
}

bool
connection_warm_up_done(Connection &conn)
{
	PGconn *pg = conn.pg.get();
	if (!PQconsumeInput(pg))
		return true;
	while (!PQisBusy(pg)) {
		PGresult *res = PQgetResult(pg);
		if (res == nullptr) {
			conn.warming = false;
			return true;
		}
		connection_read_output_probe(conn, res);
		PQclear(res); // an error (an extension not updated) changes nothing
	}
	return false;
}

bool
backend_in_database(int pid, Oid dboid)
{
	bool found = false;
	pg_guarded([&] {
		PGPROC *proc = pid > 0 ? BackendPidGetProc(pid) : nullptr;
		found = proc != nullptr && proc->databaseId == dboid;
	});
	return found;
}

bool
backend_died_uncleanly(int pid)
{
	bool alive = false;
	if (pid != 0)
		pg_guarded([&] { alive = BackendPidGetProc(pid) != nullptr; });
	return alive;
}

bool
ConnectionPool::has_spare(Oid dboid, const std::string &user) const
{
	return std::any_of(idle_.begin(), idle_.end(),
					   [&](const std::unique_ptr<Connection> &c) { return c->dboid == dboid && c->user == user; });
}

bool
ConnectionPool::arriving_often(Oid dboid, const std::string &user, TimestampTz now)
{
	// Pairs that have not taken a connection for a while are forgotten.
	arrivals_.erase(std::remove_if(arrivals_.begin(), arrivals_.end(),
								   [&](const Arrival &a) {
									   return now >= TimestampTzPlusMilliseconds(a.at, guc_idle_connection_timeout_ms);
								   }),
					arrivals_.end());
	auto it = std::find_if(arrivals_.begin(), arrivals_.end(),
						   [&](const Arrival &a) { return a.dboid == dboid && a.user == user; });
	if (it == arrivals_.end()) {
		arrivals_.push_back(Arrival{dboid, user, now});
		return false;
	}
	it->at = now;
	return true; // it took one within idle_connection_timeout
}

std::unique_ptr<Connection>
ConnectionPool::take(Oid dboid, const std::string &user)
{
	auto pick = idle_.end();
	for (auto it = idle_.begin(); it != idle_.end(); ++it) {
		Connection &c = **it;
		if (c.dboid != dboid || c.user != user)
			continue;
		// A ready one first; of those being opened, the furthest along.
		int rank = c.opening ? 2 : c.warming ? 1 : 0;
		if (pick == idle_.end() || rank < ((*pick)->opening ? 2 : (*pick)->warming ? 1 : 0))
			pick = it;
	}
	TimestampTz now = GetCurrentTimestamp();
	bool often = arriving_often(dboid, user, now);
	if (pick == idle_.end())
		return nullptr;
	std::unique_ptr<Connection> conn = std::move(*pick);
	idle_.erase(pick);
	// Tasks of this pair keep arriving: have the next one find a connection
	// ready too.
	if (often && !has_spare(dboid, user) && guc_idle_connection_timeout_ms > 0 && !conn->dbname.empty())
		open(dboid, conn->dbname, user, SlotRef{-1, 0});
	return conn;
}

void
ConnectionPool::give_back(std::unique_ptr<Connection> conn)
{
	conn->idle_since = GetCurrentTimestamp();
	conn->wish = SlotRef{-1, 0};
	if (!make_room())
		return; // closed: no room
	idle_.push_back(std::move(conn));
}

bool
ConnectionPool::make_room()
{
	if (static_cast<int>(idle_.size()) < guc_max_idle_connections)
		return true;
	// The connection idle longest that no waiting task asked for.
	auto oldest = idle_.end();
	for (auto it = idle_.begin(); it != idle_.end(); ++it)
		if ((*it)->wish.index < 0 && !(*it)->opening && !(*it)->warming &&
			(oldest == idle_.end() || (*it)->idle_since < (*oldest)->idle_since))
			oldest = it;
	if (oldest == idle_.end() || static_cast<int>(idle_.size()) > guc_max_idle_connections)
		return false;
	idle_.erase(oldest);
	return true;
}

void
ConnectionPool::open(Oid dboid, const std::string &dbname, const std::string &user, SlotRef wish)
{
	if (!make_room())
		return;
	std::unique_ptr<Connection> conn = connection_start(dboid, dbname, user);
	if (!conn->pg || PQstatus(conn->pg.get()) == CONNECTION_BAD)
		return; // the task's own attempt will report why
	conn->opening = true;
	conn->poll = PGRES_POLLING_WRITING;
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kConnectTimeoutMs);
	conn->idle_since = GetCurrentTimestamp();
	conn->wish = wish;
	idle_.push_back(std::move(conn));
}

void
ConnectionPool::open_wished()
{
	std::vector<WishedTask> wished = slots_new_wishes(&wishes_seen_);
	for (const WishedTask &w : wished) {
		std::string user = NameStr(w.connect_as);
		if (has_spare(w.dboid, user))
			continue;
		char dbname[NAMEDATALEN];
		bool found = false;
		Oid dboid = w.dboid;
		pg_guarded([&] { found = catalog_database_name(dboid, dbname); });
		if (found)
			open(w.dboid, dbname, user, w.ref);
	}
}

void
ConnectionPool::poll(TimestampTz now)
{
	for (auto it = idle_.begin(); it != idle_.end();) {
		Connection &c = **it;
		bool failed = false;
		if ((c.opening || c.warming) && now >= c.deadline) {
			failed = true;
		} else if (c.opening && c.ready) {
			c.ready = false;
			c.poll = PQconnectPoll(c.pg.get());
			if (c.poll == PGRES_POLLING_FAILED) {
				failed = true;
			} else if (c.poll == PGRES_POLLING_OK) {
				c.opening = false;
				c.backend_pid = PQbackendPID(c.pg.get());
				// Where it leads is checked as for a task's own connection;
				// one that leads elsewhere is dropped, and the task's own
				// attempt reports it.
				failed = !backend_in_database(c.backend_pid, c.dboid) || !connection_send_warm_up(c);
			}
		} else if (c.warming && c.ready) {
			c.ready = false;
			if (connection_warm_up_done(c))
				failed = c.warming || PQstatus(c.pg.get()) != CONNECTION_OK;
			if (!failed && !c.warming)
				c.idle_since = now;
		}
		if (failed)
			it = idle_.erase(it);
		else
			++it;
	}
}

bool
ConnectionPool::connecting() const
{
	return std::any_of(idle_.begin(), idle_.end(), [](const std::unique_ptr<Connection> &c) { return c->opening; });
}

std::vector<int>
ConnectionPool::reap(TimestampTz now, bool close_all)
{
	std::vector<int> crashed;
	// A connection opened for a task that still waits to start stays.
	std::vector<SlotRef> wishes;
	for (auto &c : idle_)
		if (c->wish.index >= 0)
			wishes.push_back(c->wish);
	std::vector<bool> waiting = wishes.empty() ? std::vector<bool>() : slots_waiting(wishes);
	size_t w = 0;
	for (auto it = idle_.begin(); it != idle_.end();) {
		Connection &c = **it;
		if (c.wish.index >= 0 && !waiting[w++])
			c.wish = SlotRef{-1, 0};
		if (c.opening || c.warming) { // poll() watches these
			if (close_all)
				it = idle_.erase(it);
			else
				++it;
			continue;
		}
		bool dead = false;
		if (c.ready) {
			// Data on an idle connection: the server closed it, or a notice.
			c.ready = false;
			dead = !PQconsumeInput(c.pg.get()) || PQstatus(c.pg.get()) != CONNECTION_OK;
			if (dead && backend_died_uncleanly(c.backend_pid))
				crashed.push_back(c.backend_pid);
			while (PGnotify *n = PQnotifies(c.pg.get()))
				PQfreemem(n);
		}
		bool expired = c.wish.index < 0 && now >= TimestampTzPlusMilliseconds(c.idle_since, guc_idle_connection_timeout_ms);
		if (dead || expired || close_all)
			it = idle_.erase(it);
		else
			++it;
	}
	return crashed;
}

TimestampTz
ConnectionPool::next_expiry() const
{
	TimestampTz next = 0;
	for (auto &c : idle_) {
		if (c->opening || c->warming)
			earliest(next, c->deadline);
		else if (c->wish.index < 0) // a wished one waits for its task: a commit or abort wakes the executor
			earliest(next, TimestampTzPlusMilliseconds(c->idle_since, guc_idle_connection_timeout_ms));
	}
	return next;
}

void
ConnectionPool::add_sockets(std::vector<WaitSocket> &out) const
{
	for (auto &c : idle_) {
		pgsocket fd = PQsocket(c->pg.get());
		if (fd == PGINVALID_SOCKET)
			continue;
		uint32 events = WL_SOCKET_READABLE;
		if (c->opening && c->poll != PGRES_POLLING_READING)
			events = WL_SOCKET_WRITEABLE;
		out.push_back(WaitSocket{fd, c->id, events});
	}
}

void
ConnectionPool::mark_ready(pgsocket fd)
{
	for (auto &c : idle_)
		if (PQsocket(c->pg.get()) == fd)
			c->ready = true;
}

} // namespace lantern
