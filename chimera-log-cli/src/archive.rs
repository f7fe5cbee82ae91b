//! `verify --archive s3://bucket/prefix --public-key pub.pem [DIR]`: checks the S3 archive the
//! logger's `s3` feature writes. Per stream: the digests from the newest back (each signature
//! under the given public key, each link to the one before, no number missing, no period
//! skipped), every object a digest lists (its SHA-256 and seq range), every object under the
//! prefix that no digest lists, the records inside the objects (seq without gaps, the audit chain
//! within and across objects, anchors included); with DIR, that the archive and the files agree
//! on every record both hold.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use aws_sdk_s3::Client;
use chimera_log_runtime::audit::{hex, parse_anchor, parse_sealed, ChainHead, ChainKey};
use ed25519_dalek::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::files::{directory_is_live, for_each_line_live, max_line, Line};

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) failures: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) streams: Vec<Summary>,
}

/// One stream's figures.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) name: String,
    pub(crate) digests: usize,
    pub(crate) objects: usize,
    pub(crate) records: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) compared: Option<u64>,
}

/// `s3://bucket/prefix` as bucket and prefix (without slashes around it).
pub(crate) fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("--archive {url}: expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("--archive {url}: expected s3://bucket/prefix"));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// The public key in a PEM file (`openssl pkey -pubout` writes one).
pub(crate) fn public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("--public-key {}: {error}", path.display()))?;
    ed25519_dalek::VerifyingKey::from_public_key_pem(&text)
        .map_err(|error| format!("--public-key {}: not an Ed25519 public key in PEM: {error}", path.display()))
}

/// The bucket, through the AWS SDK's chain (`AWS_ENDPOINT_URL`, profiles, IMDS); path-style with
/// a custom endpoint.
struct Bucket {
    runtime: tokio::runtime::Runtime,
    client: Client,
    name: String,
}

impl Bucket {
    fn connect(name: &str) -> Result<Bucket, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start a runtime: {error}"))?;
        let shared = runtime.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).load());
        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if shared.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        Ok(Bucket { runtime, client: Client::from_conf(builder.build()), name: name.to_owned() })
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self.client.list_objects_v2().bucket(&self.name).prefix(prefix);
            if let Some(token) = &token {
                request = request.continuation_token(token);
            }
            let page = self.runtime.block_on(request.send()).map_err(|error| {
                format!("s3://{}/{prefix}: {}", self.name, aws_sdk_s3::error::DisplayErrorContext(&error))
            })?;
            keys.extend(page.contents().iter().filter_map(|object| object.key().map(str::to_owned)));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// The object's bytes and its `signature` metadata.
    fn get(&self, key: &str) -> Result<(Vec<u8>, Option<String>), String> {
        let mut answer = self
            .runtime
            .block_on(self.client.get_object().bucket(&self.name).key(key).send())
            .map_err(|error| format!("s3://{}/{key}: {}", self.name, aws_sdk_s3::error::DisplayErrorContext(&error)))?;
        let signature = answer.metadata().and_then(|metadata| metadata.get("signature")).cloned();
        let body = self
            .runtime
            .block_on(std::mem::take(&mut answer.body).collect())
            .map_err(|error| format!("s3://{}/{key}: {error}", self.name))?;
        Ok((body.into_bytes().to_vec(), signature))
    }
}

/// A stream's objects, by kind.
#[derive(Debug, Default)]
struct Stream {
    /// Digest number -> key.
    digests: BTreeMap<u64, String>,
    /// (first seq, last seq) -> key, in seq order.
    records: BTreeMap<(u64, u64), String>,
}

