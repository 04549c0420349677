//! The upstream tests proxy to: `sluice echo-server`.

use crate::bin::Sluice;
use crate::dir::TempDir;
use crate::net::free_port;
use crate::process::Proc;
use crate::wait::Logs;
use std::path::Path;
use std::time::Duration;

/// `sluice echo-server` on a loopback port: answers every request with a JSON
/// echo of it (`path`, `query`, `headers`, `body_length`); `/delay/{ms}`,
/// `/status/{code}`, `/bytes/{n}`, `/_control/fail|heal|stats`.
pub struct Echo {
    pub proc: Proc,
    pub port: u16,
    tls: bool,
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
        Echo::spawn(sluice, port, &[])
    }

    /// Serving HTTPS (h2 and HTTP/1.1 by ALPN) with a PEM chain and key, on a
    /// free port; its address is `https://localhost:{port}`.
    pub fn start_tls(sluice: &Sluice, cert: &Path, key: &Path) -> Echo {
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        Echo::spawn(
            sluice,
            free_port(),
            &["--tls-cert", &cert, "--tls-key", &key],
        )
    }

    fn spawn(sluice: &Sluice, port: u16, extra: &[&str]) -> Echo {
        let dir = TempDir::new("echo");
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["echo-server", "--listen", &addr, "--workers", "1"];
        args.extend_from_slice(extra);
        let proc = sluice.spawn(
            &format!("echo upstream :{port}"),
            &args,
            &dir.join("echo.log"),
        );
        proc.wait_listening(&[port], Duration::from_secs(20));
        Echo {
            proc,
            port,
            tls: !extra.is_empty(),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:{port}`, or `https://localhost:{port}` (the name its
    /// certificate is for) when it serves TLS.
    pub fn url(&self) -> String {
        match self.tls {
            true => format!("https://localhost:{}", self.port),
            false => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

impl Logs for Echo {
    fn logs(&self) -> String {
        self.proc.logs()
    }
}
