// Canceling tasks (cancel.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

// cancel_task body; returns true when the task was active.
bool cancel_task_internal(int64 jobid, bool quiet);
// Cancels every active task of this database that the caller may cancel.
void cancel_all_tasks();

} // namespace lantern
