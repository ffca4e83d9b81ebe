//! CPU time of the benchmark's server threads, shared by the benchmarks
//! that run their servers on threads named [`SERVER_THREADS`].

/// The name (prefix) of the threads the servers run on.
pub(crate) const SERVER_THREADS: &str = "bench-server";

/// CPU time the server threads spent so far, from the scheduler's
/// per-thread run time (nanoseconds) in `/proc`.
pub(crate) fn server_cpu_seconds() -> f64 {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let Ok(task) = task else { continue };
        let path = task.path();
        let is_server = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(SERVER_THREADS));
        if !is_server {
            continue;
        }
        let ran = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        total += ran.unwrap_or(0);
    }
    total as f64 / 1e9
}
