use chimera_log_runtime::LogEvent;

// Three independent mistakes: all three are reported in one compilation.
#[derive(LogEvent)]
#[log(level = "loud", colour = "red")]
struct Event {
    #[log(rename = 5)]
    block_number: u64,
}

fn main() {}
