// Opening the executor's connections, and keeping idle ones for reuse.
#include "pg.hpp"
#include "settings.hpp"
#include "executor/connection.hpp"
#include "executor/guard.hpp"

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
	conn->user = user;
	conn->pg.reset(PQconnectStartParams(keys.data(), values.data(), 0));
	if (extra != nullptr)
		PQconninfoFree(extra);
	return conn;
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

std::unique_ptr<Connection>
ConnectionPool::take(Oid dboid, const std::string &user)
{
	auto it = std::find_if(idle_.begin(), idle_.end(), [&](const std::unique_ptr<Connection> &c) {
		return c->dboid == dboid && c->user == user;
	});
	if (it == idle_.end())
		return nullptr;
	std::unique_ptr<Connection> conn = std::move(*it);
	idle_.erase(it);
	return conn;
}

void
ConnectionPool::give_back(std::unique_ptr<Connection> conn)
{
	conn->idle_since = GetCurrentTimestamp();
	idle_.push_back(std::move(conn));
}

std::vector<int>
ConnectionPool::reap(TimestampTz now, bool close_all)
{
	std::vector<int> crashed;
	for (auto it = idle_.begin(); it != idle_.end();) {
		Connection &c = **it;
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
		bool expired = now >= TimestampTzPlusMilliseconds(c.idle_since, guc_idle_connection_timeout_ms);
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
	for (auto &c : idle_)
		earliest(next, TimestampTzPlusMilliseconds(c->idle_since, guc_idle_connection_timeout_ms));
	return next;
}

void
ConnectionPool::add_sockets(std::vector<WaitSocket> &out) const
{
	for (auto &c : idle_) {
		pgsocket fd = PQsocket(c->pg.get());
		if (fd != PGINVALID_SOCKET)
			out.push_back(WaitSocket{fd, c->id, WL_SOCKET_READABLE});
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
