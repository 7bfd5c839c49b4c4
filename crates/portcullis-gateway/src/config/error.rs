use std::path::PathBuf;

use thiserror::Error;

/// Why a configuration could not be loaded. Each message names the file and the offending key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown or mistyped key. The parser's message
    /// names the line, column and key.
    #[error("config `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("config: `{key}`: {problem}")]
    Invalid {
        /// The dotted key, e.g. `upstream[0].url`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value parsed but makes no sense, where it is written.
    #[error("config `{path}`, line {line}: `{key}`: {problem}\n{line:>5} | {source_line}")]
    InvalidAt {
        /// The file.
        path: PathBuf,
        /// The line it is set on (1-based).
        line: usize,
        /// That line.
        source_line: String,
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// This error, with the file and line of its key in `text` when it names one found there.
    pub(crate) fn located(self, text: &str, path: &std::path::Path) -> Self {
        let Self::Invalid { key, problem } = self else {
            return self;
        };
        match super::locate::line_of(text, &key) {
            Some(line) => Self::InvalidAt {
                path: path.to_owned(),
                line,
                // The key as written, not its value: a value may hold a password (a connection
                // URL, an `env` table, an inline table with other keys).
                source_line: text
                    .lines()
                    .nth(line - 1)
                    .unwrap_or_default()
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
                    + " = …",
                key,
                problem,
            },
            None => Self::Invalid { key, problem },
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
