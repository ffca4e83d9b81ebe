//! The `greeter` binary, run as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A greeter process and the address it serves on.
#[derive(Debug)]
pub struct Greeter {
    child: Child,
    /// Where it listens.
    pub addr: String,
    lines: mpsc::Receiver<String>,
}

impl Greeter {
    /// Starts the greeter binary at `path` with `env`, and waits for it to
    /// print its address.
    pub fn spawn(path: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_command(Command::new(path), env)
    }

    /// As [`spawn`](Self::spawn), for a command that runs the binary (for
    /// example inside `ip netns exec`).
    pub fn spawn_command(mut cmd: Command, env: &[(&str, &str)]) -> Self {
        cmd.stdout(Stdio::piped())
            .env_remove("MICRO_SERVER_ADDRESS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("greeter starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("greeter prints its address");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self { child, addr, lines }
    }

    /// The process's standard error, if the command piped it; once.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL, with no chance to deregister.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(
                Instant::now() < deadline,
                "greeter did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines it printed since its address.
    pub fn output(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
