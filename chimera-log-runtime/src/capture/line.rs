//! One captured event as the bytes of its `context` and its name: the fields visited once, each
//! value written as it is read, under keys worked out once per callsite and kept per thread.
//!
//! The bytes are those the capture has always written (a test in `tests/tests/capture.rs` holds
//! them): a `&str` escaped as serde_json escapes it, numbers and bools as serde_json writes them,
//! `Debug`, `Display` and error values as escaped `Display` text, the `message` field as the
//! event's name, a `log` record's `log.*` fields left out, and a key that repeats renamed by the
//! rule of `json::rename_repeats` over the written fields and the span stack's key. This module
//! encodes and nothing else: which events are written, the span stack and the envelope are the
//! layer's.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_log::NormalizeEvent;

use crate::json::{
    float_into, push_short, quoted_as_serde_json_into, quoted_into, rename_repeats, write_display_string,
};
use crate::levels::Threshold;
use crate::write::dispatch::Dispatcher;

/// Per-thread buffers of the capture path, and the callsites it has written events of.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) line: Vec<u8>,
    /// The target of a `log` record, quoted (other events' is their callsite's).
    pub(super) module: Vec<u8>,
    /// The event's name: its `message`, as `tracing` gives it (escaped when the line is written).
    pub(super) message: String,
    pub(super) context: Vec<u8>,
    pub(super) callsites: Callsites,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers; a fresh set when they are in use (an event logged from
/// inside a field's `Debug`) or gone (a thread-local's destructor logging at thread exit).
/// Buffers a huge event grew are not kept.
pub(super) fn with_scratch(f: impl FnOnce(&mut Scratch)) {
    let mut f = Some(f);
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut scratch) = cell.try_borrow_mut() {
            (f.take().expect("called once"))(&mut scratch);
            if scratch.line.capacity() > 64 * 1024 || scratch.context.capacity() > 64 * 1024 {
                let callsites = std::mem::take(&mut scratch.callsites);
                *scratch = Scratch { callsites, ..Scratch::default() };
            }
        }
    });
    if let Some(f) = f {
        f(&mut Scratch { callsites: Callsites::with_slots(1), ..Scratch::default() });
    }
}

/// What the line needs of a callsite, the same for each of its events.
pub(super) struct Callsite {
    /// The callsite's metadata, by address: `tracing` tells callsites apart the same way
    /// (`callsite::Identifier`), and a callsite's metadata is `'static`, never freed.
    address: usize,
    /// Each field's part in the line, by the field's index.
    fields: Vec<Part>,
    /// The key of the span stack: `span`, or the name the rule gives it when a field is called
    /// `span`.
    pub(super) stack_key: String,
    /// The callsite's target, quoted: a `log` record's `module` is its own target instead.
    pub(super) module_json: String,
    /// The callsite is tracing-log's, for `log` records: their metadata is their own.
    pub(super) bridged: bool,
    /// The minimum level of the callsite's target and the epoch of the levels it was read from
    /// (`LiveLevels`; 0: not read yet).
    module_level: Cell<(u64, Threshold)>,
}

/// A field's part in the line.
enum Part {
    /// The event's name.
    Message,
    /// Not written: a `log.*` field of a `log` record bridged by tracing-log (target, module path,
    /// file, line).
    Left,
    /// A member of the context: its key, escaped and quoted, with the `:` (`"key":`).
    Member(Box<[u8]>),
}

impl Callsite {
    fn new(metadata: &'static Metadata<'static>, bridged: bool) -> Callsite {
        let fields = metadata.fields();
        // The context's keys, known before a value is written: the written fields', then the
        // span stack's; renamed where one repeats, by position among them.
        let written: Vec<&'static str> =
            fields.iter().map(|field| field.name()).filter(|name| is_written(name, bridged)).collect();
        let mut keys: Vec<&str> = written.clone();
        keys.push("span");
        let mut renamed = rename_repeats(&keys);
        let stack_key = match renamed.last() {
            Some((at, key)) if *at == written.len() => String::from_utf8_lossy(key).into_owned(),
            _ => "span".to_owned(),
        };
        renamed.retain(|(at, _)| *at < written.len());
        let mut at = 0;
        let parts = fields
            .iter()
            .map(|field| match field.name() {
                "message" => Part::Message,
                name if !is_written(name, bridged) => Part::Left,
                name => {
                    let key = renamed.iter().find(|(renamed, _)| *renamed == at).map(|(_, key)| &key[..]);
                    at += 1;
                    Part::Member(member_key(&String::from_utf8_lossy(key.unwrap_or(name.as_bytes()))))
                }
            })
            .collect();
        let mut module_json = Vec::new();
        quoted_into(&mut module_json, metadata.target());
        Callsite {
            address: address_of(metadata),
            fields: parts,
            stack_key,
            module_json: String::from_utf8(module_json).expect("escaped text is UTF-8"),
            bridged,
            module_level: Cell::new((0, Threshold::OFF)),
        }
    }

