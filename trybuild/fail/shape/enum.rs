use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
enum Event {
    Started,
    Stopped,
}

fn main() {}
