use std::{fmt, str::FromStr};

/// The MCP protocol era a message belongs to, detected per request.
///
/// The two eras differ in lifecycle, not only in version string: `2025-11-25` is session based
/// (`initialize`, `Mcp-Session-Id`), `2026-07-28` is stateless (`server/discover`, per-request
/// metadata, input-required results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Era {
    /// Session-based lifecycle, `initialize` handshake.
    #[serde(rename = "2025-11-25")]
    Sessions,
    /// Stateless lifecycle, `server/discover`, per-request metadata.
    #[serde(rename = "2026-07-28")]
    Stateless,
}

impl Era {
    /// The protocol version string that names this era on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "2025-11-25",
            Self::Stateless => "2026-07-28",
        }
    }

    /// The era a negotiated protocol version belongs to. Versions are ISO dates, so they compare
    /// lexically in time order; anything before 2026-07-28 uses the session lifecycle.
    pub fn of_version(version: &str) -> Self {
        if version >= Self::Stateless.as_str() {
            Self::Stateless
        } else {
            Self::Sessions
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol era name that Portcullis does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEra {
    /// The text that was given.
    pub given: String,
}

impl fmt::Display for UnknownEra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol era `{}`: expected `2025-11-25` or `2026-07-28`",
            self.given
        )
    }
}

impl std::error::Error for UnknownEra {}

impl FromStr for Era {
    type Err = UnknownEra;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "2025-11-25" => Ok(Self::Sessions),
            "2026-07-28" => Ok(Self::Stateless),
            other => Err(UnknownEra {
                given: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_the_stateless_era_use_sessions() {
        assert_eq!(Era::of_version("2024-11-05"), Era::Sessions);
        assert_eq!(Era::of_version("2025-11-25"), Era::Sessions);
        assert_eq!(Era::of_version("2026-07-28"), Era::Stateless);
        assert_eq!(Era::of_version("2027-01-01"), Era::Stateless);
    }

    #[test]
    fn era_names_round_trip() {
        for era in [Era::Sessions, Era::Stateless] {
            assert_eq!(era.as_str().parse::<Era>(), Ok(era));
        }
        assert!("2025-03-26".parse::<Era>().is_err());
    }
}
