//! Config errors: each names the file (when it came from one), the key path inside
//! it and what is wrong, so `sluice validate` can print them all.

use std::fmt;

/// One problem found in a config. Displayed as `file: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the offending value came from; `None` for config sent over the API.
    pub file: Option<String>,
    /// Key path inside that file, e.g. `routes[1].service`; empty for whole-file errors.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: Option<&str>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.map(str::to_owned),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one load or validation pass (never empty when returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
