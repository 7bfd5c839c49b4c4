use serde_json::Value;

/// A caller whose token was verified. Only the verifiers of this crate construct one, so a value
/// of this type is proof that authentication happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPrincipal {
    issuer: String,
    subject: String,
    tenant: Option<String>,
    roles: Vec<String>,
    scopes: Vec<String>,
    client_id: Option<String>,
}

impl VerifiedPrincipal {
    pub(crate) fn from_claims(
        issuer: &str,
        claims: &Value,
        mapping: &ClaimMapping,
    ) -> Option<Self> {
        let subject = first_string(claims, &mapping.subject)?;
        Some(Self {
            issuer: issuer.to_owned(),
            subject,
            tenant: first_string(claims, &mapping.tenant),
            roles: strings(claims, &mapping.roles),
            scopes: strings(claims, &mapping.scopes),
            client_id: first_string(claims, &mapping.client_id),
        })
    }

    /// The issuer that vouched for this caller.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The caller's subject at that issuer.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The caller's tenant, when the token names one.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    /// The caller's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    /// The scopes the token grants.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// The OAuth client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// Where an issuer's tokens keep each attribute: JSON pointers into the claims, tried in order.
/// A string claim holding spaces (`scope`) is split; an array claim is read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The subject.
    pub subject: Vec<String>,
    /// The tenant.
    pub tenant: Vec<String>,
    /// Roles (every pointer contributes).
    pub roles: Vec<String>,
    /// Scopes (every pointer contributes).
    pub scopes: Vec<String>,
    /// The client id.
    pub client_id: Vec<String>,
}

impl ClaimMapping {
    /// RFC 9068 JWT access tokens: `sub`, `tenant`, `roles`, `scope` or `scp`, `client_id`
    /// or `azp`. `groups` are not roles unless a mapping says so (`claim_paths.roles`): group
    /// names are often managed by other people, for other purposes.
    pub fn standard() -> Self {
        Self {
            subject: pointers(&["/sub"]),
            tenant: pointers(&["/tenant", "/tenant_id"]),
            roles: pointers(&["/roles"]),
            scopes: pointers(&["/scope", "/scp"]),
            client_id: pointers(&["/client_id", "/azp"]),
        }
    }

    /// Keycloak: realm roles under `realm_access.roles`.
    pub fn keycloak() -> Self {
        Self {
            roles: pointers(&["/realm_access/roles"]),
            ..Self::standard()
        }
    }

    /// Microsoft Entra ID: `tid` is the tenant, `roles` the app roles, `scp` the scopes.
    pub fn entra() -> Self {
        Self {
            tenant: pointers(&["/tid"]),
            client_id: pointers(&["/azp", "/appid"]),
            ..Self::standard()
        }
    }
}

fn pointers(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

fn first_string(claims: &Value, pointers: &[String]) -> Option<String> {
    pointers
        .iter()
        .find_map(|p| claims.pointer(p).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn strings(claims: &Value, pointers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in pointers.iter().filter_map(|p| claims.pointer(p)) {
        let found: Vec<&str> = match value {
            Value::String(text) => text.split(' ').filter(|s| !s.is_empty()).collect(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for item in found {
            if !out.iter().any(|known| known == item) {
                out.push(item.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn presets_read_the_common_shapes() {
        let standard = json!({"sub": "user-42", "tenant": "tenant-a", "roles": ["viewer"], "scope": "policies:read tickets:read", "client_id": "c1"});
        let p = VerifiedPrincipal::from_claims("https://as", &standard, &ClaimMapping::standard())
            .unwrap();
        assert_eq!(
            (p.subject(), p.tenant(), p.client_id()),
            ("user-42", Some("tenant-a"), Some("c1"))
        );
        assert_eq!(p.roles(), ["viewer"]);
        assert_eq!(p.scopes(), ["policies:read", "tickets:read"]);

        let keycloak =
            json!({"sub": "u", "realm_access": {"roles": ["editor", "hr"]}, "scp": ["a", "b"]});
        let p = VerifiedPrincipal::from_claims("https://kc", &keycloak, &ClaimMapping::keycloak())
            .unwrap();
        assert_eq!(p.roles(), ["editor", "hr"]);
        assert_eq!(p.scopes(), ["a", "b"]);

        let entra =
            json!({"sub": "u", "tid": "t-1", "roles": ["Admin"], "scp": "User.Read", "azp": "app"});
        let p = VerifiedPrincipal::from_claims("https://login", &entra, &ClaimMapping::entra())
            .unwrap();
        assert_eq!((p.tenant(), p.client_id()), (Some("t-1"), Some("app")));
    }

    // See: issue 14. A `groups` claim made a caller an `admin` nobody granted that role.
    #[test]
    fn groups_are_roles_only_when_the_mapping_says_so() {
        let claims = json!({"sub": "u", "roles": ["viewer"], "groups": ["admin"]});
        for mapping in [
            ClaimMapping::standard(),
            ClaimMapping::keycloak(),
            ClaimMapping::entra(),
        ] {
            let p = VerifiedPrincipal::from_claims("https://as", &claims, &mapping).unwrap();
            assert!(!p.roles().contains(&"admin".to_owned()), "{mapping:?}");
        }
        let mut mapping = ClaimMapping::standard();
        mapping.roles.push("/groups".to_owned());
        let p = VerifiedPrincipal::from_claims("https://as", &claims, &mapping).unwrap();
        assert_eq!(p.roles(), ["viewer", "admin"]);
    }

    #[test]
    fn no_subject_no_principal() {
        for claims in [json!({}), json!({"sub": ""}), json!({"sub": 42})] {
            assert!(
                VerifiedPrincipal::from_claims("i", &claims, &ClaimMapping::standard()).is_none()
            );
        }
    }
}
