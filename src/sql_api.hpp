// The SQL API (sql_api.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

// Argument n of a SQL function as a C string (palloc'd), NULL if null.
const char *text_arg_or_null(FunctionCallInfo fcinfo, int n);

} // namespace lantern
