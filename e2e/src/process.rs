//! The project's binaries as child processes: found next to the test executable (cargo puts
//! every binary of the workspace in the same directory), killed on drop, their output kept.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of workspace binary `name` of the current build profile.
pub fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        if let Some(newer) = newer_source(&path) {
            return Err(format!(
                "{} is older than {}: run `cargo build --workspace --bins` (or the whole \
                 `cargo test --workspace`) first — `cargo test -p signpost-e2e` alone does not \
                 rebuild the other crates' binaries",
                path.display(),
                newer.display()
            ));
        }
        Ok(path)
    } else {
        Err(format!(
            "{} is not built; run `cargo build --workspace --bins` (or the whole `cargo test \
             --workspace`) first",
            path.display()
        ))
    }
}

/// A source file `binary` was built from that is newer than it, by the dependency list cargo
/// writes next to it (`target/<profile>/<name>.d`): a stale binary would test yesterday's code
/// (the lab runs `signpost-router` and friends as processes, and `cargo test -p signpost-e2e`
/// does not rebuild other packages' binaries).
fn newer_source(binary: &std::path::Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let deps = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (_, sources) = deps.lines().next()?.split_once(": ")?;
    // Paths are space-separated; a space inside one is escaped as `\ `.
    let sources = sources.replace("\\ ", "\u{0}");
    sources
        .split(' ')
        .map(|s| PathBuf::from(s.replace('\u{0}', " ")))
        .find(|s| {
            std::fs::metadata(s)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
        })
}

/// A running child; its stdout and stderr lines are collected. Killed on drop.
pub struct Child {
    pub name: String,
    child: std::process::Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Starts `command` with piped output.
    pub fn spawn(name: &str, mut command: Command) -> Result<Child, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        fn pump(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut v) = into.lock() {
                        v.push(line);
                    }
                }
            });
        }
        if let Some(out) = child.stdout.take() {
            pump(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, output.clone());
        }
        Ok(Child {
            name: name.to_string(),
            child,
            output,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// CPU time it has used so far (user + system, from `/proc/PID/stat`).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_millis(ticks * 1000 / hz))
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// Waits up to `timeout` for a line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(v) = self.output.lock()
                && let Some(line) = v.iter().find(|l| l.contains(needle))
            {
                return Ok(line.clone());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before printing `{needle}`:\n{}",
                    self.name,
                    self.output()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not print `{needle}` within {timeout:?}:\n{}",
                    self.name,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it with SIGTERM, then SIGKILL after `grace`; returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
