use serde::Serialize;
use url::Url;

use crate::Scopes;

/// This server as an OAuth protected resource: its canonical URL and where its metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    resource: Url,
}

/// Why a URL cannot name a protected resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not an absolute http(s) URL.
    #[error("`{url}` is not an absolute http or https URL")]
    NotHttp {
        /// The URL as given.
        url: String,
    },
    /// RFC 8707 §2: a resource indicator must not carry a fragment (or, here, a query).
    #[error("`{url}` has a query or fragment; a resource URL must not")]
    QueryOrFragment {
        /// The URL as given.
        url: String,
    },
}

impl ProtectedResource {
    /// The resource at `public_url`, the URL clients use for the MCP endpoint. Scheme and host
    /// are lowercased (the URL parser does so); the path is kept as written, without a trailing
    /// slash, since audiences are compared as strings.
    pub fn new(public_url: &str) -> Result<Self, MetadataError> {
        let mut url = Url::parse(public_url).map_err(|_| MetadataError::NotHttp {
            url: public_url.to_owned(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(MetadataError::NotHttp {
                url: public_url.to_owned(),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(MetadataError::QueryOrFragment {
                url: public_url.to_owned(),
            });
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        Ok(Self { resource: url })
    }

    /// The canonical resource identifier: what `aud` must contain and `resource=` must name.
    pub fn identifier(&self) -> &str {
        let text = self.resource.as_str();
        // Url keeps a lone "/" path on a bare origin; the identifier is written without it.
        text.strip_suffix('/').unwrap_or(text)
    }

    /// The path of the metadata document, inserted before the resource's path (RFC 9728 §3.1):
    /// `/.well-known/oauth-protected-resource/mcp` for `https://host/mcp`.
    pub fn metadata_path(&self) -> String {
        let path = self.resource.path().trim_end_matches('/');
        format!("/.well-known/oauth-protected-resource{path}")
    }

    /// The absolute URL of the metadata document, for `resource_metadata=` in challenges.
    pub fn metadata_url(&self) -> String {
        let mut url = self.resource.clone();
        url.set_path(&self.metadata_path());
        url.to_string()
    }
}

/// The RFC 9728 protected resource metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier.
    pub resource: String,
    /// Issuers of the authorization servers that grant tokens for it.
    pub authorization_servers: Vec<String>,
    /// The scopes a client may ask for: the minimal useful set, never `offline_access`.
    pub scopes_supported: Vec<String>,
    /// How tokens are presented: only in the `Authorization` header.
    pub bearer_methods_supported: Vec<&'static str>,
    /// A human-readable name.
    pub resource_name: String,
}

impl ProtectedResourceMetadata {
    /// The document for `resource`.
    pub fn new(
        resource: &ProtectedResource,
        authorization_servers: Vec<String>,
        scopes: &Scopes,
        resource_name: &str,
    ) -> Self {
        Self {
            resource: resource.identifier().to_owned(),
            authorization_servers,
            // Refresh tokens are the client's business with its authorization server; a
            // resource that advertises offline_access invites over-broad grants.
            scopes_supported: scopes
                .iter()
                .filter(|s| *s != "offline_access")
                .map(str::to_owned)
                .collect(),
            bearer_methods_supported: vec!["header"],
            resource_name: resource_name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_path_is_inserted_before_the_resource_path() {
        let resource = ProtectedResource::new("HTTPS://MCP.Example.COM/mcp/").unwrap();
        assert_eq!(resource.identifier(), "https://mcp.example.com/mcp");
        assert_eq!(
            resource.metadata_path(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            resource.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let root = ProtectedResource::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(root.identifier(), "http://127.0.0.1:8080");
        assert_eq!(
            root.metadata_path(),
            "/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn resource_urls_must_be_plain_http() {
        for bad in [
            "mcp",
            "ftp://host/mcp",
            "https://host/mcp?x=1",
            "https://host/mcp#f",
            "file:///mcp",
        ] {
            assert!(ProtectedResource::new(bad).is_err(), "{bad}");
        }
    }
}
