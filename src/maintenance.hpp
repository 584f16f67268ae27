// The maintenance worker (maintenance.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

// Starts the maintenance worker of a database (for the executor, which is
// notified when it stops); returns false if no worker slot is free.
bool start_maintenance_worker(Oid dboid, bool recover, BackgroundWorkerHandle **handle);

} // namespace lantern

extern "C" {
PGDLLEXPORT void lantern_maintenance_main(Datum arg);
}
