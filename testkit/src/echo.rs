//! The upstream tests proxy to: `sluice echo-server`.

use crate::bin::Sluice;
use crate::dir::TempDir;
use crate::net::free_port;
use crate::process::Proc;
use crate::wait::Logs;
use std::time::Duration;

/// `sluice echo-server` on a loopback port: answers every request with a JSON
/// echo of it (`path`, `query`, `headers`, `body_length`); `/delay/{ms}`,
/// `/status/{code}`, `/bytes/{n}`, `/_control/fail|heal|stats`.
pub struct Echo {
    pub proc: Proc,
    pub port: u16,
    /// Holds `echo.log`; declared after `proc` so the process dies first.
    _dir: TempDir,
}

impl Echo {
    /// On a free port; returns once it accepts connections.
    pub fn start(sluice: &Sluice) -> Echo {
        Echo::start_on(sluice, free_port())
    }

    /// On `port` (e.g. one a test first used as a dead target).
    pub fn start_on(sluice: &Sluice, port: u16) -> Echo {
        let dir = TempDir::new("echo");
        let addr = format!("127.0.0.1:{port}");
        let proc = sluice.spawn(
            &format!("echo upstream :{port}"),
            &["echo-server", "--listen", &addr, "--workers", "1"],
            &dir.join("echo.log"),
        );
        proc.wait_listening(&[port], Duration::from_secs(20));
        Echo {
            proc,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Logs for Echo {
    fn logs(&self) -> String {
        self.proc.logs()
    }
}
