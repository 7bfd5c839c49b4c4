//! One audit record, version 1. Field order is the canonical order: the chain hashes the JSON
//! of a record exactly as serialised here.

use serde::{Deserialize, Serialize};

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied (by policy, or refused before a decision: no or a bad token, a stolen session).
    Deny,
    /// The caller must re-authorize with more scope.
    StepUp,
    /// A person must approve.
    AskApproval,
    /// A person approved this exact call.
    Approved,
    /// A person declined, cancelled or did not answer in time.
    Declined,
    /// Something failed; the request was refused.
    Error,
}

impl Decision {
    /// The word records and filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::StepUp => "step-up",
            Self::AskApproval => "ask-approval",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Error => "error",
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Record format version.
    pub v: u32,
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The correlation id the caller was given (or that the logs carry).
    pub correlation: String,
    /// Protocol era of the request, if known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub era: Option<String>,
    /// The 2025-11-25 session id, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<String>,
    /// Token issuer, once authenticated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    /// Subject, once authenticated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    /// Tenant, if the token names one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant: Option<String>,
    /// OAuth client.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// The source address (IPv6: its /64) of a request refused before authentication.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// HTTP method and path for requests refused before parsing, else the MCP method.
    pub method: String,
    /// The capability called, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub capability: Option<String>,
    /// The target object, if the call names one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// SHA-256 of the canonical arguments (object keys sorted), hex; never the arguments.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub arguments_digest: Option<String>,
    /// The arguments themselves, only where `[audit] raw_arguments` allows, redacted field by
    /// field.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub arguments: Option<serde_json::Value>,
    /// The decision.
    pub decision: Decision,
    /// Ids of the determining policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Reason codes.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The policy set version.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_version: Option<String>,
    /// The approval this record is about (`ap-…`): requested, approved, declined or refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent: Option<String>,
    /// The HTTP status the caller got, when the refusal was at the HTTP level.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// For the record of a forwarded call's outcome: the upstream that served it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream: Option<String>,
    /// Which credential the request carried there (`gateway`, `token-exchange`), never the
    /// credential itself.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<String>,
    /// For the record of a forwarded call's outcome: `ok`, `tool-error` or `error`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<String>,
    /// For the record of a forwarded call's outcome: milliseconds the upstream took.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<u64>,
    /// For a shadow record: what the candidate policies (`[policy] shadow`) would have decided
    /// where they disagree with the set in force; never enforced.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub shadow: bool,
    /// For the record of a filtered list: how many items the caller was shown.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub listed: Option<u32>,
    /// For the record of a filtered list: how many items policy withheld from it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub withheld: Option<u32>,
    /// For a counted refusal: how many refusals of its kind (reason, status, and caller or
    /// source) in one window this record stands for; they were counted, not each written.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repeats: Option<u64>,
    /// For a record about an upstream's definition (pinning): the digest of the definition
    /// offered now.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub definition: Option<String>,
    /// For a record about an upstream's definition: the digest of the one pinned before.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_definition: Option<String>,
}

impl AuditRecord {
    /// A record of `decision` on `method`, now, with everything else empty.
    pub fn new(correlation: &str, method: &str, decision: Decision) -> Self {
        Self {
            v: 1,
            time: now_rfc3339(),
            correlation: correlation.to_owned(),
            era: None,
            session: None,
            issuer: None,
            subject: None,
            tenant: None,
            client_id: None,
            source: None,
            method: method.to_owned(),
            capability: None,
            target: None,
            arguments_digest: None,
            arguments: None,
            decision,
            policies: Vec::new(),
            reasons: Vec::new(),
            policy_version: None,
            consent: None,
            status: None,
            upstream: None,
            credential: None,
            outcome: None,
            latency_ms: None,
            shadow: false,
            listed: None,
            withheld: None,
            repeats: None,
            definition: None,
            previous_definition: None,
        }
    }

    /// The canonical form the chain hashes.
    pub(crate) fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// SHA-256, hex, of `value` in canonical JSON (object keys sorted at every level), so that the
/// digest of the same arguments is the same whatever order a client wrote them in.
pub fn arguments_digest(value: &serde_json::Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(*key) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed from the civil calendar (no time zone data).
pub fn now_rfc3339() -> String {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_from_millis(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// `millis` since the Unix epoch as RFC 3339 UTC with milliseconds, as records carry it.
pub fn rfc3339_from_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        millis.rem_euclid(1000)
    )
}

/// An RFC 3339 time (`2026-11-26T13:00:00Z`, fractions and offsets allowed) as milliseconds
/// since the Unix epoch; `None` for anything else.
pub fn rfc3339_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month)
        || !(1..=days_in_month).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = fraction[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = first3.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |range: std::ops::Range<usize>| {
                rest.get(range.clone())
                    .filter(|part| part.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|part| part.parse::<i64>().ok())
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_offsets_and_fractions_and_print_back() {
        let at = rfc3339_millis("2026-11-26T13:00:00Z").unwrap();
        assert_eq!(rfc3339_from_millis(at), "2026-11-26T13:00:00.000Z");
        assert_eq!(rfc3339_millis("2026-11-26T14:00:00+01:00"), Some(at));
        assert_eq!(rfc3339_millis("2026-11-26T13:00:00.5Z"), Some(at + 500));
        assert_eq!(rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-26T13:00:00",
        ] {
            assert_eq!(rfc3339_millis(bad), None, "{bad}");
        }
        let now = now_rfc3339();
        assert_eq!(rfc3339_from_millis(rfc3339_millis(&now).unwrap()), now);
    }

    #[test]
    fn argument_digests_ignore_key_order_and_nothing_else() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = serde_json::json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        let c = serde_json::json!({"a": {"x": "s", "y": [2, 1]}, "b": 1});
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        assert_ne!(arguments_digest(&a), arguments_digest(&c));
    }

    #[test]
    fn time_is_rfc_3339_utc() {
        let time = now_rfc3339();
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    }
}
