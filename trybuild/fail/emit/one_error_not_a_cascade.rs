use chimera_log_runtime::{emit, get_logger, LogEvent};

// The bad level is the only error: the stub impl keeps `emit!` below from failing too.
#[derive(LogEvent)]
#[log(level = "verbose")]
struct Event {
    block_number: u64,
}

fn main() {
    emit!(get_logger("m"), Event { block_number: 1 });
}