/// Splits `key` (under `prefix/`) into its stream and what it is.
fn classify(key: &str, prefix: &str) -> Option<(String, Kind)> {
    let rest = if prefix.is_empty() { key } else { key.strip_prefix(prefix)?.strip_prefix('/')? };
    if let Some((stream, name)) = rest.rsplit_once("/records/") {
        let range = name.strip_suffix(".log.gz")?;
        let (first, last) = range.split_once('-')?;
        if first.len() == 20 && last.len() == 20 {
            return Some((stream.to_owned(), Kind::Records(first.parse().ok()?, last.parse().ok()?)));
        }
    }
    if let Some((stream, name)) = rest.rsplit_once("/digests/") {
        let number = name.strip_suffix(".json")?;
        if number.len() == 20 {
            return Some((stream.to_owned(), Kind::Digest(number.parse().ok()?)));
        }
    }
    None
}

enum Kind {
    Records(u64, u64),
    Digest(u64),
}

/// Checks the archive at `url` (see the module doc).
pub(crate) fn verify(
    url: &str,
    public: &ed25519_dalek::VerifyingKey,
    key: &ChainKey,
    dir: Option<&Path>,
) -> Result<Report, String> {
    let (bucket_name, prefix) = parse_url(url)?;
    let bucket = Bucket::connect(&bucket_name)?;
    let mut report = Report::default();
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    let listing = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    for object in bucket.keys(&listing)? {
        match classify(&object, &prefix) {
            Some((stream, Kind::Records(first, last))) => {
                streams.entry(stream).or_default().records.insert((first, last), object);
            }
            Some((stream, Kind::Digest(number))) => {
                streams.entry(stream).or_default().digests.insert(number, object);
            }
            None => report.failures.push(format!("{object}: an object under the prefix that no digest lists")),
        }
    }
    if streams.is_empty() {
        return Err(format!("{url}: no archive here (no records or digests under the prefix)"));
    }
    let names: Vec<String> = streams.keys().cloned().collect();
    let compared = match dir {
        Some(dir) => Some(crate::store::stream_of_dir(dir, &names, None)?),
        None => None,
    };
    let fingerprint = hex(&Sha256::digest(public.as_bytes()));
    for (name, stream) in &streams {
        let files = match (&compared, dir) {
            (Some(compared), Some(dir)) if compared == name => Some(file_records(dir)?),
            _ => None,
        };
        verify_stream(&bucket, name, stream, public, &fingerprint, key, files, &mut report)?;
    }
    Ok(report)
}

/// The SHA-256 of each sealed record of `dir`'s audit trail, by seq (hashes, not lines: the
/// trail may be larger than the memory).
fn file_records(dir: &Path) -> Result<HashMap<u64, [u8; 32]>, String> {
    let mut records = HashMap::new();
    for_each_line_live(dir, chimera_log_runtime::read::AUDIT_FILE, directory_is_live(dir), |_, _, line, _| {
        if let Line::Kept(line) = line {
            if let Some(record) = parse_sealed(line) {
                records.entry(record.seq).or_insert_with(|| Sha256::digest(line).into());
            }
        }
    })
    .map_err(|error| error.to_string())?;
    Ok(records)
}

/// The chain head after the last record read, for the next record and the next file's anchor.
struct Walk {
    previous: Option<ChainHead>,
}

