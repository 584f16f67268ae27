// Catalog lookups for the executor (catalog.cpp), which is connected to no
// database and runs outside transactions: each starts and commits its own
// transaction. Plain PostgreSQL code; the executor calls them through
// pg_guarded. Include after pg.hpp.
#pragma once

namespace lantern {

// The name of a database (into out, NAMEDATALEN bytes); false if it is gone.
bool catalog_database_name(Oid dboid, char *out);
// Fills *oids (palloc'd in TopMemoryContext) with the databases that may
// hold tasks: all but the templates that do not accept connections.
int catalog_list_databases(Oid **oids);

} // namespace lantern
