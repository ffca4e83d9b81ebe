//! The servers' thread and its CPU time, shared by the benchmarks that
//! run servers and clients on a thread each, as a server process and a
//! client process on a core each would.

/// The name (prefix) of the threads the servers run on.
pub(crate) const SERVER_THREADS: &str = "bench-server";

/// A current-thread runtime on a thread of its own, named
/// [`SERVER_THREADS`], for the servers; its handle.
pub(crate) fn server_runtime() -> tokio::runtime::Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(SERVER_THREADS.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            tx.send(rt.handle().clone()).expect("handle");
            rt.block_on(std::future::pending::<()>());
        })
        .expect("server thread");
    rx.recv().expect("server runtime")
}

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
