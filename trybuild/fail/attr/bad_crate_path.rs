use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(crate = "not a path")]
struct Event {
    block_number: u64,
}

fn main() {}
