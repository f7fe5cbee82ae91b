use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(key = "sequence")]
struct Event {
    sequence: u64,
}

fn main() {}
