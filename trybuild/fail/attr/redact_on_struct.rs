use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(redact)]
struct Event {
    private_key: String,
}

fn main() {}
