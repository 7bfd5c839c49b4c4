//! `portcullis matrix`, `review` and `explain` on the demo's catalog and policies (the same
//! files `portcullis demo` uses), against golden files. Set `UPDATE_GOLDEN=1` to rewrite them
//! after a deliberate change, and review the diff.

use std::{path::PathBuf, process::Command};

use portcullis_devauth::{DevAuth, DevAuthConfig};
use portcullis_e2e::workspace_bin;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    identities: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(label: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("operator-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The demo's sample identities, as its authorization server writes them.
    DevAuth::open(
        &dir,
        DevAuthConfig {
            issuer: "http://127.0.0.1:9".into(),
            resources: vec!["http://127.0.0.1:9/mcp".into()],
            default_scopes: vec![],
        },
    )
    .unwrap();
    let catalog = std::fs::read_to_string(repo("crates/portcullis/demo/catalog.toml")).unwrap();
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\npublic_url = \"http://127.0.0.1:9/mcp\"\n\n[[auth.issuer]]\nissuer = \"http://127.0.0.1:9\"\n\n\
             [policy]\nfile = {:?}\n\n[[upstream]]\nname = \"demo\"\ncommand = \"unused\"\n\n{catalog}",
            repo("crates/portcullis/demo/policies.cedar")
        ),
    )
    .unwrap();
    Fixture {
        identities: DevAuth::identities_path(&dir),
        dir,
        config,
    }
}

