use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(levle = "warning")]
struct Event {
    block_number: u64,
}

fn main() {}
