use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(level = "info")]
#[log(level = "error")]
struct Event {
    block_number: u64,
}

fn main() {}
