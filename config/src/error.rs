//! Located configuration errors: file, line, column, field, and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the position is unknown.
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field, e.g. `clusters[1].interval`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (it cannot be read, say).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