fn run(args: &[&str]) -> String {
    let output = Command::new(workspace_bin("portcullis", "portcullis"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = repo("tests/e2e/golden").join(name);
    #[expect(clippy::disallowed_methods, reason = "a test switch, read in the test")]
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn the_matrix_of_the_demo_matches_its_golden_file_in_every_format() {
    let fixture = fixture("matrix");
    let config = fixture.config.to_str().unwrap();
    for (format, file) in [
        ("md", "matrix.md"),
        ("csv", "matrix.csv"),
        ("html", "matrix.html"),
    ] {
        golden(
            file,
            &run(&["matrix", "--config", config, "--format", format]),
        );
    }
}

// See: issue 18. The matrix said "every decision logged" of a configuration with no audit
// trail at all. It says what the configuration keeps.
#[test]
fn the_matrixs_audit_column_says_what_the_configuration_keeps() {
    let fixture = fixture("matrix-audit");
    let text = std::fs::read_to_string(&fixture.config).unwrap();
    let without = run(&["matrix", "--config", fixture.config.to_str().unwrap()]);
    assert!(without.contains("not recorded (no [audit]"), "{without}");
    std::fs::write(
        &fixture.config,
        format!("{text}\n[audit]\nsqlite = \"audit.db\"\n"),
    )
    .unwrap();
    let with = run(&["matrix", "--config", fixture.config.to_str().unwrap()]);
    let row = |name: &str| {
        with.lines()
            .find(|line| line.starts_with(&format!("| {name} |")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("search_policies").ends_with("every decision recorded (sqlite) |"),
        "{with}"
    );
    assert!(
        row("update_policy").ends_with("recorded (sqlite) before it runs |"),
        "{with}"
    );
}

// See: issue 18. The review showed a permitting policy on a deny, left disabled identities
// out, and wrote Markdown only.
#[test]
fn the_review_is_consistent_includes_every_identity_and_writes_json() {
    let fixture = fixture("review-json");
    let identities = std::fs::read_to_string(&fixture.identities).unwrap();
    std::fs::write(
        &fixture.identities,
        format!("{identities}\n[[identity]]\nsubject = \"gone-a\"\nroles = [\"admin\"]\ndisabled = true\n"),
    )
    .unwrap();
    let output = run(&[
        "review",
        "--config",
        fixture.config.to_str().unwrap(),
        "--identities",
        fixture.identities.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let document: serde_json::Value = serde_json::from_str(&output).unwrap();
    let rows = document["rows"].as_array().unwrap();
    let permits = [
        "everyone-reads-policies",
        "admins-run-the-workspace",
        "editors-change-policies",
    ];
    for row in rows {
        if row["Decision"].as_str().unwrap().starts_with("deny") {
            let policies = row["Policies"].as_str().unwrap();
            assert!(
                !permits.iter().any(|permit| policies.contains(permit)),
                "a deny names no permitting policy: {row}"
            );
        }
    }
    let gone: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|row| row["Identity"] == "gone-a")
        .collect();
    assert!(!gone.is_empty(), "the disabled identity is reviewed");
    assert!(
        gone.iter()
            .all(|row| row["Decision"] == "deny (disabled)" && row["Listed"] == "no")
    );
}

// See: review of issue 18's operator commands. Without `--identities` the review read the
// `[entitlements]` file with a reader of its own: an entry without `scopes` held none (the
// gateway keeps the token's), and an entry of an untrusted issuer was taken.
#[test]
fn the_review_reads_the_entitlements_file_as_the_gateway_does() {
    let fixture = fixture("review-entitlements");
    let entitlements = fixture.dir.join("entitlements.toml");
    std::fs::write(
        &entitlements,
        "[[identity]]\nsubject = \"editor-b\"\ntenant = \"tenant-a\"\nroles = [\"editor\"]\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(&fixture.config).unwrap();
    std::fs::write(
        &fixture.config,
        format!("{config}\n[entitlements]\nfile = \"entitlements.toml\"\n"),
    )
    .unwrap();
    let output = run(&["review", "--config", fixture.config.to_str().unwrap()]);
    let row = output
        .lines()
        .find(|line| line.starts_with("| editor-b | update_policy |"))
        .unwrap_or_default();
    assert!(row.contains("| yes | allow |"), "{output}");
    std::fs::write(
        &entitlements,
        "[[identity]]\nsubject = \"editor-b\"\nissuer = \"https://elsewhere.example\"\nroles = [\"editor\"]\n",
    )
    .unwrap();
    let refused = Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["review", "--config", fixture.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not trusted"));
}

#[test]
fn the_review_of_the_demo_matches_its_golden_file() {
    let fixture = fixture("review");
    let output = run(&[
        "review",
        "--config",
        fixture.config.to_str().unwrap(),
        "--identities",
        fixture.identities.to_str().unwrap(),
    ]);
    golden("review.md", &output);
    // The seed's lines, read off the table rather than trusted to the golden file alone.
    let row = |subject: &str, capability: &str| {
        output
            .lines()
            .find(|line| line.starts_with(&format!("| {subject} | {capability} |")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("user-42", "search_policies").contains("| yes | allow |"),
        "{output}"
    );
    assert!(row("user-42", "update_policy").contains("| no | deny (answered as not found) |"));
    assert!(row("editor-a", "update_policy").contains("| yes | allow |"));
}

#[test]
fn explain_says_why_a_viewer_cannot_update_a_policy() {
    let fixture = fixture("explain");
    let output = run(&[
        "explain",
        "--config",
        fixture.config.to_str().unwrap(),
        "--identities",
        fixture.identities.to_str().unwrap(),
        "--as",
        "user-42",
        "tools/call",
        "update_policy",
        r#"{"id":"POL-A1"}"#,
    ]);
    assert!(output.contains("listed:      no"), "{output}");
    assert!(
        output.contains("decision:    deny (answered as not found)"),
        "{output}"
    );
    assert!(output.contains("reasons:     no_permit"), "{output}");
    let editor = run(&[
        "explain",
        "--config",
        fixture.config.to_str().unwrap(),
        "--identities",
        fixture.identities.to_str().unwrap(),
        "--as",
        "editor-a",
        "--scope",
        "policies:read",
        "tools/call",
        "update_policy",
        r#"{"id":"POL-A1"}"#,
    ]);
    assert!(
        editor.contains("decision:    step-up (policies:write)"),
        "{editor}"
    );
    assert!(
        editor.contains("policies:    editors-change-policies"),
        "{editor}"
    );
}

#[test]
fn policy_diff_names_who_gains_and_loses_what() {
    let fixture = fixture("diff");
    let policies = std::fs::read_to_string(repo("crates/portcullis/demo/policies.cedar")).unwrap();
    // The candidate takes update_policy from editors and gives hr send_email.
    let candidate = policies
        .replace(
            "permit (principal in Role::\"editor\", action == Action::\"tool:update_policy\", resource);",
            "permit (principal in Role::\"admin\", action == Action::\"tool:update_policy\", resource);",
        )
        + "\n@id(\"hr-sends-email\")\n@approval(\"required\")\n\
           permit (principal in Role::\"hr\", action == Action::\"tool:send_email\", resource);\n";
    assert_ne!(candidate, policies, "the candidate differs");
    let against = fixture.dir.join("candidate.cedar");
    std::fs::write(&against, &candidate).unwrap();
    let args = |against: &std::path::Path| {
        run(&[
            "policy",
            "diff",
            "--config",
            fixture.config.to_str().unwrap(),
            "--against",
            against.to_str().unwrap(),
            "--identities",
            fixture.identities.to_str().unwrap(),
        ])
    };
    let output = args(&against);
    let lines: Vec<&str> = output.lines().filter(|l| l.contains(" -> ")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("editor-a loses update_policy") && l.contains("allow -> deny")),
        "{output}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("hr-a gains send_email")),
        "{output}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("user-42 ")),
        "user-42's decisions do not change: {output}"
    );
    // The same policies: nothing changes. Invalid ones: refused with file and line.
    let same = fixture.dir.join("same.cedar");
    std::fs::write(&same, &policies).unwrap();
    assert!(args(&same).contains("No identity gains or loses anything."));
    let broken = fixture.dir.join("broken.cedar");
    std::fs::write(
        &broken,
        "permit (principal, action == Action::\"tool:nope\", resource);",
    )
    .unwrap();
    let refused = Command::new(workspace_bin("portcullis", "portcullis"))
        .args([
            "policy",
            "diff",
            "--config",
            fixture.config.to_str().unwrap(),
            "--against",
        ])
        .arg(&broken)
        .arg("--identities")
        .arg(&fixture.identities)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("broken.cedar:1"),
        "{said}"
    );
}

#[test]
fn simulate_role_change_walks_the_seed_exercise() {
    let fixture = fixture("simulate");
    let output = run(&[
        "simulate",
        "role-change",
        "--config",
        fixture.config.to_str().unwrap(),
        "--identities",
        fixture.identities.to_str().unwrap(),
        "--as",
        "editor-a",
        "--remove",
        "editor",
    ]);
    let steps: Vec<&str> = output.lines().collect();
    assert_eq!(steps.len(), 6, "{output}");
    assert!(
        steps[0].contains("editor-a (roles editor) lists its tools:")
            && steps[0].contains("update_policy"),
        "{output}"
    );
    assert!(
        steps[2].contains("list_changed to editor-a's sessions only (lost: update_policy"),
        "{output}"
    );
    assert!(!steps[3].contains("update_policy"), "{output}");
    assert!(
        steps[4].contains(
            "calls update_policy with its still-unexpired token: deny (answered as not found)"
        ),
        "{output}"
    );
    assert!(
        steps[5].contains("audit: decision=deny subject=editor-a capability=update_policy"),
        "{output}"
    );
}
