use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(audit)]
struct ExecutionAttempt {
    #[log(skip)]
    block_number: u64,
}

fn main() {}
