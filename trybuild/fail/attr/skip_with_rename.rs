use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    #[log(skip, rename = "x")]
    internal: u64,
}

fn main() {}
