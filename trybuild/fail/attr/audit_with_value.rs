use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(audit = "yes")]
struct Event {
    block_number: u64,
}

fn main() {}
