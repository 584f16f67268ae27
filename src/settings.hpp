// The lantern_fdw.* settings (settings.cpp). Include after pg.hpp.
#pragma once

namespace lantern {

extern int guc_max_tasks;
extern int guc_max_parallel_tasks;
extern int guc_max_parallel_tasks_per_role;
extern char *guc_host;
extern char *guc_connection_options;
extern int guc_idle_connection_timeout_ms;
extern int guc_max_idle_connections;
extern int guc_task_retention_s;
extern int guc_default_max_runtime_ms;
extern int guc_max_output_size; // bytes

// Defines the settings; from _PG_init, while preloading.
void define_settings();

} // namespace lantern
