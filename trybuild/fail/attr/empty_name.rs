use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(name = "")]
struct Event {
    block_number: u64,
}

fn main() {}
