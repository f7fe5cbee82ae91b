use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event(u64, String);

fn main() {}
