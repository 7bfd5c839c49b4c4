//! The scope hierarchy: a granted scope also grants every scope it implies, transitively.

use std::collections::{BTreeMap, BTreeSet};

/// Which scopes imply which, closed under transitivity at construction.
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy {
    implied: BTreeMap<String, BTreeSet<String>>,
}

impl ScopeHierarchy {
    /// From direct implications (`"policies:write" => ["policies:read"]`). Cycles are allowed
    /// and mean the scopes are equivalent.
    pub fn new(direct: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        let direct: BTreeMap<String, Vec<String>> = direct.into_iter().collect();
        let implied = direct
            .keys()
            .map(|scope| {
                let mut reached = BTreeSet::new();
                let mut frontier = vec![scope.as_str()];
                while let Some(next) = frontier.pop() {
                    for implied in direct.get(next).into_iter().flatten() {
                        if reached.insert(implied.clone()) {
                            frontier.push(implied);
                        }
                    }
                }
                (scope.clone(), reached)
            })
            .collect();
        Self { implied }
    }

    /// Whether a token holding `granted` holds `needed`.
    pub fn satisfies<'a>(&self, granted: impl IntoIterator<Item = &'a str>, needed: &str) -> bool {
        granted.into_iter().any(|scope| {
            scope == needed
                || self
                    .implied
                    .get(scope)
                    .is_some_and(|implied| implied.contains(needed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy() -> ScopeHierarchy {
        ScopeHierarchy::new([
            ("admin".to_owned(), vec!["policies:write".to_owned()]),
            (
                "policies:write".to_owned(),
                vec!["policies:read".to_owned()],
            ),
            ("a".to_owned(), vec!["b".to_owned()]),
            ("b".to_owned(), vec!["a".to_owned()]),
        ])
    }

    #[test]
    fn implication_is_transitive_and_one_way() {
        let h = hierarchy();
        assert!(h.satisfies(["admin"], "policies:read"));
        assert!(h.satisfies(["policies:write"], "policies:read"));
        assert!(!h.satisfies(["policies:read"], "policies:write"));
        assert!(!h.satisfies([], "policies:read"));
        assert!(h.satisfies(["policies:read"], "policies:read"));
    }

    #[test]
    fn cycles_terminate_and_mean_equivalence() {
        let h = hierarchy();
        assert!(h.satisfies(["a"], "b") && h.satisfies(["b"], "a"));
    }
}
