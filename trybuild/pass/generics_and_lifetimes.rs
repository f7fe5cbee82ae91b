#![deny(warnings)]

use std::collections::BTreeMap;
use std::fmt::Display;

use chimera_log_runtime::{emit, get_logger, LogEvent};
use serde::Serialize;

#[derive(LogEvent)]
struct Generic<'a, 'b: 'a, K, V: ?Sized, D, const N: usize>
where
    K: Ord,
{
    map: &'a BTreeMap<K, &'b V>,
    #[log(display)]
    shown: D,
    array: [u8; N],
    #[log(skip)]
    _unbounded: std::marker::PhantomData<fn() -> K>,
}

fn log_generic<K: Ord + Serialize, V: Serialize + ?Sized, D: Display>(map: &BTreeMap<K, &V>, shown: D) {
    emit!(get_logger("m"), Generic { map, shown, array: [1, 2, 3], _unbounded: std::marker::PhantomData });
}

fn main() {
    let value = String::from("v");
    log_generic(&BTreeMap::from([("k", value.as_str())]), 1.5);
}
