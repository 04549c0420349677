//! Helpers shared by the unit tests: a temp config directory per test and
//! assertions on reported errors.

use crate::{ConfigError, ConfigErrors};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop. Unique per test
/// (process id + counter) so tests can run in parallel.
pub(crate) struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub(crate) fn new() -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sluice-config-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TestDir { path }
    }

    pub(crate) fn with(files: &[(&str, &str)]) -> TestDir {
        let dir = TestDir::new();
        for (name, text) in files {
            dir.write(name, text);
        }
        dir
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, text).expect("write test file");
        path
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How errors name `name` in this directory.
    pub(crate) fn file(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fixed environment for `${VAR}` in tests (no process-env mutation).
pub(crate) fn test_env(name: &str) -> Option<String> {
    match name {
        "JWT_HS256_SECRET" => Some("hs-secret-from-env".to_owned()),
        "SLUICE_CLUSTER_SECRET" => Some("cluster-secret".to_owned()),
        "SLUICE_ADMIN_TOKEN" => Some("admin-token".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Asserts that `errors` holds one with exactly this file and key path whose
/// message contains `fragment`.
#[track_caller]
pub(crate) fn assert_has(errors: &ConfigErrors, file: Option<&str>, path: &str, fragment: &str) {
    let hit = errors.0.iter().any(|e: &ConfigError| {
        e.file.as_deref() == file && e.path == path && e.message.contains(fragment)
    });
    assert!(
        hit,
        "no error {file:?} {path:?} containing {fragment:?}; got:\n{errors}"
    );
}

/// A 2048-bit RSA public key in PEM (SPKI) form.
pub(crate) const TEST_PEM: &str = crate::pem::tests::RSA_2048;
/// An EC P-256 public key in PEM (SPKI) form.
pub(crate) const TEST_EC_PEM: &str = crate::pem::tests::EC_P256;
