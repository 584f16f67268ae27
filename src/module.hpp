// Module entry (module.cpp): _PG_init, the shared memory hooks, and the
// check that the library was preloaded. Include after pg.hpp.
#pragma once

namespace lantern {

// Raises the "not preloaded" error unless the board exists.
void require_preloaded();

} // namespace lantern
