//! A deprecated event type, and deprecated fields, derive without a warning in the generated
//! code (as serde's and thiserror's derives do), under `deny(deprecated)`.
#![deny(deprecated, warnings)]

use chimera_log_runtime::{emit, get_logger, LogEvent};

#[deprecated = "use Submitted2"]
#[derive(LogEvent)]
pub struct Submitted<'a> {
    pub tx_hash: &'a str,
}

#[derive(LogEvent)]
pub struct Priced {
    #[deprecated = "use price_usd"]
    pub price: u64,
    #[deprecated]
    #[log(display)]
    pub venue: &'static str,
    pub price_usd: u64,
}

#[allow(deprecated)]
fn main() {
    let logger = get_logger("m");
    emit!(logger, Submitted { tx_hash: "0x1" });
    emit!(logger, Priced { price: 1, venue: "uni", price_usd: 1 });
}
