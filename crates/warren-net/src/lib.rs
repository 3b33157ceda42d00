//! warren's networking building blocks for bridge-mode workloads.
//!
//! - [`ipam`]: the pure IPv4 address allocator over the bridge subnet;
//! - [`ports`]: published-port syntax, conflict checks, and the host's listening sockets;
//! - [`ruleset`]: the neutral ruleset (published ports, outbound NAT, forwarding for the
//!   bridge subnet) that both packet-filter renderers take;
//! - [`nft`]: the pure renderer of warren's own nftables table and the commands that apply,
//!   remove and probe it;
//! - [`pf`]: the FreeBSD counterpart of `nft`: warren's pf anchor, rendered from the same ruleset,
//!   and the parser of what `pfctl` shows back (drift detection);
//! - [`bridge`]: the bridge and per-workload veth pairs;
//! - [`freebsd`]: FreeBSD's bridge, forwarding, external interface and the pf anchor's
//!   load-when-changed (`ifconfig`, `sysctl`, `route`, `pfctl` through the executor);
//! - [`sysctl`]: kernel parameters, changed only when they differ.
//!
//! Invariants: parsers and renderers do no I/O and compile everywhere; every command goes through
//! [`warren_exec::Executor`]; the functions that run Linux tools (`ip`, `nft`, `nsenter`,
//! `sysctl`) exist only on Linux; warren touches only its own nftables table and pf anchor.

pub mod bridge;
pub mod freebsd;
pub mod ipam;
pub mod nft;
pub mod pf;
pub mod ports;
pub mod ruleset;
pub mod sysctl;
