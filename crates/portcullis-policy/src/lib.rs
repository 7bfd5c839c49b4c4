//! Authorization for Portcullis: what a caller may see and do, decided in one place.
//!
//! A [`Catalog`] describes every capability (tool, prompt, resource): its family, the scopes it
//! needs (read through a [`ScopeHierarchy`]), its risk tier, and how a call names its target
//! object and tenant. From it a Cedar schema is generated; the operator's policies are validated
//! strictly against it ([`PolicyEngine::new`]). [`PolicyEngine::authorize`] decides a call and
//! [`PolicyEngine::visible`] a list entry, from the same policies, always with reasons.
//! It knows no HTTP and no JSON-RPC: the gateway names the operation, this crate judges it.

mod budget;
mod catalog;
mod decision;
mod engine;
mod entities;
mod facts;
mod load;
mod matrix;
mod schema;
mod scopes;

pub use catalog::{
    ArgumentType, Capability, CapabilityKind, Catalog, ObjectAttributes, Resolver, RiskTier,
    UTILITY_METHODS,
};
pub use decision::{Authorized, Decision, Pending, Principal, ReasonCode, Reasons, Visibility};
pub use engine::{Call, Credential, PolicyEngine};
pub use load::PolicyError;
pub use matrix::{Approval, MatrixRow, ReviewRow};
pub use scopes::ScopeHierarchy;
