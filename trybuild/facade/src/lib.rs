//! Events defined the way users define them: with `chimera-log` as the only dependency, so the
//! derive's generated code must name `::chimera_log`, never the runtime crate.

use chimera_log::LogEvent;

/// An audit event with every field attribute.
#[derive(Debug, LogEvent)]
#[log(audit, level = "warning")]
pub struct Submitted<'a> {
    /// Where it stands on the chain.
    pub block_number: u64,
    /// Renamed in the line.
    #[log(rename = "tx")]
    pub tx_hash: &'a str,
    /// Never written as it is.
    #[log(redact)]
    pub signer_key: &'a str,
    /// Written through `Display`.
    #[log(display)]
    pub endpoint: std::net::Ipv4Addr,
}

/// A unit event.
#[derive(Debug, LogEvent)]
pub struct Heartbeat;
