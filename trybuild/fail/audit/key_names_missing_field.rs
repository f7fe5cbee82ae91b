use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(audit, key = "sequence")]
struct ExecutionAttempt {
    block_number: u64,
}

fn main() {}
