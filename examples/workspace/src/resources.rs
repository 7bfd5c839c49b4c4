//! Resources: `policy://{tenant}/{id}` and `hr-report://{tenant}/{id}`, under the same tenant and
//! role rules as the tools.

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use crate::{
    identity::Caller,
    store::{Store, StoreError},
};

const POLICY_SCHEME: &str = "policy";
const HR_REPORT_SCHEME: &str = "hr-report";
const MIME_TYPE: &str = "text/markdown";

/// The URI templates, as `resources/templates/list` shows them.
pub(crate) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{POLICY_SCHEME}://{{tenant}}/{{id}}"), "policy")
            .with_title("Policy document")
            .with_description("A policy document of your tenant; confidential ones need `hr`.")
            .with_mime_type(MIME_TYPE),
        ResourceTemplate::new(
            format!("{HR_REPORT_SCHEME}://{{tenant}}/{{id}}"),
            "hr-report",
        )
        .with_title("HR report")
        .with_description("An HR report of your tenant (confidential: needs `hr`).")
        .with_mime_type(MIME_TYPE),
    ]
}

/// The resources `caller` may read: its tenant's visible policies, and HR reports for `hr`.
pub(crate) fn list(store: &Store, caller: &Caller) -> Result<Vec<Resource>, StoreError> {
    let policies = store
        .search_policies(caller, "")?
        .into_iter()
        .map(|policy| {
            Resource::new(uri(POLICY_SCHEME, &policy.tenant, &policy.id), policy.id)
                .with_title(policy.title)
                .with_mime_type(MIME_TYPE)
        });
    let reports = store.hr_reports(caller)?.into_iter().map(|report| {
        Resource::new(uri(HR_REPORT_SCHEME, &report.tenant, &report.id), report.id)
            .with_title(report.title)
            .with_mime_type(MIME_TYPE)
    });
    Ok(policies.chain(reports).collect())
}

/// The contents of `uri` for `caller`; `None` when there is no such resource *or* `caller` may
/// not see it, which the caller cannot tell apart.
pub(crate) fn read(
    store: &Store,
    caller: &Caller,
    uri: &str,
) -> Result<Option<ReadResourceResult>, StoreError> {
    let Some((scheme, tenant, id)) = parse(uri) else {
        return Ok(None);
    };
    // SECURITY: the tenant in the URI is the caller's claim about the object, not an authority;
    // a URI naming another tenant is answered as missing, and the lookup below binds the
    // asserted tenant, never the URI's.
    if tenant != caller.tenant() {
        return Ok(None);
    }
    let document = match scheme {
        POLICY_SCHEME => store
            .policy(caller, id)?
            .map(|policy| (policy.title, policy.body)),
        HR_REPORT_SCHEME => store
            .hr_report(caller, id)?
            .map(|report| (report.title, report.body)),
        _ => None,
    };
    Ok(document.map(|(title, body)| {
        let text = format!("# {title}\n\n{body}\n");
        ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type(MIME_TYPE),
        ])
    }))
}

fn uri(scheme: &str, tenant: &str, id: &str) -> String {
    format!("{scheme}://{tenant}/{id}")
}

/// `scheme://tenant/id` split in three; `None` for anything else.
fn parse(uri: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    let (tenant, id) = rest.split_once('/')?;
    if tenant.is_empty() || id.is_empty() || id.contains('/') {
        return None;
    }
    Some((scheme, tenant, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_tenant_and_id_parse() {
        assert_eq!(
            parse("policy://tenant-a/POL-A1"),
            Some(("policy", "tenant-a", "POL-A1"))
        );
        assert_eq!(parse("policy://tenant-a/"), None);
        assert_eq!(parse("policy://tenant-a/POL-A1/x"), None);
        assert_eq!(parse("policy:tenant-a/POL-A1"), None);
        assert_eq!(parse("policy:///POL-A1"), None);
    }
}
