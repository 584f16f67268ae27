// The boundary where the executor's C++ code calls PostgreSQL functions that
// may raise an ERROR: every such call runs inside pg_guarded(). The ERROR is
// caught in this frame (which owns nothing with a destructor), the LWLocks
// are released, any open transaction is aborted, and it continues as a C++
// exception once the longjmp is over. Include after pg.hpp.
#pragma once

#include <stdexcept>
#include <string>

namespace lantern {

class PgError : public std::runtime_error {
  public:
	using std::runtime_error::runtime_error;
};

// fn must not own objects with destructors across the PostgreSQL calls it
// makes, and must not throw.
template <typename Fn>
void
pg_guarded(Fn &&fn)
{
	char *volatile message = nullptr;
	MemoryContext context = CurrentMemoryContext;
	PG_TRY();
	{
		fn();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		LWLockReleaseAll();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(context);
		message = MemoryContextStrdup(TopMemoryContext, edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (message != nullptr) {
		std::string text(message);
		pfree(message);
		throw PgError(text);
	}
}

// elog(elevel) of a message, guarded.
inline void
pg_log(int elevel, const std::string &message)
{
	const char *text = message.c_str();
	pg_guarded([&] { elog(elevel, "%s", text); });
}

} // namespace lantern
