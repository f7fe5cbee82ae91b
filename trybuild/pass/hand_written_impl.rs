#![deny(warnings)]

use chimera_log_runtime::{emit, get_logger, ContextWriter, Level, LogEvent, Routes};

struct Heartbeat {
    uptime_s: u64,
}

impl LogEvent for Heartbeat {
    const NAME: &'static str = "heartbeat";
    const LEVEL: Level = Level::Debug;
    const ROUTES: Routes = Routes::GENERAL;

    fn write_context(&self, writer: &mut ContextWriter<'_>) {
        writer.field("uptime_s", &self.uptime_s);
        writer.field_display("uptime", &format_args!("{}s", self.uptime_s));
    }
}

fn main() {
    emit!(get_logger("m"), Heartbeat { uptime_s: 5 });
}
