use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
struct Event {
    #[log(display)]
    peers: Vec<String>,
}

fn main() {}
