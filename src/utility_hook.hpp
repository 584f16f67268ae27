// The utility hook (utility_hook.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

// From _PG_init: chains lantern_fdw's ProcessUtility_hook.
void utility_hook_install();

} // namespace lantern
