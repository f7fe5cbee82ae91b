use chimera_log_runtime::LogEvent;

struct Opaque;

#[derive(LogEvent)]
struct Event {
    block_number: u64,
    payload: Opaque,
}

fn main() {}
