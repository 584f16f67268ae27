// Catalog lookups for the executor, each in a transaction of its own.
#include "pg.hpp"
#include "catalog.hpp"

namespace lantern {

bool
catalog_database_name(Oid dboid, char *out)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	char *name = get_database_name(dboid);
	if (name != nullptr)
		strlcpy(out, name, NAMEDATALEN);
	CommitTransactionCommand();
	return name != nullptr;
}

int
catalog_list_databases(Oid **oids)
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
} // namespace lantern
