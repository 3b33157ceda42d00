//! warren's ingress: routes from workloads' `domains` to a running nginx.
//!
//! The crate is built from these parts, each with its own module:
//!
//! - [`route`]: the data model: a [`Route`] per workload domain and path, its [`Target`]
//!   (an upstream address, a static directory, or a 503 page for a stopped workload) and
//!   [`Tls`] choice, and the proxy-wide [`IngressOptions`].
//! - [`validate`] and [`render`]: pure functions. [`validate()`] refuses anything that could not
//!   be written safely into nginx syntax and conflicting routes (one domain and path claimed by
//!   two workloads); [`render()`] turns a route set into a complete, deterministic nginx.conf
//!   for a prefix-style nginx (`nginx -p PREFIX -c FILE`).
//! - [`nginx`]: the only part running programs. A [`Validator`] runs `nginx -t` on a new file
//!   before it atomically replaces the live one, and reloads nginx gracefully, through a
//!   [`warren_exec::Executor`].
//! - [`platform`]: what differs between OSes in running the ingress's nginx (binary, where
//!   the configuration is inside the routing workload, how it reloads), pure.
//! - [`tls`]: warren's local certificate authority ([`LocalCa`]), which issues and renews the
//!   certificates of [`Tls::Local`] domains, and the check of operator-supplied certificate
//!   and key pairs ([`check_operator_pair`]). File I/O only.
//!
//! Invariants: rendering does no I/O and does not depend on route order; a configuration
//! nginx rejects never replaces the live one.

pub mod nginx;
pub mod platform;
pub mod render;
pub mod route;
pub mod tls;
pub mod validate;

pub use nginx::{prepare_prefix, Installed, NginxError, Validator, DEFAULT_NGINX};
pub use platform::{Platform, Reload};
pub use render::{render, render_checked};
pub use route::{IngressOptions, Route, Target, Tls};
pub use tls::{
    cert_file_stem, cert_not_after, check_operator_pair, renew_at, LocalCa, TlsError, CA_VALIDITY,
    LEAF_VALIDITY, RENEW_BEFORE,
};
pub use validate::{validate, validate_options, ValidationError};
