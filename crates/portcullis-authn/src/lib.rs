//! Authentication for Portcullis, as an OAuth 2.1 resource server.
//!
//! What it is: turning the `Authorization` header of a request into a [`BearerToken`], describing
//! this server to clients ([`ProtectedResourceMetadata`], RFC 9728), verifying JWT access tokens
//! against the issuer's keys ([`JwtVerifier`]) into a [`VerifiedPrincipal`], and telling a caller
//! what is missing ([`Challenge`], the `WWW-Authenticate` header of RFC 6750). Opaque tokens go
//! through RFC 7662 introspection ([`Introspector`]). It never sees JSON-RPC and knows no HTTP
//! framework: the gateway hands it header values and gets back values to send.

mod bearer;
mod challenge;
mod discovery;
mod exchange;
mod introspect;
mod jwt;
mod metadata;
mod principal;
pub mod signing;

pub use bearer::{BearerError, BearerToken, MAX_TOKEN_BYTES};
pub use challenge::{Challenge, ScopeError, Scopes};
pub use discovery::{
    fetch_document, issuer_metadata, jwks_uri, metadata_urls, redirect_policy, token_endpoint,
    trusted_transport,
};
pub use exchange::{IssuedToken, TokenClient, TokenError, TokenTarget};
pub use introspect::{
    ClientAuth, ClientSecret, IntrospectionConfig, Introspector, MAX_INTROSPECTIONS_PER_SECOND,
    read_bounded,
};
pub use jwt::{AuthnError, JwtConfig, JwtVerifier};
pub use metadata::{MetadataError, ProtectedResource, ProtectedResourceMetadata};
pub use principal::{ClaimMapping, VerifiedPrincipal};
