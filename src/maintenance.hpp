// The maintenance worker (maintenance.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

// What a maintenance worker is started for. Every run writes the pending
// outcomes of its database and applies the retention; Recover also recovers
// the tasks of an earlier server life, Load brings the tasks waiting in the
// store onto the board (both then stay until nothing is left to load).
enum class MaintenanceKind : char { Outcomes = 0, Recover = 1, Load = 2 };

// A scheduled task's loader starts this long before its run_at, and waits
// for it: the worker's start and connection then take nothing from the
// task's start.
constexpr long kLoadAheadMs = 500;

// Starts the maintenance worker of a database (for the executor, which is
// notified when it stops); returns false if no worker slot is free.
bool start_maintenance_worker(Oid dboid, MaintenanceKind kind, BackgroundWorkerHandle **handle);

} // namespace lantern

extern "C" {
PGDLLEXPORT void lantern_maintenance_main(Datum arg);
}
