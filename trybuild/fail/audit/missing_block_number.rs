use chimera_log_runtime::LogEvent;

#[derive(LogEvent)]
#[log(audit)]
struct ExecutionAttempt {
    protocol: String,
    borrower: String,
}

fn main() {}
