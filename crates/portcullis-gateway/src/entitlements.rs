//! Live entitlements: a file beside the tokens' claims that says, now, which roles, tenant and
//! scopes each subject holds, or that it is disabled. It is re-read when it changes (checked
//! every `refresh`), so a role removed or a subject disabled takes effect within that bound,
//! even for tokens issued before. Nothing is read on a call's path: calls see the last good
//! reading. A file that does not parse is reported and the previous reading stays.
//!
//! The format is the demo's `identities.toml`:
//!
//! ```toml
//! [[identity]]
//! subject = "editor-a"
//! issuer = "https://auth.example.com"            # required when several issuers are trusted
//! tenant = "tenant-a"
//! roles = ["editor"]
//! scopes = ["policies:read", "policies:write"]   # optional: narrows the token's scopes
//! disabled = false                               # optional
//! ```

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use portcullis_policy::Principal;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    subject: String,
    /// Whose subject this is: required when several issuers are trusted, the only issuer's
    /// when absent.
    issuer: Option<String>,
    tenant: Option<String>,
    /// Required unless disabled: an entry cut short (a file read while being written) must not
    /// read as "no roles".
    roles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default, rename = "identity")]
    identities: Vec<Entry>,
}

/// The subject may not use anything now, whatever its token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disabled;

/// The source, and its last good reading.
pub struct Entitlements {
    path: PathBuf,
    refresh: Duration,
    /// The trusted issuers: a subject belongs to one of them.
    issuers: Vec<String>,
    reading: RwLock<Arc<HashMap<String, Vec<Entry>>>>,
    stamp: std::sync::Mutex<Option<(SystemTime, u64)>>,
    /// The digest of the text in force: replicas reading one file say the same.
    version: RwLock<String>,
}

