//! Network namespaces for tests that use mDNS, so that no multicast leaves
//! the test: a private namespace with only loopback, or two namespaces
//! joined by a veth pair.

use std::future::Future;
use std::process::Command;

/// Runs `test` on a new runtime in a thread that has moved into a network
/// namespace of its own, with `lo` up. Threads and processes it starts
/// inherit the namespace.
///
/// # Panics
/// If the namespace cannot be made (this needs root), or `test` panics.
pub fn isolated<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare(2) changes only this thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed (tests with mDNS need root): {}",
            std::io::Error::last_os_error()
        );
        run("ip", &["link", "set", "lo", "up"]);
        block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `future` on a new two-thread runtime.
fn block_on(future: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future);
}

/// Runs a command, panicking if it fails.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two named namespaces, `<name>a` and `<name>b`, joined by a veth pair
/// with addresses `10.<net>.0.1/24` and `10.<net>.0.2/24`. Removed on drop.
#[derive(Debug)]
pub struct TwoHosts {
    /// The two namespaces' names.
    pub names: [String; 2],
    /// The two veth interfaces' names, one per namespace.
    pub interfaces: [String; 2],
    /// The two addresses.
    pub addresses: [String; 2],
}

impl TwoHosts {
    /// Makes the namespaces; `net` picks the /24, so that tests running at
    /// once do not collide.
    pub fn new(net: u8) -> Self {
        let id = std::process::id() % 10_000;
        let names = [format!("mt{id}n{net}a"), format!("mt{id}n{net}b")];
        let interfaces = [format!("mv{id}n{net}a"), format!("mv{id}n{net}b")];
        let addresses = [format!("10.{net}.0.1"), format!("10.{net}.0.2")];
        for ns in &names {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        run(
            "ip",
            &[
                "link",
                "add",
                &interfaces[0],
                "type",
                "veth",
                "peer",
                "name",
                &interfaces[1],
            ],
        );
        for i in 0..2 {
            run("ip", &["link", "set", &interfaces[i], "netns", &names[i]]);
            let cidr = format!("{}/24", addresses[i]);
            run(
                "ip",
                &["-n", &names[i], "addr", "add", &cidr, "dev", &interfaces[i]],
            );
            run(
                "ip",
                &["-n", &names[i], "link", "set", &interfaces[i], "up"],
            );
        }
        Self {
            names,
            interfaces,
            addresses,
        }
    }

    /// A command that runs `program` inside namespace `host` (0 or 1).
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[host], program]);
        cmd
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Hosts on one network: namespaces `<name>h0`, `<name>h1`, … each with an
/// `eth0` whose peer is a port of a bridge in a namespace of its own
/// (`<name>sw`), at `10.<net>.0.1`, `10.<net>.0.2`, …/24. Multicast is off on
/// every link, so nothing finds anything by mDNS: only the registry under
/// test can. Removed on drop.
#[derive(Debug)]
pub struct Hosts {
    /// The hosts' namespaces.
    pub names: Vec<String>,
    /// Their addresses, in the same order.
    pub addresses: Vec<String>,
    switch: String,
}

impl Hosts {
    /// Makes `count` hosts on the network `10.<net>.0.0/24`; `net` keeps
    /// tests that run at once apart.
    pub fn new(net: u8, count: usize) -> Self {
        let id = std::process::id() % 10_000;
        let switch = format!("mc{id}n{net}sw");
        run("ip", &["netns", "add", &switch]);
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        );
        run(
            "ip",
            &[
                "-n",
                &switch,
                "link",
                "set",
                "br0",
                "multicast",
                "off",
                "up",
            ],
        );
        let mut hosts = Self {
            names: Vec::new(),
            addresses: Vec::new(),
            switch,
        };
        for i in 0..count {
            let name = format!("mc{id}n{net}h{i}");
            let address = format!("10.{net}.0.{}", i + 1);
            run("ip", &["netns", "add", &name]);
            hosts.names.push(name.clone());
            hosts.addresses.push(address.clone());
            let port = format!("p{i}");
            // Made inside the host, its peer inside the switch: no link
            // ever exists in the namespace the tests run in.
            run(
                "ip",
                &[
                    "-n",
                    &name,
                    "link",
                    "add",
                    "eth0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    &hosts.switch,
                ],
            );
            run(
                "ip",
                &["-n", &hosts.switch, "link", "set", &port, "master", "br0"],
            );
            run(
                "ip",
                &[
                    "-n",
                    &hosts.switch,
                    "link",
                    "set",
                    &port,
                    "multicast",
                    "off",
                    "up",
                ],
            );
            run("ip", &["-n", &name, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n",
                    &name,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    "eth0",
                ],
            );
            run(
                "ip",
                &["-n", &name, "link", "set", "eth0", "multicast", "off", "up"],
            );
        }
        hosts
    }

    /// A command that runs `program` on host `host`.
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[host], program]);
        cmd
    }

    /// Runs `test` on a new runtime in a thread that has joined host
    /// `host`'s network namespace; processes it starts itself (not through
    /// [`command`](Self::command)) run there too.
    ///
    /// # Panics
    /// If the namespace cannot be joined, or `test` panics.
    pub fn enter<F, Fut>(&self, host: usize, test: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{}", self.names[host]);
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) changes only this thread's namespace; the
            // descriptor is open for the call.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            block_on(test());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.names.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
