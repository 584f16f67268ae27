// The executor's libpq connections (connection.cpp): opening one to this
// server, and the pool of idle ones kept for reuse. Include after pg.hpp.
#pragma once

#include "libpq-fe.h"

#include "executor/wait.hpp"

#include <memory>
#include <string>
#include <vector>

namespace lantern {

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

// Whether a connection's database can take task output (SQL 0.2.0 has
// _lantern_fdw.record_output; 0.1.0, not yet updated, has not).
enum class OutputRecording { Unknown, Yes, No };

struct Connection {
	uint64 id = next_id++; // a socket number can be reused; this cannot
	OutputRecording output = OutputRecording::Unknown; // asked with record_start (task.cpp)
	ConnPtr pg;
	Oid dboid = InvalidOid;
	std::string user;
	int backend_pid = 0;
	TimestampTz idle_since = 0;
	bool ready = false; // its socket was reported ready by the last wait

	static uint64 next_id;
};

// Starts a non-blocking connection to database dbname of this server as
// user (lantern_fdw.host and lantern_fdw.connection_options lead there).
// Its pg is NULL when libpq is out of memory.
std::unique_ptr<Connection> connection_start(Oid dboid, const std::string &dbname, const std::string &user);
// The message without its trailing newlines and blanks.
std::string trim_trailing(std::string s);

// Whether backend pid is a backend of this server in database dboid.
bool backend_in_database(int pid, Oid dboid);
// A backend that exits cleanly leaves the proc array before its socket
// closes; one still there after its connection broke died without cleaning
// up (SIGKILL, a crash), and the postmaster is about to stop every process
// and reinitialize shared memory.
bool backend_died_uncleanly(int pid);

// Idle connections, by database and login role.
class ConnectionPool {
  public:
	// An idle connection to dboid as user, or NULL.
	std::unique_ptr<Connection> take(Oid dboid, const std::string &user);
	void give_back(std::unique_ptr<Connection> conn);
	void clear() { idle_.clear(); }
	// Closes the connections that expired or that the server closed, or all
	// of them if close_all. Returns the pids of backends that died uncleanly.
	std::vector<int> reap(TimestampTz now, bool close_all);
	// When the next idle connection expires; 0 if there is none.
	TimestampTz next_expiry() const;
	void add_sockets(std::vector<WaitSocket> &out) const;
	void mark_ready(pgsocket fd);

  private:
	std::vector<std::unique_ptr<Connection>> idle_;
};

} // namespace lantern
