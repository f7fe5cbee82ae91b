use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    #[log(audit)]
    block_number: u64,
}

fn main() {}
