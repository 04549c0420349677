//! Child processes: started with their output in a log file, signalled by the
//! test, killed on drop, and able to say how they ended.

use crate::net::port_open;
use crate::wait::{wait_for, Logs, Seen};
use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The signals tests send (through `kill(1)`: the kit has no `unsafe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Reload config from disk.
    Hup,
    /// Drain and exit 0.
    Term,
    /// Crash: no drain, no flush.
    Kill,
    /// Freeze (the process keeps its sockets but answers nothing).
    Stop,
    /// Thaw a stopped process.
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// A child process, SIGKILLed and reaped on drop. (`RefCell` so that a shared
/// borrow, e.g. while printing logs, can still ask whether it died.)
pub struct Proc {
    name: String,
    child: RefCell<Child>,
    log: PathBuf,
    /// The last signal the test sent, so an exit can be told apart from a crash.
    sent: Cell<Option<Signal>>,
}

impl Proc {
    /// Starts `bin <args>` with stdout and stderr appended to `log` (after a header
    /// line naming the command, so restarts are visible in one file).
    pub fn spawn(name: &str, bin: &Path, args: &[&str], log: &Path) -> Proc {
        Proc::spawn_with_env(name, bin, args, &[], log)
    }

    /// [`Proc::spawn`] with extra environment variables for the child alone.
    pub fn spawn_with_env(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Proc {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log file {}: {e}", log.display()));
        let _ = writeln!(out, "=== testkit: {} {} ===", bin.display(), args.join(" "));
        let err = out.try_clone().expect("clone log file");
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Proc {
            name: name.to_owned(),
            child: RefCell::new(child),
            log: log.to_path_buf(),
            sent: Cell::new(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    /// Sends `sig`; panics if it cannot be delivered.
    pub fn signal(&self, sig: Signal) {
        let ok = Command::new("kill")
            .args([format!("-{}", sig.name()), self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{} {} ({})", sig.name(), self.pid(), self.name);
        self.sent.set(Some(sig));
    }

    /// `Some(status)` once the process has exited (reaping it). A stopped
    /// (SIGSTOP) process has not exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.borrow_mut().try_wait().ok().flatten()
    }

    /// Waits until the process exits; panics with its log after `deadline`.
    pub fn wait_exit(&self, deadline: Duration) -> ExitStatus {
        wait_for(format!("{} to exit", self.name), deadline, self, || {
            self.exited().ok_or_else(|| Seen(self.state()))
        })
    }

    /// Waits until every port in `ports` accepts connections on loopback; panics
    /// at once (with the log) if the process exits meanwhile.
    pub fn wait_listening(&self, ports: &[u16], deadline: Duration) {
        wait_for(
            format!("{} to listen on {ports:?}", self.name),
            deadline,
            self,
            || {
                if let Some(status) = self.exited() {
                    panic!(
                        "{} {} before listening on {ports:?}\n{}",
                        self.name,
                        self.describe(status),
                        self.log_tail(80)
                    );
                }
                let closed: Vec<u16> = ports.iter().copied().filter(|p| !port_open(*p)).collect();
                if closed.is_empty() {
                    Ok(())
                } else {
                    Err(Seen(format!("not yet listening on {closed:?}")))
                }
            },
        )
    }

    /// SIGKILL, then reap (so its ports and file locks are free on return).
    pub fn kill9(self) {
        drop(self);
    }

    /// Peak resident set size in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log file (empty if unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log (or a note that it cannot be read).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// "running, pid N", "stopped (SIGSTOP), pid N" or how it died.
    pub fn state(&self) -> String {
        match self.exited() {
            Some(status) => format!("DIED: {}", self.describe(status)),
            None if self.sent.get() == Some(Signal::Stop) => {
                format!("paused (SIGSTOP), pid {}", self.pid())
            }
            None => format!("running, pid {}", self.pid()),
        }
    }

    /// How a process ended, naming the signal if one killed it and whether the
    /// test asked for it.
    fn describe(&self, status: ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        let sent = self.sent.get();
        match status.signal() {
            Some(9) if sent == Some(Signal::Kill) => "killed by the test (SIGKILL)".into(),
            Some(9) => "killed by signal 9 (SIGKILL) from outside the test".into(),
            Some(15) => "stopped by signal 15 (SIGTERM) without draining".into(),
            Some(sig) => format!("killed by signal {sig} (crash?)"),
            None if status.success() && sent == Some(Signal::Term) => {
                "exited 0 after the test's SIGTERM".into()
            }
            // `sluice run` exits 0 only after a graceful stop (SIGTERM/SIGINT).
            None if status.success() => {
                "exited 0: a graceful stop (SIGTERM/SIGINT from outside the test?)".into()
            }
            None => format!("exited with {status}"),
        }
    }
}

impl Logs for Proc {
    fn logs(&self) -> String {
        format!(
            "---- {} ({}; full log {}) ----\n{}\n",
            self.name,
            self.state(),
            self.log.display(),
            self.log_tail(80)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of a file (or a note that it cannot be read): for the
/// log of a process that is no longer running.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
