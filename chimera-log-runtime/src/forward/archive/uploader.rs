//! The archive's thread: follows `executions.log`'s family from a cursor it saves beside the logs
//! (`.s3-archive.cursor`) only after the bucket has the records before it, cuts objects
//! (`segment.rs`) and uploads each under a COMPLIANCE lock.
//!
//! Exactly once: an object's key is its stream and seq range, and a PUT never replaces an object
//! (`If-None-Match: *`); a start finds the newest seq the bucket holds (from the last key saved
//! in `.s3-archive.state`, listing what an interrupted run uploaded after it) and skips the
//! records up to it, so a crash between an upload and the cursor's save repeats nothing, however
//! the next run cuts its objects. A failed upload is retried with the same bytes under the same
//! key. Backups the cursor has passed are archived; retention may delete them from then on (its
//! slot of the [`ArchiveMark`](crate::dir::backup::ArchiveMark)). Nothing here runs on the
//! logging path.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::bucket::{Bucket, Put};
use super::digest::{self, DigestBody, Listed, Previous, SignedDigest, DIGESTS, SIGNATURE_METADATA};
use super::error::ArchiveError;
use super::segment::{self, Builder, Sealed, RECORDS};
use super::sign::Signer;
use crate::clock::Clock;
use crate::config::archive::S3Archive;
use crate::dir::backup::MarkSlot;
use crate::dir::follow::{Cursor, Followed, Follower, Saved};
use crate::dir::layout::{ARCHIVE_CURSOR_FILE, ARCHIVE_STATE_FILE, AUDIT_FILE};
use crate::error::Error;
use crate::report::{FailureReporter, Outage};
use crate::stats::ArchiveCounters;
use crate::thread::{ForwarderThread, Lifecycle, Requests as ForwarderRequests};

/// How often an idle uploader looks for new records (and whether a segment fell due).
const POLL: Duration = Duration::from_millis(250);
/// Retries after a failure wait from this, doubling, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the uploader is configured with.
#[derive(Debug, Clone)]
pub(crate) struct UploaderConfig {
    pub(crate) archive: S3Archive,
    /// `<host>/<log dir>`, as the audit store names it.
    pub(crate) stream: String,
    /// How long an object stays locked after its last record's time.
    pub(crate) retention: Duration,
    /// Signs the digests (none: they are chained, unsigned).
    pub(crate) signer: Option<Arc<dyn Signer>>,
}

/// How a pass over the available records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Everything available and due was uploaded.
    Complete,
    /// The shutdown deadline came first.
    Abandoned,
    /// Reading the files failed (reported); the next pass reads on from the cursor.
    Interrupted,
}

/// Requests from the application's threads.
#[derive(Debug, Default)]
struct Requests {
    /// Flush tickets: upload everything `executions.log` holds now, due or not.
    flush_asked: u64,
    flush_done: u64,
    /// Look tickets: read what it holds now, uploading only what is due.
    look_asked: u64,
    look_done: u64,
    lifecycle: Lifecycle,
}

impl ForwarderRequests for Requests {
    fn flushes_asked(&self) -> u64 {
        self.flush_asked + self.look_asked
    }
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }
    fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }
}

type Control = crate::thread::Control<Requests>;

/// The running uploader.
#[derive(Debug)]
pub(crate) struct Uploader {
    thread: ForwarderThread<Requests>,
    pub(crate) counters: Arc<ArchiveCounters>,
}

