//! `portcullis connections`: who connected their own account at which upstream (`credentials =
//! "user-oauth"`), and disconnecting them. A disconnected person's next call there asks them to
//! connect again; the running gateway reads the store on every call.

use std::{fmt::Write as _, path::Path};

use anyhow::{anyhow, bail};
use portcullis_gateway::{config::Config, connections};

fn open(config: &Path) -> anyhow::Result<connections::Operator> {
    let loaded = Config::load(config)?;
    match connections::open_for_operator(&loaded).map_err(|error| anyhow!(error))? {
        Some(operator) => Ok(operator),
        None => bail!(
            "{}: no upstream has `credentials = \"user-oauth\"`, so nobody connects one",
            config.display()
        ),
    }
}

/// Every connection: issuer, subject, upstream, since when.
pub(crate) async fn list(config: &Path) -> anyhow::Result<String> {
    let listed = open(config)?.list().await.map_err(|error| anyhow!(error))?;
    if listed.is_empty() {
        return Ok("no connections\n".to_owned());
    }
    let mut out = String::from("issuer\tsubject\tupstream\tconnected\n");
    for (issuer, subject, upstream, connected) in listed {
        let since = portcullis_audit::rfc3339_from_millis(connected.saturating_mul(1000));
        let _ = writeln!(out, "{issuer}\t{subject}\t{upstream}\t{since}");
    }
    Ok(out)
}

/// Disconnect `subject` (of `issuer`, if given) from `upstream` (from every one, if not).
pub(crate) async fn revoke(
    config: &Path,
    subject: &str,
    issuer: Option<&str>,
    upstream: Option<&str>,
) -> anyhow::Result<String> {
    let gone = open(config)?
        .revoke(subject, issuer, upstream)
        .await
        .map_err(|error| anyhow!(error))?;
    if gone == 0 {
        bail!("`{subject}` has no such connection");
    }
    Ok(format!(
        "disconnected {gone} connection{} of `{subject}`: their tokens are forgotten, and their next call there asks them to connect again\n",
        if gone == 1 { "" } else { "s" }
    ))
}
