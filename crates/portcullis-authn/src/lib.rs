//! Authentication for Portcullis, as an OAuth 2.1 resource server.
//!
//! What it is: turning the `Authorization` header of a request into a [`BearerToken`], describing
//! this server to clients ([`ProtectedResourceMetadata`], RFC 9728) and telling a caller what is
//! missing ([`Challenge`], the `WWW-Authenticate` header of RFC 6750). What it is not (yet): token
//! verification; the JWT/JWKS and introspection verifiers that produce a verified principal come
//! next. It never sees JSON-RPC and knows no HTTP framework: the gateway hands it header values
//! and gets back values to send.

mod bearer;
mod challenge;
mod metadata;

pub use bearer::{BearerError, BearerToken, MAX_TOKEN_BYTES};
pub use challenge::{Challenge, ScopeError, Scopes};
pub use metadata::{MetadataError, ProtectedResource, ProtectedResourceMetadata};
