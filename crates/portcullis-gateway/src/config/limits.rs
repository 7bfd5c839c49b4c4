//! `[limits]`: how fast each caller, tenant and source address may send, and how many
//! connections a source may hold before it authenticates.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use serde::Deserialize;

use super::ConfigError;

/// `[limits]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Per caller (issuer and subject), default 200 a second, burst 50.
    pub caller: Option<RawRate>,
    /// Per tenant (issuer and tenant claim), default 1000 a second, burst 250.
    pub tenant: Option<RawRate>,
    /// Requests that fail authentication, per source address (IPv6: per /64), default 20 a
    /// second, burst 100.
    pub unauthenticated: Option<RawRate>,
    /// Connections one source address may hold open before a request on them authenticates,
    /// default 64.
    pub unauthenticated_connections: Option<usize>,
    /// Connections one source address may hold open at all, default 1024.
    pub connections_per_address: Option<usize>,
    /// Requests of one caller the gateway works on at once, default 2; the rest wait their
    /// turn. Time spent waiting on an upstream, the client or a person past 10 ms does not count.
    pub concurrent_per_caller: Option<usize>,
    /// Per caller and tool, by the tool's name as callers see it: `"hr__grant_access" = {
    /// per_second = 1, burst = 3 }`.
    #[serde(default)]
    pub tools: BTreeMap<String, RawRate>,
    /// How long a refusal for a rate (429) is held back before it is sent, default `1s`, at
    /// most `10s`.
    pub refusal_delay: Option<String>,
}

/// A token bucket as written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// Requests a second, sustained.
    pub per_second: u32,
    /// Requests at once after a quiet spell, default twice `per_second`.
    pub burst: Option<u32>,
}

/// A token bucket: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests a second, sustained.
    pub per_second: f64,
    /// Requests at once after a quiet spell.
    pub burst: f64,
}

/// Resolved `[limits]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Per caller.
    pub caller: Rate,
    /// Per tenant.
    pub tenant: Rate,
    /// Per source address, for requests that fail authentication.
    pub unauthenticated: Rate,
    /// Connections per source address not yet authenticated.
    pub unauthenticated_connections: usize,
    /// Connections per source address.
    pub connections_per_address: usize,
    /// Requests of one caller worked on at once.
    pub concurrent_per_caller: usize,
    /// Per caller and tool.
    pub tools: HashMap<String, Rate>,
    /// How long a refusal for a rate is held back.
    pub refusal_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Bursts of a quarter second's worth: a whole second's at once stalled other
            // callers for up to 40 ms in the noisy-neighbour benchmark.
            caller: Rate::new(200, 50),
            tenant: Rate::new(1000, 250),
            unauthenticated: Rate::new(20, 100),
            unauthenticated_connections: 64,
            connections_per_address: 1024,
            concurrent_per_caller: 2,
            tools: HashMap::new(),
            refusal_delay: Duration::from_secs(1),
        }
    }
}

impl Rate {
    fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
        }
    }
}

/// Check and default `[limits]`.
pub(super) fn resolve_limits(raw: RawLimits) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let rate = |key: &str, raw: Option<RawRate>, default: Rate| match raw {
        None => Ok(default),
        Some(raw) => resolve_rate(key, raw),
    };
    let tools = raw
        .tools
        .into_iter()
        .map(|(name, limit)| {
            let rate = resolve_rate(&format!("limits.tools.\"{name}\""), limit)?;
            Ok((name, rate))
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(Limits {
        caller: rate("limits.caller", raw.caller, defaults.caller)?,
        tenant: rate("limits.tenant", raw.tenant, defaults.tenant)?,
        unauthenticated: rate(
            "limits.unauthenticated",
            raw.unauthenticated,
            defaults.unauthenticated,
        )?,
        unauthenticated_connections: match raw.unauthenticated_connections {
            Some(connections) if !(1..=1_000_000).contains(&connections) => {
                return Err(ConfigError::invalid(
                    "limits.unauthenticated_connections",
                    "from 1 (a client needs a connection to sign in on) to 1000000",
                ));
            }
            connections => connections.unwrap_or(defaults.unauthenticated_connections),
        },
        connections_per_address: match raw.connections_per_address {
            Some(connections) if !(1..=1_000_000).contains(&connections) => {
                return Err(ConfigError::invalid(
                    "limits.connections_per_address",
                    "from 1 to 1000000",
                ));
            }
            connections => connections.unwrap_or(defaults.connections_per_address),
        },
        concurrent_per_caller: match raw.concurrent_per_caller {
            Some(at_once) if !(1..=1_000_000).contains(&at_once) => {
                return Err(ConfigError::invalid(
                    "limits.concurrent_per_caller",
                    "from 1 to 1000000",
                ));
            }
            at_once => at_once.unwrap_or(defaults.concurrent_per_caller),
        },
        tools,
        refusal_delay: match super::resolve::duration(
            "limits.refusal_delay",
            raw.refusal_delay,
            1000,
        )? {
            delay if delay <= Duration::from_secs(10) => delay,
            _ => {
                return Err(ConfigError::invalid(
                    "limits.refusal_delay",
                    "at most 10s (a client that honours Retry-After waits about 1s)",
                ));
            }
        },
    })
}

fn resolve_rate(key: &str, raw: RawRate) -> Result<Rate, ConfigError> {
    let burst = raw.burst.unwrap_or(raw.per_second.saturating_mul(2));
    if raw.per_second == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.per_second"),
            "at least 1 request a second (to refuse a tool, write a policy)",
        ));
    }
    if burst < 1 {
        return Err(ConfigError::invalid(
            format!("{key}.burst"),
            "at least 1 request",
        ));
    }
    Ok(Rate::new(raw.per_second, burst))
}