impl std::fmt::Debug for Entitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entitlements")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Entitlements {
    /// Read `path` now, for subjects of `issuers`; a file that cannot be read or parsed is a
    /// start-up error.
    pub fn open(path: &Path, refresh: Duration, issuers: Vec<String>) -> Result<Self, String> {
        let entitlements = Self {
            path: path.to_owned(),
            refresh,
            issuers,
            reading: RwLock::new(Arc::default()),
            stamp: std::sync::Mutex::new(None),
            version: RwLock::new(String::new()),
        };
        entitlements.reload()?;
        Ok(entitlements)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How often the file is checked for changes.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    fn stamp_of(&self) -> Option<(SystemTime, u64)> {
        crate::file_stamp(&self.path)
    }

    /// Re-read the file if it changed since the last reading. `Ok(true)` when the reading
    /// changed; an unreadable file keeps the previous reading and says why.
    pub fn reload(&self) -> Result<bool, String> {
        let stamp = self.stamp_of();
        {
            let mut last = self
                .stamp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if stamp.is_some() && *last == stamp {
                return Ok(false);
            }
            *last = stamp;
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|error| format!("{}: {error}", self.path.display()))?;
        // Changed while being read (written in place): read it again at the next check.
        if self.stamp_of() != stamp {
            *self
                .stamp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return Ok(false);
        }
        let file: File = toml::from_str(&text)
            .map_err(|error| format!("{}: {}", self.path.display(), error.message()))?;
        let mut by_subject: HashMap<String, Vec<Entry>> = HashMap::new();
        for mut entry in file.identities {
            // SECURITY: two issuers may each have an `admin-a`; an entry for one must never
            // dress the other's in its roles and tenant.
            match (&entry.issuer, self.issuers.as_slice()) {
                (Some(issuer), trusted) if !trusted.is_empty() && !trusted.contains(issuer) => {
                    return Err(format!(
                        "{}: identity `{}` names issuer `{issuer}`, which is not trusted",
                        self.path.display(),
                        entry.subject
                    ));
                }
                (Some(_), _) | (None, []) => {}
                (None, [only]) => entry.issuer = Some(only.clone()),
                (None, _) => {
                    return Err(format!(
                        "{}: identity `{}` must name its `issuer`: several issuers are trusted",
                        self.path.display(),
                        entry.subject
                    ));
                }
            }
            if entry.roles.is_none() && !entry.disabled {
                return Err(format!(
                    "{}: identity `{}` has no `roles` (write `roles = []` for none)",
                    self.path.display(),
                    entry.subject
                ));
            }
            by_subject
                .entry(entry.subject.clone())
                .or_default()
                .push(entry);
        }
        *self
            .reading
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(by_subject);
        *self
            .version
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            portcullis_audit::arguments_digest(&serde_json::Value::String(text))
                .chars()
                .take(16)
                .collect();
        Ok(true)
    }

    /// The version of the reading in force (a digest of the file's text).
    pub fn version(&self) -> String {
        self.version
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Everyone the file names, as the gateway would see each holding a token granted
    /// `every_scope` (what the file allows of it, or all of it where the file says nothing);
    /// and apart, the subjects it disables. For operators' reviews.
    pub fn sample(&self, every_scope: &[String]) -> (Vec<Principal>, Vec<String>) {
        let reading = self
            .reading
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut entries: Vec<&Entry> = reading.values().flatten().collect();
        entries.sort_by(|a, b| (&a.subject, &a.issuer).cmp(&(&b.subject, &b.issuer)));
        let (mut people, mut disabled) = (Vec::new(), Vec::new());
        for entry in entries {
            let token = Principal {
                subject: entry.subject.clone(),
                issuer: entry.issuer.clone().unwrap_or_default(),
                tenant: None,
                roles: Vec::new(),
                scopes: every_scope.to_vec(),
                client_id: None,
            };
            match self.apply(token) {
                Ok(principal) => people.push(principal),
                Err(Disabled) => disabled.push(entry.subject.clone()),
            }
        }
        (people, disabled)
    }

    /// `principal` as its entitlements say it is now: roles and tenant replaced, scopes
    /// narrowed, or refused when disabled. A subject the file does not name keeps its claims.
    pub fn apply(&self, mut principal: Principal) -> Result<Principal, Disabled> {
        let reading = self
            .reading
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(entry) = reading.get(&principal.subject).and_then(|entries| {
            entries.iter().find(|entry| {
                entry
                    .issuer
                    .as_deref()
                    .is_none_or(|issuer| issuer == principal.issuer)
            })
        }) else {
            return Ok(principal);
        };
        if entry.disabled {
            return Err(Disabled);
        }
        principal.roles = entry.roles.clone().unwrap_or_default();
        if entry.tenant.is_some() {
            principal.tenant.clone_from(&entry.tenant);
        }
        // A source can take scopes away; it cannot grant one the client was never given.
        if let Some(allowed) = &entry.scopes {
            principal.scopes.retain(|scope| allowed.contains(scope));
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            subject: "editor-a".to_owned(),
            issuer: "https://issuer.example".to_owned(),
            tenant: Some("tenant-a".to_owned()),
            roles: vec!["editor".to_owned()],
            scopes: vec!["policies:read".to_owned(), "policies:write".to_owned()],
            client_id: None,
        }
    }

    #[test]
    fn the_file_replaces_roles_and_tenant_narrows_scopes_and_disables() {
        let dir = std::env::temp_dir().join(format!("entitlements-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("identities.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap_or_default();
        write(
            "[[identity]]\nsubject = \"editor-a\"\nname = \"x\"\ntenant = \"tenant-b\"\nroles = [\"viewer\"]\nscopes = [\"policies:read\", \"email:send\"]\n",
        );
        let source = Entitlements::open(&path, Duration::from_millis(10), Vec::new())
            .map_err(|e| e.to_string());
        let Ok(source) = source else {
            panic!("{source:?}");
        };
        let now = source.apply(principal());
        assert_eq!(
            now.as_ref()
                .map(|p| (p.roles.clone(), p.tenant.clone(), p.scopes.clone())),
            Ok((
                vec!["viewer".to_owned()],
                Some("tenant-b".to_owned()),
                vec!["policies:read".to_owned()]
            ))
        );
        // Unchanged file: nothing to do. Disabled: refused. Broken: the last reading stays.
        assert_eq!(source.reload(), Ok(false));
        std::thread::sleep(Duration::from_millis(20));
        write("[[identity]]\nsubject = \"editor-a\"\ndisabled = true\n");
        assert_eq!(source.reload(), Ok(true));
        assert_eq!(source.apply(principal()), Err(Disabled));
        write("[[identity]\nsubject = ");
        assert!(source.reload().is_err());
        assert_eq!(source.apply(principal()), Err(Disabled));
        let mut other = principal();
        other.subject = "someone-else".to_owned();
        assert_eq!(source.apply(other.clone()), Ok(other));
        let _ = std::fs::remove_dir_all(&dir);
    }

    // See: issue 14. With two issuers, the second issuer's `admin-a` got the first one's roles.
    #[test]
    fn an_entry_belongs_to_one_issuer_and_must_name_it_when_several_are_trusted() {
        let dir = std::env::temp_dir().join(format!("entitlements-iss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("identities.toml");
        let first = "https://issuer.example".to_owned();
        let second = "https://other.example".to_owned();
        let both = vec![first.clone(), second.clone()];
        std::fs::write(
            &path,
            "[[identity]]\nsubject = \"editor-a\"\nroles = [\"admin\"]\n",
        )
        .unwrap_or_default();
        let refused = Entitlements::open(&path, Duration::from_secs(1), both.clone());
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("must name its `issuer`")),
            "{:?}",
            refused.err()
        );
        let only = Entitlements::open(&path, Duration::from_secs(1), vec![first.clone()]);
        let Ok(only) = only else {
            panic!("one issuer: the entry is its")
        };
        let mut stranger = principal();
        stranger.issuer.clone_from(&second);
        assert_eq!(only.apply(stranger.clone()), Ok(stranger.clone()));
        assert_eq!(
            only.apply(principal()).map(|p| p.roles),
            Ok(vec!["admin".to_owned()])
        );
        std::fs::write(
            &path,
            format!(
                "[[identity]]\nsubject = \"editor-a\"\nissuer = \"{first}\"\nroles = [\"admin\"]\n"
            ),
        )
        .unwrap_or_default();
        let named = Entitlements::open(&path, Duration::from_secs(1), both);
        let Ok(named) = named else {
            panic!("a named issuer is accepted")
        };
        assert_eq!(named.apply(stranger.clone()), Ok(stranger));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
