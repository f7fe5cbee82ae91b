//! The registry of event types that have records: each type's [`Replay`], and the id a record
//! names it by.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use super::record::Replayer;
use crate::json::{is_plain, ContextWriter};

/// What the writer needs to turn one event type's records into lines: its name and the replay
/// function the derive generated beside its capture. One `static` per type, registered (given
/// its id) by the first record of the type.
#[derive(Debug)]
pub struct Replay {
    pub(super) name: &'static str,
    /// `name` has nothing to escape.
    pub(super) plain: bool,
    pub(super) context: fn(&mut Replayer<'_>, &mut ContextWriter<'_>),
    /// 0 until registered; then the type's place in [`REGISTERED`], plus one.
    id: AtomicU32,
}

/// Every [`Replay`] a record has named, in id order (id 1 first).
pub(super) static REGISTERED: Mutex<Vec<&'static Replay>> = Mutex::new(Vec::new());

impl Replay {
    /// For the derive: the type's `NAME` and its replay function.
    pub const fn new(name: &'static str, context: fn(&mut Replayer<'_>, &mut ContextWriter<'_>)) -> Self {
        Replay { name, plain: is_plain(name), context, id: AtomicU32::new(0) }
    }

    /// The type's id, registering it on its first record. The registration happens before the
    /// record is queued, and the writer takes the queue's lock after it: a writer that finds an
    /// id it does not know finds it in [`REGISTERED`].
    #[inline]
    pub(crate) fn id(&'static self) -> u32 {
        match self.id.load(Relaxed) {
            0 => self.register(),
            id => id,
        }
    }

    #[cold]
    fn register(&'static self) -> u32 {
        let mut registered = REGISTERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another thread's first record of the type may have registered it meanwhile.
        match self.id.load(Relaxed) {
            0 => {
                registered.push(self);
                let id = u32::try_from(registered.len()).expect("fewer than 4 billion event types");
                self.id.store(id, Relaxed);
                id
            }
            id => id,
        }
    }
}
