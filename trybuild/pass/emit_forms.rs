#![deny(warnings)]

use chimera_log_runtime::{emit, emit_async, get_logger, Emitted, Logger, LogEvent};

#[derive(LogEvent)]
#[log(level = "error", route = "rpc")]
struct RpcFailed<'a> {
    provider: &'a str,
}

fn by_reference(logger: &Logger, event: &RpcFailed<'_>) {
    emit!(logger, event);
}

fn main() {
    let logger = get_logger("rpc");
    let io = std::io::Error::other("timeout");
    emit!(logger, RpcFailed { provider: "quicknode" });
    emit!(logger, RpcFailed { provider: "quicknode" },);
    emit!(&logger, RpcFailed { provider: "quicknode" }, error = &io);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(io);
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &*boxed);
    let sendable: Box<dyn std::error::Error + Send> = Box::new(std::io::Error::other("reset"));
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &*sendable);
    let plain: Box<dyn std::error::Error> = Box::new(std::io::Error::other("closed"));
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &*plain);
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &plain);
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &sendable);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::other("eof"));
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &boxed);
    by_reference(&logger, &RpcFailed { provider: "alchemy" });
    let emitted: Emitted = emit_async!(logger, RpcFailed { provider: "quicknode" });
    drop(emitted);
    drop(emit_async!(&logger, RpcFailed { provider: "quicknode" }, error = &boxed,));
    drop(emit_async!(logger, RpcFailed { provider: "quicknode" }, error = &*plain));
}
