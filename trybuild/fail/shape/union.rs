use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
union Event {
    a: u32,
    b: f32,
}

fn main() {}
