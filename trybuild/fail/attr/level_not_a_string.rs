use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(level = 3)]
struct Event {
    block_number: u64,
}

fn main() {}
