//! The one way tests wait: poll observable state at a fixed short interval until
//! it holds or a deadline passes.
//!
//! A condition returns a [`Probe`]: `true`/`Some(v)`/`Ok(v)` ends the wait (with
//! `v`); `false`/`None`/`Err(seen)` means "not yet", and `seen` (the last one) is
//! what the timeout panic shows, so a condition should return what it observed:
//! `Err(Seen(format!(...)))` or the error of the request it made. The panic also
//! prints a [`Logs`] dump (a process's log tail, every node's of a cluster).
//!
//! [`wait_for`] blocks the thread between polls (for sync conditions, outside an
//! async runtime or where nothing else must run meanwhile); [`wait_for_async`]
//! awaits a timer, so the actix runtime keeps driving other tasks (load loops,
//! spawned requests). The closure may borrow what it uses:
//! `wait_for_async(what, d, &c, || async { c.info(1).await }).await`.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// Time between two polls: short enough not to slow tests, long enough not to
/// busy-spin a 2-core machine.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What explains a failed wait: printed after the timeout message.
pub trait Logs {
    fn logs(&self) -> String;
}

impl Logs for () {
    fn logs(&self) -> String {
        String::new()
    }
}

/// Any closure returning text is a log dump hook: `&|| cluster.logs()`.
impl<F: Fn() -> String> Logs for F {
    fn logs(&self) -> String {
        self()
    }
}

/// For waits with nothing to dump (the condition's last value says it all).
pub const NO_LOGS: &dyn Logs = &();

/// A note of what a poll observed, shown as written (not `Debug`-quoted).
pub struct Seen(pub String);

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of one poll: done (with a value) or not yet (with what was seen).
pub trait Probe {
    type Value;
    type Last: fmt::Debug;
    fn check(self) -> Result<Self::Value, Self::Last>;
}

impl Probe for bool {
    type Value = ();
    type Last = Seen;
    fn check(self) -> Result<(), Seen> {
        if self {
            Ok(())
        } else {
            Err(Seen("the condition was false".into()))
        }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    type Last = Seen;
    fn check(self) -> Result<T, Seen> {
        self.ok_or_else(|| Seen("nothing yet (None)".into()))
    }
}

impl<T, E: fmt::Debug> Probe for Result<T, E> {
    type Value = T;
    type Last = E;
    fn check(self) -> Result<T, E> {
        self
    }
}

/// The bookkeeping both forms share: count polls, enforce the deadline, panic.
struct Waiting<'a> {
    what: String,
    deadline: Duration,
    started: Instant,
    polls: u32,
    logs: &'a dyn Logs,
}

impl<'a> Waiting<'a> {
    fn new(what: impl fmt::Display, deadline: Duration, logs: &'a dyn Logs) -> Self {
        Waiting {
            what: what.to_string(),
            deadline,
            started: Instant::now(),
            polls: 0,
            logs,
        }
    }

    /// `Some(value)` when the probe says done; `None` to poll again; panics once
    /// the deadline has passed (after at least one poll).
    fn observe<P: Probe>(&mut self, probe: P) -> Option<P::Value> {
        self.polls += 1;
        match probe.check() {
            Ok(v) => Some(v),
            Err(last) if self.started.elapsed() >= self.deadline => panic!(
                "timed out after {:?} ({} polls) waiting for {}\nlast seen: {:?}\n{}",
                self.deadline,
                self.polls,
                self.what,
                last,
                self.logs.logs()
            ),
            Err(_) => None,
        }
    }
}

/// Polls `cond` every [`POLL_INTERVAL`], blocking the thread in between, until it
/// is done; returns its value. After `deadline` panics with `what`, the last value
/// seen and `logs`.
pub fn wait_for<P: Probe>(
    what: impl fmt::Display,
    deadline: Duration,
    logs: &dyn Logs,
    mut cond: impl FnMut() -> P,
) -> P::Value {
    let mut w = Waiting::new(what, deadline, logs);
    loop {
        if let Some(v) = w.observe(cond()) {
            return v;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_for`] for a condition that must `.await` (an HTTP call): sleeps on the
/// runtime's timer between polls, so other tasks keep running.
pub async fn wait_for_async<P, F>(
    what: impl fmt::Display,
    deadline: Duration,
    logs: &dyn Logs,
    mut cond: impl FnMut() -> F,
) -> P::Value
where
    P: Probe,
    F: Future<Output = P>,
{
    let mut w = Waiting::new(what, deadline, logs);
    loop {
        if let Some(v) = w.observe(cond().await) {
            return v;
        }
        actix_rt::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let n = Cell::new(0);
        let v = wait_for("n to reach 3", Duration::from_secs(5), NO_LOGS, || {
            n.set(n.get() + 1);
            (n.get() >= 3).then_some(n.get() * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    fn times_out_with_what_the_last_value_and_the_logs() {
        let err = std::panic::catch_unwind(|| {
            wait_for(
                "the impossible",
                Duration::from_millis(50),
                &|| "LOG TAIL".to_owned(),
                || Err::<(), _>(Seen("state=42".into())),
            )
        })
        .expect_err("must time out");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("waiting for the impossible"), "{msg}");
        assert!(msg.contains("last seen: state=42"), "{msg}");
        assert!(msg.contains("LOG TAIL"), "{msg}");
    }

    #[actix_rt::test]
    async fn the_async_form_lets_other_tasks_run_between_polls() {
        let flag = std::rc::Rc::new(Cell::new(false));
        let set = flag.clone();
        actix_rt::spawn(async move { set.set(true) });
        wait_for_async(
            "the spawned task",
            Duration::from_secs(5),
            NO_LOGS,
            || async { flag.get() },
        )
        .await;
    }
}