impl Uploader {
    /// Starts following `dir/executions.log` from the saved cursor (from the start of the family
    /// when there is none: every retained record is archived).
    pub(crate) fn start(
        config: UploaderConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        mark: MarkSlot,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Uploader, Error> {
        let cursor_path = dir.join(ARCHIVE_CURSOR_FILE);
        let state_path = dir.join(ARCHIVE_STATE_FILE);
        crate::dir::follow::remove_stale_temporaries(&cursor_path);
        crate::dir::follow::remove_stale_temporaries(&state_path);
        let counters = Arc::new(ArchiveCounters::default());
        let (cursor, check_resume) = load_cursor(&cursor_path, dir, clock.now(), &counters);
        let control = Arc::new(Control::default());
        let worker = Worker {
            dir: dir.to_path_buf(),
            follower: Follower::new(dir, AUDIT_FILE, cursor),
            acked: cursor,
            cursor_path,
            state_path,
            stream_prefix: segment::stream_prefix(&config.archive.prefix, &config.stream),
            config,
            clock,
            mark,
            counters: Arc::clone(&counters),
            control: Arc::clone(&control),
            outage: Outage::default(),
            failures: FailureReporter::default(),
            line: Vec::new(),
            followed: Followed::default(),
            unsaved_skipped: Followed::default(),
            builder: Builder::default(),
            pending: None,
            high_water: 0,
            skipped_to: None,
            check_resume,
            cursor_damage_reported: None,
            period: Vec::new(),
            period_start: String::new(),
            next_digest_at: SystemTime::UNIX_EPOCH,
            next_digest_number: 1,
            previous_digest: None,
            archived_through: None,
            pending_digest: None,
        };
        let thread = ForwarderThread::start("chimera-log-s3-archive", move || worker.run(), control, Some(dir_lock))?;
        Ok(Uploader { thread, counters })
    }

    /// Uploads everything `executions.log` holds now, due or not; `false` if the bucket did not
    /// have all of it by `deadline` (the records wait in the file).
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.thread.control.ticket(
            deadline,
            |requests| {
                requests.flush_asked += 1;
                requests.flush_asked
            },
            |requests, asked| requests.flush_done >= *asked,
        )
    }

    /// Waits until the uploader has read what `executions.log` holds now, uploading only what
    /// is due.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        self.thread.control.ticket(
            deadline,
            |requests| {
                requests.look_asked += 1;
                requests.look_asked
            },
            |requests, asked| requests.look_done >= *asked,
        )
    }

    /// Uploads what it can by `deadline` (everything read, due or not), then stops.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.thread.shutdown(deadline)
    }
}

/// The saved cursor, and whether it still has to be checked against the bucket (see
/// `Worker::check_resume`); the start of the family when there is none or it cannot be trusted
/// (records the bucket holds are then skipped).
fn load_cursor(path: &Path, dir: &Path, now: SystemTime, counters: &ArchiveCounters) -> (Cursor, bool) {
    match Saved::load(path, dir, AUDIT_FILE, now) {
        Saved::None => (Cursor::default(), false),
        Saved::Trusted(cursor) => (cursor, cursor != Cursor::default()),
        Saved::Damaged(why) => {
            counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: S3 archive: the cursor cannot be trusted ({why}); archiving starts again from the \
                 oldest retained audit record (records already in the bucket are skipped; counted in \
                 stats().archive.cursor_damaged)"
            );
            (Cursor::default(), false)
        }
    }
}

/// The state file's content (an empty object when there is none or it cannot be read: the
/// bucket is then listed whole).
fn load_state_value(path: &Path) -> serde_json::Value {
    let mut text = String::new();
    let read =
        crate::dir::safe_fs::open_read(path).and_then(|mut file| std::io::Read::read_to_string(&mut file, &mut text));
    match read.ok().and_then(|_| serde_json::from_str::<serde_json::Value>(&text).ok()) {
        Some(value @ serde_json::Value::Object(_)) => value,
        _ => serde_json::json!({}),
    }
}

/// The last record object saved in the state file: its key and last seq.
fn load_state(path: &Path) -> Option<(String, u64)> {
    let value = load_state_value(path);
    let key = value["key"].as_str()?.to_owned();
    let last_seq = value["last_seq"].as_u64()?;
    Some((key, last_seq))
}