    /// The minimum level, in `dispatcher`, of the callsite's target, read again only when its
    /// levels have changed (as a `Logger` caches its module's, `LiveLevels` says why a `Relaxed`
    /// read of the epoch is enough). Not for a `log` record: its target is its own.
    pub(super) fn module_level(&self, dispatcher: &Dispatcher, target: &str) -> Threshold {
        let levels = dispatcher.levels();
        let (epoch, threshold) = self.module_level.get();
        if epoch == levels.epoch() {
            return threshold;
        }
        let read = levels.level_for(target);
        self.module_level.set(read);
        read.1
    }
}

/// `"key":`, escaped.
fn member_key(key: &str) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(key.len() + 3);
    quoted_into(&mut bytes, key);
    bytes.push(b':');
    bytes.into_boxed_slice()
}

fn address_of(metadata: &'static Metadata<'static>) -> usize {
    std::ptr::from_ref(metadata) as usize
}

/// Whether an event's field `name` is a member of the context: `message` is the event's name,
/// not a field, and the `log.*` fields of a `log` record `bridged` by tracing-log (target,
/// module path, file, line) are left out.
fn is_written(name: &str, bridged: bool) -> bool {
    name != "message" && !(bridged && name.starts_with("log."))
}

/// The callsites a thread wrote events of lately, in a table of [`Callsites::SLOTS`] slots
/// (one, for an event written from inside another's field) chosen by address: a callsite takes the slot of the one it meets there. A program's busy
/// callsites are few; one that keeps losing its slot costs its keys worked out again.
#[derive(Default)]
pub(super) struct Callsites {
    slots: Vec<Option<Callsite>>,
}

impl Callsites {
    /// The table's size, once a thread writes an event (a power of two).
    const SLOTS: usize = 64;

    /// A table of `slots` slots (a power of two), for one event.
    fn with_slots(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        Callsites { slots: (0..slots).map(|_| None).collect() }
    }

    /// The callsite of `event`, worked out now if this thread has not kept it.
    pub(super) fn get(&mut self, event: &Event<'_>) -> &Callsite {
        let metadata = event.metadata();
        if self.slots.is_empty() {
            self.slots.resize_with(Self::SLOTS, || None);
        }
        let address = address_of(metadata);
        // Metadata are a few words long at least: the low bits of their addresses say little.
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[((address >> 4).wrapping_mul(0x9e37_79b9) >> 8) & mask];
        match slot {
            Some(callsite) if callsite.address == address => {}
            _ => *slot = Some(Callsite::new(metadata, event.is_log())),
        }
        slot.as_ref().expect("filled above")
    }
}

/// Writes an event's fields as members of the context (opened by the caller: `context` holds
/// `{` and nothing else yet), and its `message` into `message`.
pub(super) struct FieldEncoder<'a> {
    pub(super) callsite: &'a Callsite,
    pub(super) context: &'a mut Vec<u8>,
    pub(super) message: &'a mut String,
}

impl FieldEncoder<'_> {
    /// Starts the member for `field` and says `Some(true)`; for the message, `Some(false)`;
    /// `None` for a field left out.
    #[inline(always)]
    fn start(&mut self, field: &Field) -> Option<bool> {
        match self.callsite.fields.get(field.index()) {
            Some(Part::Member(key)) => {
                self.member(key);
                Some(true)
            }
            Some(Part::Message) => Some(false),
            Some(Part::Left) => None,
            None => self.start_unknown(field),
        }
    }

    /// [`start`](Self::start) for a field of another callsite (`tracing` never gives one): under
    /// its own name.
    #[cold]
    #[inline(never)]
    fn start_unknown(&mut self, field: &Field) -> Option<bool> {
        if field.name() == "message" {
            return Some(false);
        }
        self.member(&member_key(field.name()));
        Some(true)
    }

    /// Writes `key` (`"key":`), after a comma unless it is the first member.
    #[inline(always)]
    fn member(&mut self, key: &[u8]) {
        if self.context.len() > 1 {
            self.context.push(b',');
        }
        push_short(self.context, key);
    }

    /// The message, written as `Debug` writes it (what `tracing` gives a visitor that reads
    /// the message alone, for a value that is not a `&str`).
    fn message_debug(&mut self, value: &dyn fmt::Debug) {
        let _ = write!(self.message, "{value:?}");
    }

    fn integer<I: itoa::Integer + fmt::Debug>(&mut self, field: &Field, value: I) {
        match self.start(field) {
            Some(true) => push_short(self.context, itoa::Buffer::new().format(value).as_bytes()),
            Some(false) => self.message_debug(&value),
            None => {}
        }
    }
}

impl Visit for FieldEncoder<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        match self.start(field) {
            Some(true) => float_into(self.context, value),
            Some(false) => self.message_debug(&value),
            None => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.integer(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.integer(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match self.start(field) {
            Some(true) => self.context.extend_from_slice(if value { b"true" } else { b"false" }),
            Some(false) => self.message_debug(&value),
            None => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match self.start(field) {
            Some(true) => quoted_as_serde_json_into(self.context, value),
            Some(false) => self.message.push_str(value),
            None => {}
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match self.start(field) {
            Some(true) => write_display_string(self.context, value),
            Some(false) => {
                let _ = write!(self.message, "{value}");
            }
            None => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match self.start(field) {
            Some(true) => write_display_string(self.context, &format_args!("{value:?}")),
            Some(false) => self.message_debug(value),
            None => {}
        }
    }
}
