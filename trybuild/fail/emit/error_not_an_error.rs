use chimera_log_runtime::{emit, get_logger, LogEvent};

#[derive(LogEvent)]
struct RpcFailed {
    code: u32,
}

fn main() {
    let reason = "timed out";
    emit!(get_logger("rpc"), RpcFailed { code: 7 }, error = &reason);
}