/// The uploader thread's state.
struct Worker {
    dir: PathBuf,
    follower: Follower,
    /// The cursor after the last line the bucket has (or that was skipped as there already).
    acked: Cursor,
    cursor_path: PathBuf,
    state_path: PathBuf,
    /// `<prefix>/<stream>/`.
    stream_prefix: String,
    config: UploaderConfig,
    clock: Arc<dyn Clock>,
    mark: MarkSlot,
    counters: Arc<ArchiveCounters>,
    control: Arc<Control>,
    /// While the bucket fails: one stderr line when it starts, one when it ends.
    outage: Outage,
    failures: FailureReporter,
    line: Vec<u8>,
    followed: Followed,
    /// Files found gone or damaged before lines not yet acknowledged: counted once a cursor past
    /// them is saved.
    unsaved_skipped: Followed,
    builder: Builder,
    /// A cut object not uploaded yet (retried as it is).
    pending: Option<Sealed>,
    /// The highest seq the bucket is known to hold: records up to it are not uploaded again.
    high_water: u64,
    /// The cursor after records skipped as already in the bucket, to save once nothing is read
    /// past it unsaved.
    skipped_to: Option<Cursor>,
    /// The cursor was loaded from its file and no record after it was read yet: the first one
    /// must follow what the bucket holds (`seq` at most `high_water + 1`), or the cursor was
    /// moved past records never uploaded (or saved for another bucket).
    check_resume: bool,
    cursor_damage_reported: Option<String>,
    /// The record objects uploaded since the last digest.
    period: Vec<Listed>,
    /// RFC 3339: when the period began (the last digest's end).
    period_start: String,
    next_digest_at: SystemTime,
    next_digest_number: u64,
    previous_digest: Option<Previous>,
    /// The newest record object in the bucket.
    archived_through: Option<String>,
    /// A digest made and not uploaded yet (retried as it is).
    pending_digest: Option<SignedDigest>,
}

