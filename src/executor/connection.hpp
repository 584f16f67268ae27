// The executor's libpq connections (connection.cpp): opening one to this
// server, and the pool of idle ones kept for reuse. Include after pg.hpp.
#pragma once

#include "libpq-fe.h"

#include "board.hpp"
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
	OutputRecording output = OutputRecording::Unknown; // kOutputProbe's answer
	ConnPtr pg;
	Oid dboid = InvalidOid;
	std::string dbname;
	std::string user;
	int backend_pid = 0;
	TimestampTz idle_since = 0;
	bool ready = false; // its socket was reported ready by the last wait
	// Opened ahead of a task (ConnectionPool::open): still connecting (poll
	// says what the socket waits for), or running the warm-up query.
	bool opening = false;
	bool warming = false;
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	TimestampTz deadline = 0; // of the connection attempt
	// The task whose submission asked for it: it is kept while that task
	// waits to start, whatever idle_connection_timeout says. Index -1: none.
	SlotRef wish{-1, 0};

	static uint64 next_id;
};

// Opening a connection (PQconnectPoll) takes at most this long.
constexpr long kConnectTimeoutMs = 10000;

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

// Asked with the warm-up query and with record_start until the answer is
// yes: whether the connection's database can take task output. A database
// still on SQL 0.1.0 (the library updated, ALTER EXTENSION lantern_fdw
// UPDATE not run yet) has no record_output; its tasks' outcomes are recorded
// alone until it is updated.
extern const char *const kOutputProbe;
// If res is kOutputProbe's answer, notes it in conn and returns true.
bool connection_read_output_probe(Connection &conn, const PGresult *res);

// Sends the warm-up query on a connection that has just connected: it
// loads what the task's record_start needs into the new backend's caches.
bool connection_send_warm_up(Connection &conn);
// Reads the warm-up query's results; true when they are all in (or the
// connection failed: PQstatus tells).
bool connection_warm_up_done(Connection &conn);

// Idle connections, by database and login role, and connections opened
// ahead of tasks (spare ones): at most lantern_fdw.max_idle_connections.
class ConnectionPool {
  public:
	// A spare connection to dboid as user, or NULL: an idle one if there is
	// one, else one still opening or warming up (see Connection::opening).
	// Taking the last one of a pair whose tasks keep arriving opens a
	// replacement.
	std::unique_ptr<Connection> take(Oid dboid, const std::string &user);
	void give_back(std::unique_ptr<Connection> conn);
	void clear() { idle_.clear(); }
	// Opens connections for the tasks whose submitters asked for one since
	// the last call, where no spare connection of their pair exists.
	void open_wished();
	// Advances the connections being opened: those whose socket is ready,
	// and those past their deadline.
	void poll(TimestampTz now);
	// Whether a connection is being opened (its socket may change).
	bool connecting() const;
	// Closes the connections that expired or that the server closed, or all
	// of them if close_all. Returns the pids of backends that died uncleanly.
	std::vector<int> reap(TimestampTz now, bool close_all);
	// When the next idle connection expires; 0 if there is none.
	TimestampTz next_expiry() const;
	void add_sockets(std::vector<WaitSocket> &out) const;
	void mark_ready(pgsocket fd);

  private:
	// When a task of a (database, login role) pair last took a connection.
	struct Arrival {
		Oid dboid;
		std::string user;
		TimestampTz at;
	};
	std::vector<std::unique_ptr<Connection>> idle_;
	std::vector<Arrival> arrivals_;
	uint64 wishes_seen_ = 0;

	// Starts a spare connection if the bound leaves room (closing the
	// oldest idle connection that no waiting task asked for, if need be).
	void open(Oid dboid, const std::string &dbname, const std::string &user, SlotRef wish);
	bool has_spare(Oid dboid, const std::string &user) const;
	// Makes room for one more spare connection; false if there is none.
	bool make_room();
	// Whether a task of this pair started (looked for a spare connection)
	// within idle_connection_timeout before now; notes this arrival.
	bool arriving_often(Oid dboid, const std::string &user, TimestampTz now);
};

} // namespace lantern
