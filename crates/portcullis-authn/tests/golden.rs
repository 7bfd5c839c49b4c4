//! Golden files: the exact bytes clients see for the metadata document and every challenge.
//! `UPDATE_GOLDEN=1 cargo test -p portcullis-authn` rewrites them; review the diff.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a golden-file helper fails loudly"
)]

use std::path::PathBuf;

use portcullis_authn::{Challenge, ProtectedResource, ProtectedResourceMetadata, Scopes};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    #[expect(
        clippy::disallowed_methods,
        reason = "a test knob, read in the test only"
    )]
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    if update {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {name} differs");
}

#[test]
fn metadata_document_and_challenges_match_their_golden_files() {
    let resource = ProtectedResource::new("https://mcp.example.com/mcp").unwrap();
    let scopes = Scopes::new(["policies:read", "tickets:write", "offline_access"]).unwrap();
    let document = ProtectedResourceMetadata::new(
        &resource,
        vec!["https://auth.example.com".to_owned()],
        &scopes,
        "Portcullis demo workspace",
    );
    check(
        "protected-resource-metadata.json",
        &(serde_json::to_string_pretty(&document).unwrap() + "\n"),
    );

    let url = resource.metadata_url();
    let minimal = Scopes::new(["policies:read"]).unwrap();
    let all = Scopes::new(["policies:read", "policies:write"]).unwrap();
    let challenges = [
        ("missing", Challenge::Missing { scopes: minimal }),
        ("invalid_token", Challenge::InvalidToken),
        (
            "insufficient_scope",
            Challenge::InsufficientScope { scopes: all },
        ),
    ];
    let text: String = challenges
        .iter()
        .map(|(label, challenge)| {
            format!(
                "{label}: {} WWW-Authenticate: {}\n",
                challenge.status(),
                challenge.header_value(&url)
            )
        })
        .collect();
    check("challenges.txt", &text);
}