impl Worker {
    fn run(mut self) {
        let bucket = match Bucket::connect(&self.config.archive) {
            Ok(bucket) => bucket,
            Err(error) => {
                self.disable(&format!("its runtime could not start ({error})"));
                return self.idle_until_stopped();
            }
        };
        let mut backoff = FIRST_BACKOFF;
        // The bucket must keep what it is given locked; what earlier runs uploaded is found.
        loop {
            let found = bucket
                .check_object_lock()
                .and_then(|()| self.find_high_water(&bucket))
                .and_then(|()| self.find_last_digest(&bucket));
            match found {
                Ok(()) => break,
                Err(ArchiveError::Unusable(why)) => {
                    self.disable(&why);
                    return self.idle_until_stopped();
                }
                Err(error) => {
                    self.failed(&error);
                    let stop = self.control.lock().stop();
                    // Nothing was read yet: a stop has nothing to upload (the next start does).
                    if stop.is_some() {
                        return;
                    }
                    self.back_off(backoff, stop);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        backoff = FIRST_BACKOFF;
        loop {
            let (flush, look, stop) = {
                let requests = self.control.lock();
                (requests.flush_asked, requests.look_asked, requests.stop())
            };
            let force = stop.is_some() || flush > self.control.lock().flush_done;
            let pass = self.archive_available(&bucket, force).and_then(|pass| match pass {
                // The last digest, at a clean shutdown, lists what was uploaded since the last.
                Pass::Complete => self.digest_if_due(&bucket, stop.is_some()).map(|()| pass),
                other => Ok(other),
            });
            match pass {
                Ok(Pass::Abandoned) => return,
                Ok(Pass::Interrupted) => {
                    self.rewind();
                    let stop = self.control.lock().stop();
                    if stop.is_some_and(|at| Instant::now() >= at) {
                        return;
                    }
                    self.back_off(POLL, stop);
                }
                Ok(Pass::Complete) => {
                    backoff = FIRST_BACKOFF;
                    self.report_up();
                    let mut requests = self.control.lock();
                    if force {
                        requests.flush_done = requests.flush_done.max(flush);
                    }
                    requests.look_done = requests.look_done.max(look);
                    self.control.changed.notify_all();
                    if stop.is_some() {
                        return;
                    }
                    // A stop asked during the pass: one more pass, uploading everything.
                    if requests.stop().is_none() && requests.flush_asked == flush && requests.look_asked == look {
                        let _ = self.control.changed.wait_timeout(requests, POLL);
                    }
                }
                Err(error) => {
                    self.failed(&error);
                    let stop = self.control.lock().stop();
                    if stop.is_some_and(|at| Instant::now() >= at) {
                        return;
                    }
                    self.back_off(backoff, stop);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Reads every whole line the family holds now, cutting objects at each file's end, when
    /// full, and at the end of what is there when due (or `force`d), and uploads each before
    /// reading on.
    fn archive_available(&mut self, bucket: &Bucket, force: bool) -> Result<Pass, ArchiveError> {
        loop {
            if self.pending.is_none() && self.builder.full() {
                self.pending = self.builder.cut(&self.config.archive.prefix, &self.config.stream);
            }
            if let Some(sealed) = self.pending.take() {
                if let Err(error) = self.upload(bucket, &sealed) {
                    self.pending = Some(sealed);
                    return Err(error);
                }
            }
            if self.control.lock().stop().is_some_and(|at| Instant::now() >= at) {
                return Ok(Pass::Abandoned);
            }
            let now = self.clock.now();
            match self.follower.next_line(&mut self.line, &mut self.followed, now) {
                Ok(Some(cursor)) => {
                    self.report_cursor_damage();
                    self.unsaved_skipped.skipped += std::mem::take(&mut self.followed.skipped);
                    self.unsaved_skipped.damaged.append(&mut self.followed.damaged);
                    if self.take_line(cursor, now) {
                        continue;
                    }
                }
                Ok(None) => {
                    if self.builder.has_records()
                        && (force || self.builder.due(now, self.config.archive.archive_interval))
                    {
                        self.pending = self.builder.cut(&self.config.archive.prefix, &self.config.stream);
                        continue;
                    }
                    if !self.builder.has_records() {
                        if let Some(cursor) = self.skipped_to.take() {
                            self.acknowledge(cursor);
                        }
                    }
                    return Ok(Pass::Complete);
                }
                Err(error) => {
                    self.failures.report(&format_args!("reading {AUDIT_FILE} for the S3 archive"), &error);
                    return Ok(Pass::Interrupted);
                }
            }
        }
    }

    /// Takes the line just read (ending at `cursor`); `false` when it made the follower go back
    /// (a cursor found ahead of the bucket).
    fn take_line(&mut self, cursor: Cursor, now: SystemTime) -> bool {
        if self.builder.is_new_file(cursor) && self.builder.has_records() {
            self.pending = self.builder.cut_file(&self.config.archive.prefix, &self.config.stream);
        }
        match segment::record_of(&self.line) {
            Some((seq, ..)) if self.check_resume && self.unsaved_skipped.skipped == 0 && seq > self.high_water + 1 => {
                self.distrust_cursor(seq);
                return false;
            }
            Some((seq, ..)) if seq <= self.high_water => {
                self.check_resume = false;
                self.builder.drop_held(cursor);
                self.skipped_to = Some(cursor);
            }
            Some(record) => {
                self.check_resume = false;
                self.builder.add_record(&self.line, record, cursor, now);
                self.skipped_to = None;
            }
            None => self.builder.add_other(&self.line, cursor),
        }
        true
    }

    /// Uploads `sealed`, then saves what the bucket now has.
    fn upload(&mut self, bucket: &Bucket, sealed: &Sealed) -> Result<(), ArchiveError> {
        let time = sealed.last_time.unwrap_or_else(|| self.clock.now());
        let retain_until = time + self.config.retention;
        let put = bucket.put_locked(&sealed.key, &sealed.body, retain_until, "application/gzip", None)?;
        if put != Put::Conflict {
            use sha2::Digest;
            self.period.push(Listed {
                key: sealed.key.clone(),
                sha256: crate::audit::hex(&sha2::Sha256::digest(&sealed.body)),
                first_seq: sealed.first_seq,
                last_seq: sealed.last_seq,
                chain: sealed.last_chain.clone(),
            });
            self.archived_through = Some(sealed.key.clone());
        }
        match put {
            Put::Stored => {
                self.counters.objects.fetch_add(1, Relaxed);
                self.counters.records.fetch_add(sealed.records, Relaxed);
                self.counters.bytes.fetch_add(sealed.body.len() as u64, Relaxed);
            }
            // An earlier attempt's, whose answer was lost.
            Put::AlreadyThere => {}
            Put::Conflict => {
                self.counters.conflicts.fetch_add(1, Relaxed);
                diag!(
                    "chimera-log: S3 archive: s3://{}/{} is in the bucket with other content than records {}..={} of \
                     {AUDIT_FILE} have now; it is kept, not overwritten: compare with `chimera-log verify --archive` \
                     (counted in stats().archive.conflicts)",
                    self.config.archive.bucket,
                    sealed.key,
                    sealed.first_seq,
                    sealed.last_seq
                );
            }
        }
        self.high_water = self.high_water.max(sealed.last_seq);
        self.counters.archived_seq.fetch_max(sealed.last_seq, Relaxed);
        self.save_state(Some((&sealed.key, sealed.last_seq)));
        self.acknowledge(sealed.end);
        Ok(())
    }

    /// Saves the last record object uploaded (when `record` says one was) and the last digest:
    /// where a start looks in the bucket for what came after them.
    fn save_state(&mut self, record: Option<(&str, u64)>) {
        let mut state = load_state_value(&self.state_path);
        if let Some((key, last_seq)) = record {
            state["key"] = key.into();
            state["last_seq"] = last_seq.into();
        }
        if let Some(previous) = &self.previous_digest {
            state["digest"] = previous.key.clone().into();
        }
        if let Err(error) = crate::dir::follow::save_atomically(&self.state_path, state.to_string().as_bytes()) {
            self.failures.report(&format_args!("saving the S3 archive state {}", self.state_path.display()), &error);
        }
    }

    /// Makes and uploads a digest when `digest_interval` has passed since the last (by the
    /// clock), also when nothing was uploaded since, and at a clean shutdown (`stopping`).
    fn digest_if_due(&mut self, bucket: &Bucket, stopping: bool) -> Result<(), ArchiveError> {
        let now = self.clock.now();
        if self.pending_digest.is_none() && (stopping || now >= self.next_digest_at) {
            let end = digest::timestamp(now);
            let body = DigestBody {
                version: 1,
                stream: self.config.stream.clone(),
                number: self.next_digest_number,
                period_start: std::mem::replace(&mut self.period_start, end.clone()),
                period_end: end,
                objects: std::mem::take(&mut self.period),
                archived_through: self.archived_through.clone(),
                previous: self.previous_digest.clone(),
                signature_algorithm: None,
                public_key_fingerprint: None,
            };
            self.pending_digest = Some(digest::sign(&self.stream_prefix, body, self.config.signer.as_deref()));
            self.next_digest_at = now + self.config.archive.digest_interval;
        }
        let Some(signed) = self.pending_digest.take() else { return Ok(()) };
        let metadata = signed.signature.as_deref().map(|signature| (SIGNATURE_METADATA, signature));
        match bucket.put_locked(&signed.key, &signed.body, now + self.config.retention, "application/json", metadata) {
            Ok(Put::Stored | Put::AlreadyThere) => {
                self.counters.digests.fetch_add(1, Relaxed);
                self.previous_digest = Some(signed.as_previous());
                self.next_digest_number += 1;
                self.save_state(None);
                Ok(())
            }
            Ok(Put::Conflict) => {
                // Another writer's digest under this number: ours goes under the next one (its
                // objects are listed again, not lost).
                self.counters.conflicts.fetch_add(1, Relaxed);
                diag!(
                    "chimera-log: S3 archive: s3://{}/{} holds another digest; it is kept, and this one is made                      again under the next number (counted in stats().archive.conflicts)",
                    self.config.archive.bucket,
                    signed.key
                );
                let body: DigestBody = serde_json::from_slice(&signed.body).expect("made here");
                self.period = body.objects;
                self.period_start = body.period_start;
                self.next_digest_number += 1;
                self.next_digest_at = now;
                Ok(())
            }
            Err(error) => {
                self.pending_digest = Some(signed);
                Err(error)
            }
        }
    }

    /// The newest digest of the stream (from the one the state names, listing what came after
    /// it), which the next one chains to, and the record objects uploaded after the newest one
    /// it knew of: no digest lists them yet (a crash came first), so the next one does.
    fn find_last_digest(&mut self, bucket: &Bucket) -> Result<(), ArchiveError> {
        let digests = format!("{}{DIGESTS}/", self.stream_prefix);
        let hint = load_state_value(&self.state_path)["digest"]
            .as_str()
            .filter(|key| key.starts_with(&digests))
            .map(str::to_owned);
        let hint = match hint {
            Some(key) if bucket.keys_after(&key, None)?.contains(&key) => Some(key),
            _ => None,
        };
        let newest = bucket.keys_after(&digests, hint.as_deref())?.pop().or(hint);
        let now = self.clock.now();
        self.period_start = digest::timestamp(now);
        self.next_digest_at = now + self.config.archive.digest_interval;
        if let Some(key) = newest {
            let Some((body, metadata)) = bucket.get(&key)? else {
                return Err(ArchiveError::Request { operation: "GetObject", message: format!("{key} vanished") });
            };
            let number =
                key.rsplit('/').next().and_then(|name| name.strip_suffix(".json")).and_then(|n| n.parse().ok());
            let parsed: Option<DigestBody> = serde_json::from_slice(&body).ok();
            let signed = SignedDigest { key: key.clone(), body, signature: metadata.get(SIGNATURE_METADATA).cloned() };
            self.previous_digest = Some(signed.as_previous());
            self.next_digest_number = number.unwrap_or(0) + 1;
            match parsed {
                Some(parsed) => {
                    self.period_start = parsed.period_end;
                    self.archived_through = parsed.archived_through;
                }
                None => diag!(
                    "chimera-log: S3 archive: the newest digest s3://{}/{key} cannot be read as one; the next digest                      chains to it and lists every record object of the stream again",
                    self.config.archive.bucket
                ),
            }
        }
        let records = format!("{}{RECORDS}/", self.stream_prefix);
        self.period.clear();
        for key in bucket.keys_after(&records, self.archived_through.as_deref())? {
            if segment::key_range(&key).is_none() {
                continue;
            }
            if let Some((body, _)) = bucket.get(&key)? {
                if let Some(listed) = segment::listed(&key, &body) {
                    self.archived_through = Some(key);
                    self.period.push(listed);
                }
            }
        }
        Ok(())
    }

    /// The newest seq the bucket holds for this stream: the state file names the last object
    /// this directory's archive uploaded; what an interrupted run uploaded after it is listed.
    /// Without a state (or with one for another bucket), the stream's keys are listed whole.
    fn find_high_water(&mut self, bucket: &Bucket) -> Result<(), ArchiveError> {
        let records = format!("{}{RECORDS}/", self.stream_prefix);
        let state = match load_state(&self.state_path) {
            Some((key, last_seq)) if key.starts_with(&records) && bucket.keys_after(&key, None)?.contains(&key) => {
                Some((key, last_seq))
            }
            _ => None,
        };
        let mut high_water = state.as_ref().map_or(0, |(_, last_seq)| *last_seq);
        for key in bucket.keys_after(&records, state.as_ref().map(|(key, _)| key.as_str()))? {
            if let Some((_, last)) = segment::key_range(&key) {
                high_water = high_water.max(last);
            }
        }
        self.high_water = high_water;
        self.counters.archived_seq.fetch_max(high_water, Relaxed);
        Ok(())
    }

    /// The first record after the saved cursor is `seq`, past what the bucket holds: the cursor
    /// was moved forward (by damage or by hand), or saved for another bucket. Archiving goes back
    /// to the oldest retained record, and retention keeps every backup until it is uploaded.
    fn distrust_cursor(&mut self, seq: u64) {
        self.counters.cursor_damaged.fetch_add(1, Relaxed);
        diag!(
            "chimera-log: S3 archive: the cursor {} is ahead of the bucket (the first record after it is seq {seq}; \
             the bucket holds seq {} at most); archiving starts again from the oldest retained audit record \
             (counted in stats().archive.cursor_damaged)",
            self.cursor_path.display(),
            self.high_water
        );
        self.check_resume = false;
        self.acked = Cursor::default();
        self.mark.reset();
        self.unsaved_skipped = Followed::default();
        if let Err(error) = self.acked.save(&self.cursor_path) {
            self.failures.report(&format_args!("saving the S3 archive cursor {}", self.cursor_path.display()), &error);
        }
        self.rewind();
    }

    /// Goes back to the cursor after the last acknowledged line: what was read since is read
    /// again (an object cut and not uploaded is kept: its bytes are the same).
    fn rewind(&mut self) {
        let from = self.pending.as_ref().map_or(self.acked, |sealed| sealed.end);
        self.follower = Follower::new(&self.dir, AUDIT_FILE, from);
        self.followed = Followed::default();
        self.builder.clear();
        self.skipped_to = None;
    }

    /// Saves the cursor after lines the bucket has, and lets retention delete the backups
    /// before it.
    fn acknowledge(&mut self, cursor: Cursor) {
        self.acked = cursor;
        if let Err(error) = cursor.save(&self.cursor_path) {
            self.failures.report(&format_args!("saving the S3 archive cursor {}", self.cursor_path.display()), &error);
            return;
        }
        if let Some(after) = cursor.after {
            self.mark.advance(after);
        }
        let skipped = std::mem::take(&mut self.unsaved_skipped);
        self.counters.files_skipped.fetch_add(skipped.skipped, Relaxed);
        for damaged in &skipped.damaged {
            diag!(
                "chimera-log: S3 archive: a backup of {AUDIT_FILE} is damaged ({damaged}); its records after the \
                 damage cannot be read and are not archived (counted in stats().archive.files_skipped)"
            );
        }
    }

    /// Counts and reports a cursor found past the end of its file (the follower reads that file
    /// again from its start; the records the bucket has are skipped).
    fn report_cursor_damage(&mut self) {
        for damage in std::mem::take(&mut self.followed.cursor_damage) {
            if self.cursor_damage_reported.as_ref() == Some(&damage) {
                continue;
            }
            self.counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: S3 archive: {damage}: the cursor was moved (by damage or by hand); that file is read \
                 again from its start (records already in the bucket are skipped; counted in \
                 stats().archive.cursor_damaged)"
            );
            self.cursor_damage_reported = Some(damage);
        }
    }

    /// The archive cannot work with this bucket (or at all): said once, counted, and retention
    /// stops waiting for it. Logging goes on.
    fn disable(&mut self, why: &str) {
        self.counters.errors.fetch_add(1, Relaxed);
        self.counters.disabled.store(true, Relaxed);
        self.mark.release();
        diag!("chimera-log: S3 archive is disabled: {why}; logging continues without it (stats().archive.disabled)");
    }

    /// Answers every request at once until the stop (a disabled archive holds nothing back).
    fn idle_until_stopped(self) {
        let mut requests = self.control.lock();
        loop {
            requests.flush_done = requests.flush_asked;
            requests.look_done = requests.look_asked;
            self.control.changed.notify_all();
            if requests.stop().is_some() {
                return;
            }
            requests = self.control.changed.wait(requests).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn failed(&mut self, error: &ArchiveError) {
        self.counters.errors.fetch_add(1, Relaxed);
        let bucket = &self.config.archive.bucket;
        if self.outage.down(self.clock.now(), || {
            format!(
                "chimera-log: S3 archive s3://{bucket} is unavailable ({error}); audit records wait in {AUDIT_FILE} \
                 and its backups (kept until archived), retrying with backoff"
            )
        }) {
            self.counters.down.store(true, Relaxed);
        }
    }

    fn report_up(&mut self) {
        let bucket = &self.config.archive.bucket;
        if self.outage.up(self.clock.now(), |outage| {
            format!(
                "chimera-log: S3 archive s3://{bucket} is available again after {:.1} s; archiving caught up",
                outage.as_secs_f64()
            )
        }) {
            self.counters.down.store(false, Relaxed);
        }
    }

    /// Waits `wait` (through the clock) before a retry; a flush or shutdown cuts it short.
    fn back_off(&self, wait: Duration, stop: Option<Instant>) {
        self.control.back_off(&*self.clock, wait, stop);
    }
}