#[allow(clippy::too_many_arguments)]
fn verify_stream(
    bucket: &Bucket,
    name: &str,
    stream: &Stream,
    public: &ed25519_dalek::VerifyingKey,
    fingerprint: &str,
    key: &ChainKey,
    files: Option<HashMap<u64, [u8; 32]>>,
    report: &mut Report,
) -> Result<(), String> {
    let failures = &mut report.failures;
    let fail = |failures: &mut Vec<String>, message: String| failures.push(format!("stream {name}: {message}"));
    let mut summary = Summary {
        name: name.to_owned(),
        digests: stream.digests.len(),
        objects: stream.records.len(),
        compared: files.as_ref().map(|_| 0),
        ..Summary::default()
    };

    // The digests, newest first: signature, link to the one before, numbering, periods.
    let mut listed: HashMap<String, serde_json::Value> = HashMap::new();
    let mut archived_through: Option<String> = None;
    let mut later: Option<(u64, serde_json::Value)> = None;
    let newest = stream.digests.keys().next_back().copied();
    let mut expected = newest;
    for (&number, digest_key) in stream.digests.iter().rev() {
        if let Some(want) = expected.filter(|want| *want != number) {
            let missing = if want == number + 1 { format!("{want}") } else { format!("{}..={want}", number + 1) };
            fail(failures, format!("digest(s) {missing} missing (deleted, or never written)"));
        }
        expected = number.checked_sub(1);
        let (body, signature) = bucket.get(digest_key)?;
        let where_ = format!("digest {digest_key}");
        match signature.as_deref().and_then(unhex).and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok()) {
            None => fail(failures, format!("{where_} carries no signature")),
            Some(signature) => {
                if public.verify_strict(&body, &signature).is_err() {
                    fail(failures, format!("{where_}: the signature does not verify with this public key (another key, or the digest edited)"));
                }
            }
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            fail(failures, format!("{where_} is not a digest (not JSON)"));
            continue;
        };
        if json["number"].as_u64() != Some(number) {
            fail(failures, format!("{where_} says it is number {}", json["number"]));
        }
        if json["public_key_fingerprint"].as_str() != Some(fingerprint) {
            fail(failures, format!("{where_} names another signing key ({})", json["public_key_fingerprint"]));
        }
        if json["stream"].as_str() != Some(name) {
            fail(failures, format!("{where_} is another stream's ({})", json["stream"]));
        }
        if archived_through.is_none() {
            archived_through = json["archived_through"].as_str().map(str::to_owned);
        }
        // The digest after this one must name it exactly.
        if let Some((later_number, later_json)) = &later {
            let previous = &later_json["previous"];
            let sha256 = hex(&Sha256::digest(&body));
            if previous["key"].as_str() != Some(digest_key)
                || previous["sha256"].as_str() != Some(&sha256)
                || previous["signature"].as_str() != signature.as_deref()
            {
                fail(failures, format!("digest {later_number} does not chain to {digest_key} (its key, hash or signature differ): a digest replaced"));
            }
            if later_json["period_start"] != json["period_end"] {
                fail(
                    failures,
                    format!(
                        "digest {later_number}'s period does not begin where {digest_key}'s ends: a period missing"
                    ),
                );
            }
        }
        if number == 1 && !json["previous"].is_null() {
            fail(failures, format!("{where_} is the first, yet names a previous digest"));
        }
        for object in json["objects"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(object_key) = object["key"].as_str() else { continue };
            if listed.insert(object_key.to_owned(), object.clone()).is_some() {
                fail(failures, format!("{object_key} is listed by two digests"));
            }
        }
        later = Some((number, json));
    }
    if let Some(lowest) = expected.filter(|want| *want >= 1) {
        fail(failures, format!("digest(s) 1..={lowest} missing (deleted, or never written)"));
    }
    if stream.digests.is_empty() {
        fail(failures, "no digest: nothing vouches for the objects".to_owned());
    }
    for object_key in listed.keys() {
        if !stream.records.values().any(|key| key == object_key) {
            fail(failures, format!("{object_key} is listed by a digest and missing from the bucket"));
        }
    }

    // The records, in seq order across the objects.
    let mut walk = Walk { previous: None };
    let mut next_seq: Option<u64> = None;
    for (&(first, last), object_key) in &stream.records {
        let (gz, _) = bucket.get(object_key)?;
        match listed.get(object_key) {
            Some(entry) => {
                if entry["sha256"].as_str() != Some(&hex(&Sha256::digest(&gz))) {
                    fail(failures, format!("{object_key}: its bytes are not those its digest lists (replaced)"));
                }
                if entry["first_seq"].as_u64() != Some(first) || entry["last_seq"].as_u64() != Some(last) {
                    fail(failures, format!("{object_key}: its digest lists another seq range"));
                }
            }
            None if archived_through.as_deref().is_some_and(|through| object_key.as_str() <= through) => {
                fail(failures, format!("{object_key}: an object no digest lists (added)"));
            }
            None if stream.digests.is_empty() => {}
            None => report.notes.push(format!(
                "stream {name}: {object_key} was uploaded after the newest digest: no digest lists it yet"
            )),
        }
        // Line by line, each held only up to --max-line: a gzip bomb under the prefix cannot
        // take the memory.
        let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(&gz[..]));
        let (mut seen_first, mut seen_last) = (None, None);
        let mut buffer = Vec::new();
        loop {
            let read = match chimera_log_runtime::read::read_line_capped(&mut reader, &mut buffer, max_line()) {
                Ok(Some(read)) => read,
                Ok(None) => break,
                Err(error) => {
                    fail(failures, format!("{object_key}: not a whole gzip stream ({error})"));
                    break;
                }
            };
            if !read.kept(max_line()) {
                fail(
                    failures,
                    format!("{object_key}: a line of {} bytes exceeds --max-line: cannot be verified", read.length),
                );
                walk.previous = None;
                next_seq = None;
                continue;
            }
            let line = buffer.as_slice();
            if let Some(anchor) = parse_anchor(line) {
                if !anchor.is_sealed_by(key) {
                    fail(
                        failures,
                        format!("{object_key}: an audit_anchor does not match its seal (edited, or another key)"),
                    );
                }
                match walk.previous {
                    Some(head) if head != anchor.previous => fail(
                        failures,
                        format!(
                            "{object_key}: an audit_anchor says the trail before it ends at seq {}, it ends at seq {}",
                            anchor.previous.seq, head.seq
                        ),
                    ),
                    None if anchor.previous.seq > 0 => report.notes.push(format!(
                        "stream {name}: the archive begins after seq {} (the records before were not archived)",
                        anchor.previous.seq
                    )),
                    _ => {}
                }
                continue;
            }
            let Some(record) = parse_sealed(line) else {
                if !line.is_empty() {
                    fail(failures, format!("{object_key}: a line that is neither a sealed record nor an anchor"));
                }
                continue;
            };
            summary.records += 1;
            summary.first_seq.get_or_insert(record.seq);
            summary.last_seq = Some(record.seq);
            seen_first.get_or_insert(record.seq);
            seen_last = Some(record.seq);
            if let Some(want) = next_seq.filter(|want| *want != record.seq) {
                fail(
                    failures,
                    format!("seq {} follows seq {} in the archive: records missing or repeated", record.seq, want - 1),
                );
            }
            next_seq = record.seq.checked_add(1);
            let link_from = match walk.previous {
                Some(head) if head.seq.checked_add(1) == Some(record.seq) => Some(head.chain),
                None if record.seq == 1 => Some([0; 32]),
                _ => None,
            };
            if let Some(chain) = link_from {
                if key.link(&chain, record.body) != record.chain {
                    fail(
                        failures,
                        format!(
                            "chain broken at seq {}: the record was altered, inserted, or signed with another key",
                            record.seq
                        ),
                    );
                }
            }
            walk.previous = Some(ChainHead { seq: record.seq, chain: record.chain });
            if let Some(files) = &files {
                if let Some(in_file) = files.get(&record.seq) {
                    *summary.compared.get_or_insert(0) += 1;
                    if in_file.as_slice() != Sha256::digest(line).as_slice() {
                        fail(failures, format!("seq {}: the archive and executions.log disagree", record.seq));
                    }
                }
            }
        }
        if (seen_first, seen_last) != (Some(first), Some(last)) {
            fail(
                failures,
                format!("{object_key}: holds seq {seen_first:?}..={seen_last:?}, not the range its key names"),
            );
        }
        if let (Some(entry), Some(head)) = (listed.get(object_key), walk.previous) {
            if entry["chain"].as_str() != Some(&hex(&head.chain)) {
                fail(failures, format!("{object_key}: the chain at its last record is not the one its digest lists"));
            }
        }
    }
    report.streams.push(summary);
    Ok(())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}
