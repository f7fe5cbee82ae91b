use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    #[log(hide)]
    secret: String,
}

fn main() {}
