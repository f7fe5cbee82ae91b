use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(level = "fatal")]
struct Event {
    block_number: u64,
}

fn main() {}
