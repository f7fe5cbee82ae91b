use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    user: String,
    #[log(rename = "user")]
    account: String,
}

fn main() {}
