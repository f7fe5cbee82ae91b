//! Which lanes of a queue a line goes to ([`LaneSet`]), and what became of it ([`Pushed`]).

/// Which lanes of a queue take a line: a bit per lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LaneSet(pub(crate) u64);

impl LaneSet {
    pub(crate) fn lanes(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let lane = bits.trailing_zeros();
            (bits != 0).then(|| {
                bits &= bits - 1;
                lane as usize
            })
        })
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What became of a pushed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Accepted,
    /// The queue was full; the drop is counted for each lane of the line.
    Dropped,
    /// The queue is closed (shutdown); nothing was counted by the queue.
    Closed,
}
