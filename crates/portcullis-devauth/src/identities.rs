//! Sample identities, from `identities.toml` in the data dir (written with the reference
//! scenario's people on first start, so there is something to edit).

use std::path::Path;

use serde::Deserialize;

use crate::{
    DevAuthError,
    keys::{random_token, write_private},
};

/// A person who can sign in on the login page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The `sub` of their tokens.
    pub subject: String,
    /// What the login page shows.
    #[serde(default)]
    pub name: Option<String>,
    /// The `tenant` claim.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The `roles` claim.
    #[serde(default)]
    pub roles: Vec<String>,
    /// No tokens for them (and the gateway, reading this file live, refuses theirs).
    #[serde(default)]
    pub disabled: bool,
    /// The scopes they may be granted; a token holds the requested ones among these.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A service account: a confidential client using the client credentials grant.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its client id, also the `sub` of its tokens.
    pub client_id: String,
    /// Its secret (dev-grade: kept in the file in clear).
    pub client_secret: String,
    /// The `tenant` claim.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The `roles` claim.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The scopes it may be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Everyone the server knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// People.
    #[serde(default, rename = "identity")]
    pub identities: Vec<Identity>,
    /// Service accounts.
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
}

impl Directory {
    /// Read `path`, writing the default directory there first if there is no file yet.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, DevAuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let text = DEFAULT.replace("{secret}", &random_token());
                // It holds the service account's secret.
                write_private(path, text.as_bytes()).map_err(|error| DevAuthError::File {
                    path: error.path,
                    reason: error.reason,
                })?;
                text
            }
            Err(error) => return Err(DevAuthError::io(path, &error)),
        };
        Self::parse(&text).map_err(|reason| DevAuthError::File {
            path: path.to_owned(),
            reason,
        })
    }

    /// Read an identities file (`portcullis review` and `explain` take the demo's format).
    pub fn load(path: &Path) -> Result<Self, DevAuthError> {
        let text = std::fs::read_to_string(path).map_err(|error| DevAuthError::io(path, &error))?;
        Self::parse(&text).map_err(|reason| DevAuthError::File {
            path: path.to_owned(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let directory: Self = toml::from_str(text).map_err(|error| error.to_string())?;
        let mut seen = std::collections::HashSet::new();
        let subjects = directory.identities.iter().map(|i| &i.subject);
        for subject in subjects.chain(directory.services.iter().map(|s| &s.client_id)) {
            if subject.is_empty() || !seen.insert(subject) {
                return Err(format!("subject `{subject}` is empty or appears twice"));
            }
        }
        Ok(directory)
    }

    /// The person with this subject.
    pub fn identity(&self, subject: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|i| i.subject == subject && !i.disabled)
    }

    /// The service account with this client id.
    pub(crate) fn service(&self, client_id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.client_id == client_id)
    }
}

/// DESIGN.md §5's people: a viewer, an admin, an editor per tenant, an HR reviewer, and a service.
const DEFAULT: &str = r#"# Sample identities for the embedded authorization server of `portcullis demo`.
# Each one can sign in on the login page, or get a token with `portcullis token --as SUBJECT`.
# `scopes` lists what an identity MAY be granted: a token holds the requested scopes among these.
# Edit freely: the gateway applies roles, tenant, scopes and `disabled = true` within a second
# (replace the file whole); tokens it issues follow after a restart.

[[identity]]
subject = "user-42"
name = "User 42: viewer, tenant-a"
tenant = "tenant-a"
roles = ["viewer"]
scopes = ["policies:read", "tickets:read"]

[[identity]]
subject = "admin-a"
name = "Admin of tenant-a"
tenant = "tenant-a"
roles = ["admin"]
scopes = ["policies:read", "policies:write", "tickets:read", "tickets:write", "records:delete", "access:grant", "email:send"]

[[identity]]
subject = "editor-a"
name = "Editor, tenant-a"
tenant = "tenant-a"
roles = ["editor"]
scopes = ["policies:read", "policies:write", "tickets:read", "tickets:write", "email:send"]

[[identity]]
subject = "editor-b"
name = "Editor, tenant-b"
tenant = "tenant-b"
roles = ["editor"]
scopes = ["policies:read", "policies:write", "tickets:read", "tickets:write", "email:send"]

[[identity]]
subject = "hr-a"
name = "HR reviewer, tenant-a"
tenant = "tenant-a"
roles = ["hr", "viewer"]
scopes = ["policies:read", "hr:read"]

# A service account for the client credentials grant (client_secret_basic or client_secret_post).
[[service]]
client_id = "svc-reporting"
client_secret = "{secret}"
tenant = "tenant-a"
roles = ["service"]
scopes = ["policies:read", "tickets:read"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_parses_and_has_the_reference_people() {
        let directory = Directory::parse(&DEFAULT.replace("{secret}", "s")).unwrap();
        let viewer = directory.identity("user-42").unwrap();
        assert_eq!(viewer.tenant.as_deref(), Some("tenant-a"));
        assert_eq!(viewer.roles, ["viewer"]);
        assert!(directory.service("svc-reporting").is_some());
    }

    #[test]
    fn duplicate_subjects_and_unknown_keys_are_refused() {
        let twice = "[[identity]]\nsubject = \"a\"\n[[identity]]\nsubject = \"a\"\n";
        assert!(Directory::parse(twice).unwrap_err().contains("twice"));
        let typo = "[[identity]]\nsubject = \"a\"\nrole = [\"x\"]\n";
        assert!(Directory::parse(typo).unwrap_err().contains("role"));
    }
}
