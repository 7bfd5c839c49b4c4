//! Form and query parameters (RFC 6749 §3.1: no parameter may appear twice, except
//! `resource`, which RFC 8707 lets repeat; a repeated one is refused later, with its own error).

use std::collections::HashMap;

use crate::error::OAuthError;

pub(crate) struct Params {
    single: HashMap<String, String>,
    resources: Vec<String>,
}

impl Params {
    pub(crate) fn parse(text: &[u8]) -> Result<Self, OAuthError> {
        let mut single = HashMap::new();
        let mut resources = Vec::new();
        for (name, value) in url::form_urlencoded::parse(text) {
            if name == "resource" {
                resources.push(value.into_owned());
            } else if single
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` appears more than once"
                )));
            }
        }
        Ok(Self { single, resources })
    }

    /// The parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.single
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required")))
    }

    pub(crate) fn resources(&self) -> Vec<&str> {
        self.resources.iter().map(String::as_str).collect()
    }

    /// Every parameter, for carrying a request through the login form.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let resources = self.resources.iter().map(|r| ("resource", r.as_str()));
        self.single
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(resources)
    }
}
