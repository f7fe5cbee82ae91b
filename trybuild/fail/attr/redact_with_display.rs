use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    #[log(redact, display)]
    private_key: String,
}

fn main() {}
