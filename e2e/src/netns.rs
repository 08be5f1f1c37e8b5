//! Network namespaces and veth pairs, removed on drop.

use std::ffi::CString;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace this process created and has not deleted yet, for [`remove_all`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Why this machine cannot run namespace tests, or `None` when it can.
pub fn available() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, AF_XDP)".into());
    }
    for tool in [["ip", "-V"], ["ethtool", "--version"]] {
        if Command::new(tool[0]).arg(tool[1]).output().is_err() {
            return Some(format!("needs `{}` on PATH", tool[0]));
        }
    }
    None
}

/// Runs a command; its output when it succeeded, else an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output)
}

/// A network namespace with loopback up. Dropping it kills what runs in it and deletes it
/// (and with it the veth ends inside).
#[derive(Debug)]
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    /// `sp<pid>-<n>-<role>`: unique per process and call, short enough for interface names.
    pub fn create(role: &str) -> Result<Namespace, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sp{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(name.clone());
        }
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip netns exec NS PROGRAM ARGS`, waited for.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command that will run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A veth pair `here` (in self) ↔ `there` (in `other`), both up, with fixed MACs derived
    /// from the names so that captures read the same every run.
    pub fn veth(&self, here: &str, other: &Namespace, there: &str) -> Result<(), String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp_a = format!("v{}-{n}a", std::process::id());
        let tmp_b = format!("v{}-{n}b", std::process::id());
        run(
            "ip",
            &[
                "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
            ],
        )?;
        run("ip", &["link", "set", &tmp_a, "netns", &self.name])?;
        run("ip", &["link", "set", &tmp_b, "netns", &other.name])?;
        self.ip(&["link", "set", &tmp_a, "name", here])?;
        other.ip(&["link", "set", &tmp_b, "name", there])?;
        self.ip(&["link", "set", here, "up"])?;
        other.ip(&["link", "set", there, "up"])?;
        Ok(())
    }

    /// Adds `cidr` to `device`.
    pub fn address(&self, device: &str, cidr: &str) -> Result<(), String> {
        self.ip(&["addr", "add", cidr, "dev", device]).map(drop)
    }

    /// TX checksum offload off (and with it TSO): a frame sent with an unfinished checksum
    /// reaches AF_XDP unfinished, and AF_XDP cannot tell.
    pub fn tx_offload_off(&self, device: &str) -> Result<(), String> {
        self.exec("ethtool", &["-K", device, "tx", "off"]).map(drop)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        remove(&self.name);
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|n| n != &self.name);
        }
    }
}

/// Kills what runs in namespace `name` and deletes it.
fn remove(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: kill(2) on a process of a namespace this process created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Removes every namespace this process created and still holds (with what runs in them): what
/// a signal handler calls before exiting, when no destructor will run.
pub fn remove_all() {
    let names = LIVE.lock().map(|v| v.clone()).unwrap_or_default();
    for name in names.iter().rev() {
        remove(name);
    }
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) -> Result<(), String> {
    let path = CString::new(format!("/run/netns/{name}")).map_err(|e| e.to_string())?;
    // SAFETY: opens a path given as a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "cannot open /run/netns/{name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a namespace file we own; setns affects only the calling thread.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let error = std::io::Error::last_os_error();
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(format!("setns into {name}: {error}"));
    }
    Ok(())
}

/// Runs `work` on a new thread inside namespace `ns` (a name, or a [`Namespace`]) and returns
/// its result.
pub fn in_namespace<T: Send + 'static>(
    ns: impl AsRef<str>,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let name = ns.as_ref().to_string();
    std::thread::spawn(move || {
        enter(&name)?;
        work()
    })
}

/// Makes SIGINT, SIGTERM and SIGHUP remove every namespace this process created (see
/// [`remove_all`]) and exit with 128 + the signal, so Ctrl-C leaves nothing behind. Call it
/// first in `main`, before any thread starts: it blocks the signals in the calling thread,
/// every thread started later inherits that, and one thread waits for them.
pub fn remove_all_on_signal() -> Result<(), String> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
    }
    // SAFETY: blocks the signals in this thread; `set` is initialised above.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("pthread_sigmask: error {rc}"));
    }
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals in `set`.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            eprintln!("\ninterrupted (signal {sig}): removing the lab's namespaces");
            remove_all();
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
