//! Integration tests of the reference backend, each module one concern:
//!
//! - `identity`: requests without a valid signed assertion are refused, whatever is wrong with it.
//! - `tenancy`: tools and resources see only the asserted tenant, and confidential data only
//!   with `hr`; what a caller may not see answers exactly like what does not exist.
//! - `process`: the real binary over stdio, with its flags and an on-disk database.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test setup fails loudly"
)]

mod identity;
mod process;
mod support;
mod tenancy;
