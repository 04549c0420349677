//! Where the `sluice` binary under test is, and starting it.

use crate::process::Proc;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The built `sluice` binary. Node tests know its path (`CARGO_BIN_EXE_sluice`,
/// visible only to the package that builds it): [`Sluice::at`]; other crates'
/// tests search for it: [`Sluice::find`].
#[derive(Debug, Clone)]
pub struct Sluice {
    bin: PathBuf,
}

impl Sluice {
    /// The binary at `path` (e.g. `env!("CARGO_BIN_EXE_sluice")`).
    pub fn at(path: impl Into<PathBuf>) -> Sluice {
        Sluice { bin: path.into() }
    }

    /// `$SLUICE_BIN`, else next to the running test executable
    /// (`<target>/<profile>/sluice`), else `<CARGO_TARGET_DIR or target>/debug/sluice`.
    /// Panics, saying how to build it, when none exists: `cargo test --workspace`
    /// builds it, `cargo test -p chaos-tests` alone does not.
    pub fn find() -> Sluice {
        if let Some(p) = std::env::var_os("SLUICE_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SLUICE_BIN={} does not exist; build it first: cargo build -p sluice",
                p.display()
            );
            return Sluice::at(p);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("testkit sits in the workspace")
            .to_path_buf();
        let mut candidates = Vec::new();
        // <target>/<profile>/deps/<test>-<hash> -> <target>/<profile>/sluice
        if let Ok(exe) = std::env::current_exe() {
            if let Some(profile) = exe.parent().and_then(Path::parent) {
                candidates.push(profile.join("sluice"));
            }
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_relative() {
                    workspace.join(t)
                } else {
                    t
                }
            })
            .unwrap_or_else(|| workspace.join("target"));
        candidates.push(target.join("debug").join("sluice"));
        let found = candidates.iter().find(|p| p.is_file()).cloned();
        Sluice::at(found.unwrap_or_else(|| {
            panic!("no sluice binary at {candidates:?}; build it first: cargo build -p sluice")
        }))
    }

    pub fn path(&self) -> &Path {
        &self.bin
    }

    /// A `Command` for a one-shot run (`sluice validate ...`).
    pub fn command(&self) -> Command {
        Command::new(&self.bin)
    }

    /// Starts `sluice <args>` as a [`Proc`] named `name` (in failure messages),
    /// its stdout and stderr appended to `log`.
    pub fn spawn(&self, name: &str, args: &[&str], log: &Path) -> Proc {
        Proc::spawn(name, &self.bin, args, log)
    }

    /// [`Sluice::spawn`] with extra environment variables for this process alone.
    pub fn spawn_with_env(
        &self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Proc {
        Proc::spawn_with_env(name, &self.bin, args, env, log)
    }
}
