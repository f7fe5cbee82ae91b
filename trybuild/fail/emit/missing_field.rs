use chimera_log_runtime::{emit, get_logger, LogEvent};

#[derive(LogEvent)]
#[log(level = "warning")]
struct StateDivergence<'a> {
    protocol: &'a str,
    divergence_bps: u32,
    block_number: u64,
}

fn main() {
    let logger = get_logger("state_engine");
    emit!(logger, StateDivergence { protocol: "moonwell", divergence_bps: 150 });
}
