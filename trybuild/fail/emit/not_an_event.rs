use chimera_log_runtime::{emit, get_logger};

struct Plain {
    block_number: u64,
}

fn main() {
    emit!(get_logger("m"), Plain { block_number: 1 });
}
