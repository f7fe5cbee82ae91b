//! A record's header, and the writer's [`Encoder`], which turns records back into the lines the caller would have written.
//!
//! Record: the event type's id (`u32`, see [`Replay`]), the level (`u8`), the emit's time
//! (`i64` seconds, `u32` nanoseconds), the logger's module name as the line writes it (length,
//! then bytes), then the fields in the format of `record.rs`.

use super::record::{Capture, Replayer, Scalar};
use super::replay::{Replay, REGISTERED};
use crate::event::Level;
use crate::json::{encode_line, ContextWriter, Envelope, EventName, UnixTime};

/// Appends the record of one event: its header, then what `capture` writes.
#[inline]
pub(crate) fn write_record(
    buf: &mut Vec<u8>,
    replay: &'static Replay,
    level: Level,
    time: UnixTime,
    module_json: &str,
    capture: impl FnOnce(&mut Capture<'_>),
) {
    let mut fields = Capture::new(buf);
    fields.scalar(replay.id());
    fields.scalar(level as u8);
    fields.scalar(time.secs);
    fields.scalar(time.nanos);
    fields.str(module_json);
    capture(&mut fields);
}

/// The bytes [`write_record`] writes for an event whose capture writes `fields` bytes.
#[inline]
pub(crate) fn record_len(module_json: &str, fields: usize) -> usize {
    size_of::<u32>()
        + size_of::<u8>()
        + size_of::<i64>()
        + size_of::<u32>()
        + size_of::<usize>()
        + module_json.len()
        + fields
}

/// The writer thread's side: turns records into lines, with its own copy of the registry.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    known: Vec<&'static Replay>,
}

impl Encoder {
    /// The replay of type `id`, looking in the registry for a type not seen before.
    fn replay(&mut self, id: u32) -> Option<&'static Replay> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        if index >= self.known.len() {
            self.known.clone_from(&REGISTERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
        self.known.get(index).copied()
    }

    /// Appends the line `record` stands for, exactly as the caller would have encoded it.
    pub(crate) fn encode(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let mut fields = Replayer::new(record);
        let id = fields.scalar::<u32>();
        let level = level_from(fields.scalar::<u8>());
        let time = UnixTime { secs: fields.scalar(), nanos: fields.scalar() };
        let module_json = fields.str();
        let Some(replay) = self.replay(id) else {
            // Only a record this process did not write could name an unknown type.
            return;
        };
        let event = EventName::known(replay.name, replay.plain);
        let envelope = Envelope { time, level, module_json, event, exception: None, audit_key: None, trace: None };
        encode_line(out, envelope, |buf| {
            let mut writer = ContextWriter::open(buf);
            (replay.context)(&mut fields, &mut writer);
            writer.finish();
        });
    }
}

fn level_from(byte: u8) -> Level {
    Level::ALL.get(usize::from(byte)).copied().unwrap_or(Level::Info)
}

// `u8` and the others are captured through `Scalar`; the header uses the same format.
const _: () = assert!(<u32 as Scalar>::SIZE == 4 && <i64 as Scalar>::SIZE == 8);
