//! The PostgreSQL audit store (feature `postgres`): one database for a fleet of bots, each
//! logger writing its own stream. The record is kept as text (byte for byte what the chain
//! covers) and as `jsonb` for queries, `NULL` when `jsonb` cannot hold it (a `\u0000` escape,
//! nesting past PostgreSQL's limits).

use postgres::{Client, NoTls};

use super::{Database, DerivedColumns, Inserted, Row, ScanFilter, StoreError, StoredRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chimera_audit (
    stream     TEXT        NOT NULL,
    seq        BIGINT      NOT NULL,
    chain      TEXT        NOT NULL,
    timestamp  TEXT        NOT NULL,
    level      TEXT        NOT NULL,
    module     TEXT        NOT NULL,
    event      TEXT        NOT NULL,
    key_name   TEXT,
    key_value  TEXT,
    block_number TEXT,
    record     TEXT        NOT NULL,
    record_json JSONB,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX IF NOT EXISTS chimera_audit_event ON chimera_audit (stream, event, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_identity ON chimera_audit (stream, key_value, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_block ON chimera_audit (stream, block_number, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_time ON chimera_audit (timestamp);
";

pub(crate) struct Postgres {
    client: Client,
}

fn failed(what: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |error| StoreError(format!("PostgreSQL: {what}: {}", describe(&error)))
}

/// The server's message and SQLSTATE when it sent one: the error's `Display` says only
/// "db error".
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl Postgres {
    /// Connects for reading: creates nothing.
    pub(crate) fn connect_reader(url: &str) -> Result<Self, StoreError> {
        Ok(Postgres { client: Self::connect_client(url)? })
    }

    fn connect_client(url: &str) -> Result<Client, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("PostgreSQL: {}: {e}", crate::config::store::redact_password(url))))?;
        config.connect_timeout(std::time::Duration::from_secs(5));
        config.connect(NoTls).map_err(failed("connecting"))
    }

    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = Self::connect_client(url)?;
        // Several loggers of a fleet may start at once: creating the table is serialised.
        let mut transaction = client.transaction().map_err(failed("beginning a transaction"))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock(7306620474722001)", &[])
            .map_err(failed("locking the schema"))?;
        transaction.batch_execute(SCHEMA).map_err(failed("creating the table"))?;
        // Tables made by earlier versions had `record_json NOT NULL`. Looked up first: an ALTER
        // TABLE locks out every reader, even when it changes nothing.
        let not_null: bool = transaction
            .query_one(
                "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chimera_audit'::regclass \
                 AND attname = 'record_json'",
                &[],
            )
            .map_err(failed("reading the table's definition"))?
            .get(0);
        if not_null {
            // Only the table's owner may, and it waits for every reader: a logger that cannot
            // goes on without it (a record `jsonb` refuses then fails its batch, and waits in
            // the files, as before).
            let mut savepoint = transaction.savepoint("chimera_alter").map_err(failed("beginning a savepoint"))?;
            let altered = savepoint.batch_execute(
                "SET LOCAL lock_timeout = '2s'; ALTER TABLE chimera_audit ALTER COLUMN record_json DROP NOT NULL",
            );
            match altered {
                Ok(()) => savepoint.commit().map_err(failed("letting record_json be NULL"))?,
                Err(error) => diag!(
                    "chimera-log: audit store: record_json could not be made nullable ({}); records jsonb refuses \
                     (a \\u0000 escape) wait in {} until the table's owner runs: ALTER TABLE chimera_audit ALTER \
                     COLUMN record_json DROP NOT NULL",
                    describe(&error),
                    crate::dir::layout::AUDIT_FILE
                ),
            }
        }
        transaction.commit().map_err(failed("creating the table"))?;
        Ok(Postgres { client })
    }

    /// Inserts `rows` in one statement and one transaction; the rows it did not insert (present
    /// already) are then compared by chain.
    fn insert_batch(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, postgres::Error> {
        let mut transaction = self.client.transaction()?;
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq as i64).collect();
        let column = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let optional = |f: fn(&Row) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let inserted_seqs = transaction.query(
            "INSERT INTO chimera_audit (stream, seq, chain, timestamp, level, module, event, key_name, key_value, \
             block_number, record, record_json) \
             SELECT $1, s, c, t, l, m, e, kn, kv, b, r, r::jsonb FROM UNNEST($2::bigint[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) \
             AS u(s, c, t, l, m, e, kn, kv, b, r) \
             ON CONFLICT (stream, seq) DO NOTHING RETURNING seq",
            &[
                &stream,
                &seqs,
                &column(|row| &row.chain),
                &column(|row| &row.timestamp),
                &column(|row| &row.level),
                &column(|row| &row.module),
                &column(|row| &row.event),
                &optional(|row| row.key_name.as_deref()),
                &optional(|row| row.key_value.as_deref()),
                &optional(|row| row.block_number.as_deref()),
                &column(|row| &row.record),
            ],
        )?;
        let mut inserted = Inserted { stored: inserted_seqs.len() as u64, ..Inserted::default() };
        if inserted_seqs.len() < rows.len() {
            let stored: std::collections::HashSet<i64> = inserted_seqs.iter().map(|row| row.get(0)).collect();
            let present: Vec<i64> = seqs.iter().copied().filter(|seq| !stored.contains(seq)).collect();
            let chains = transaction.query(
                "SELECT seq, chain FROM chimera_audit WHERE stream = $1 AND seq = ANY($2)",
                &[&stream, &present],
            )?;
            let chains: std::collections::HashMap<i64, String> =
                chains.iter().map(|row| (row.get(0), row.get(1))).collect();
            for row in rows.iter().filter(|row| !stored.contains(&(row.seq as i64))) {
                if chains.get(&(row.seq as i64)) == Some(&row.chain) {
                    inserted.duplicates += 1;
                } else {
                    inserted.conflicts.push(row.seq);
                }
            }
        }
        transaction.commit()?;
        Ok(inserted)
    }

    /// Inserts `rows` one at a time, each in a savepoint of one transaction: a row whose record
    /// `jsonb` refuses is stored with `record_json` NULL. A row the database refuses even so
    /// (its encoding cannot hold the text, an index limit) fails the batch, which waits in the
    /// files and is tried again: the database's settings are wrong, and passing the row over
    /// would leave a gap in the store for good, and let retention delete its backup.
    fn insert_one_by_one(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, StoreError> {
        let mut transaction = self.client.transaction().map_err(failed("beginning a transaction"))?;
        let mut inserted = Inserted::default();
        for row in rows {
            let outcome = match insert_row(&mut transaction, stream, row, true) {
                Err(error) if refuses_the_data(&error) => insert_row(&mut transaction, stream, row, false),
                other => other,
            };
            match outcome {
                Ok(Some(chain)) if chain == row.chain => inserted.duplicates += 1,
                Ok(Some(_)) => inserted.conflicts.push(row.seq),
                Ok(None) => inserted.stored += 1,
                Err(error) => {
                    return Err(StoreError(format!(
                        "PostgreSQL: inserting the record seq {}: {}",
                        row.seq,
                        describe(&error)
                    )))
                }
            }
        }
        transaction.commit().map_err(failed("committing"))?;
        Ok(inserted)
    }
}

/// Inserts one row in a savepoint (rolled back when it fails); `Ok(None)` when inserted, else
/// the chain of the row present already.
fn insert_row(
    transaction: &mut postgres::Transaction<'_>,
    stream: &str,
    row: &Row,
    with_json: bool,
) -> Result<Option<String>, postgres::Error> {
    let mut savepoint = transaction.savepoint("chimera_row")?;
    let inserted = savepoint.query_opt(
        "INSERT INTO chimera_audit (stream, seq, chain, timestamp, level, module, event, key_name, key_value, \
         block_number, record, record_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text, CASE WHEN $12::bool THEN $11::text::jsonb END) \
         ON CONFLICT (stream, seq) DO NOTHING RETURNING seq",
        &[
            &stream,
            &(row.seq as i64),
            &row.chain,
            &row.timestamp,
            &row.level,
            &row.module,
            &row.event,
            &row.key_name,
            &row.key_value,
            &row.block_number,
            &row.record,
            &with_json,
        ],
    )?;
    let present = match inserted {
        Some(_) => None,
        None => savepoint
            .query_opt("SELECT chain FROM chimera_audit WHERE stream = $1 AND seq = $2", &[&stream, &(row.seq as i64)])?
            .map(|present| present.get(0)),
    };
    savepoint.commit()?;
    Ok(present)
}

/// A failure caused by a row's data (SQLSTATE class 22, data exception, such as `jsonb`
/// refusing `\u0000`; class 54, a program limit, such as nesting too deep for `jsonb`), as
/// opposed to the connection or the database failing: retrying the same rows cannot succeed.
fn refuses_the_data(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("54"))
}

impl Database for Postgres {
    fn high_water(&mut self, stream: &str) -> Result<u64, StoreError> {
        let row = self
            .client
            .query_one("SELECT MAX(seq) FROM chimera_audit WHERE stream = $1", &[&stream])
            .map_err(failed("reading the high-water mark"))?;
        let max: Option<i64> = row.get(0);
        Ok(max.map_or(0, |seq| seq as u64))
    }

    fn head(&mut self, stream: &str) -> Result<Option<(u64, String)>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT seq, chain FROM chimera_audit WHERE stream = $1 ORDER BY seq DESC LIMIT 1", &[&stream])
            .map_err(failed("reading the newest record"))?;
        Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, String>(1))))
    }

    fn insert(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, StoreError> {
        match self.insert_batch(stream, rows) {
            // One record the database refuses must not hold back the batch (and every record
            // after it, retried for ever): the rows are inserted one by one to find it.
            Err(error) if refuses_the_data(&error) => self.insert_one_by_one(stream, rows),
            other => other.map_err(failed("inserting")),
        }
    }
    fn expire(&mut self, cutoff: &str) -> Result<u64, StoreError> {
        self.client
            .execute("DELETE FROM chimera_audit WHERE timestamp < $1", &[&cutoff])
            .map_err(failed("deleting expired rows"))
    }

    fn streams(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client
            .query("SELECT DISTINCT stream FROM chimera_audit ORDER BY stream", &[])
            .map_err(failed("listing streams"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn scan(
        &mut self,
        stream: &str,
        filter: &ScanFilter,
        each: &mut dyn FnMut(StoredRecord) -> bool,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        // A value over the cap is never sent: `octet_length` of a stored text needs no more than
        // its header. Each derived column comes with its length, so that one over the cap (not
        // sent) is told from NULL; `record_json` is sent for a record within the cap, as text of
        // at most JSON_TEXT_FACTOR times the cap (`jsonb` adds spaces and spells numbers out).
        let within =
            |column: &str| format!("CASE WHEN $7::bigint IS NULL OR octet_length({column}) <= $7 THEN {column} END");
        let derived = |column: &str| format!("octet_length({column})::bigint, {}", within(column));
        let query = format!(
            "SELECT seq, chain, octet_length(record)::bigint, {}, {}, {}, {}, {}, {}, {}, {}, \
             CASE WHEN $7::bigint IS NULL THEN record_json::text \
             WHEN octet_length(record) <= $7 THEN left(record_json::text, $8) END \
             FROM chimera_audit WHERE stream = $1 \
             AND ($2::text IS NULL OR event = $2) AND ($3::text IS NULL OR key_value = $3) \
             AND ($4::text IS NULL OR timestamp >= $4) AND ($5::text IS NULL OR timestamp < $5) \
             AND ($6::text IS NULL OR block_number = $6) ORDER BY seq",
            within("record"),
            derived("timestamp"),
            derived("level"),
            derived("module"),
            derived("event"),
            derived("key_name"),
            derived("key_value"),
            derived("block_number"),
        );
        let cap = filter.max_record.map(|cap| i64::try_from(cap).unwrap_or(i64::MAX));
        let json_cap = cap.map_or(i32::MAX, |cap| {
            i32::try_from(cap.saturating_mul(JSON_TEXT_FACTOR).saturating_add(1)).unwrap_or(i32::MAX)
        });
        let params: [&(dyn postgres::types::ToSql + Sync); 8] = [
            &stream,
            &filter.event,
            &filter.identity,
            &filter.since,
            &filter.until,
            &filter.block_number,
            &cap,
            &json_cap,
        ];
        let mut rows = self.client.query_raw(&query, params).map_err(failed("scanning"))?;
        while let Some(row) = rows.next().map_err(failed("scanning"))? {
            let seq: i64 = row.get(0);
            let length: Option<i64> = row.get(2);
            let record: Option<String> = row.get(3);
            // A derived column over the cap, not sent: a text no record gives (a NUL, which the
            // archiver replaces).
            let text = |at: usize| -> Option<String> {
                match (row.get::<_, Option<i64>>(at), row.get::<_, Option<String>>(at + 1)) {
                    (Some(length), None) => Some(format!("\0{length} bytes, over the cap")),
                    (_, value) => value,
                }
            };
            let record_json: Option<String> = row.get(18);
            let record_json = match record_json {
                // Longer than the record can give: not its JSON.
                // (`left` counts characters.)
                Some(json) if i32::try_from(json.chars().count()).is_ok_and(|length| length >= json_cap) => {
                    Some(Some("\0over the cap".to_owned()))
                }
                json => Some(json),
            };
            let record = StoredRecord {
                stream: stream.to_owned(),
                seq: seq as u64,
                chain: row.get(1),
                record_length: length.unwrap_or(0).max(0) as u64,
                skipped: record.is_none(),
                record: record.unwrap_or_default(),
                derived: DerivedColumns {
                    timestamp: text(4),
                    level: text(6),
                    module: text(8),
                    event: text(10),
                    key_name: text(12),
                    key_value: text(14),
                    block_number: text(16),
                    record_json,
                },
            };
            if !each(record) {
                break;
            }
        }
        Ok(())
    }
}

/// How many times longer than its record `record_json`'s text may be and still be compared with
/// it: `jsonb` prints `": "` and `", "` where the line has `:` and `,`, and spells numbers out.
const JSON_TEXT_FACTOR: i64 = 4;

/// Against the server `scripts/start-postgres.sh` starts (`CHIMERA_TEST_POSTGRES_URL`), each in
/// a schema of its own.
#[cfg(test)]
mod tests {
    use super::*;

    /// A URL whose connections use a fresh schema `name` (dropped first if present).
    fn schema_url(name: &str) -> String {
        let url = std::env::var("CHIMERA_TEST_POSTGRES_URL")
            .expect("CHIMERA_TEST_POSTGRES_URL is not set: run through scripts/test-all.sh, which starts PostgreSQL");
        let mut client = Postgres::connect_client(&url).unwrap();
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-csearch_path%3D{name}")
    }

    fn row(seq: u64, record: &str) -> Row {
        Row {
            seq,
            chain: format!("{seq:064x}"),
            timestamp: "2026-01-02T03:04:05.000006Z".into(),
            level: "INFO".into(),
            module: "m".into(),
            event: "e".into(),
            key_name: None,
            key_value: None,
            block_number: None,
            record: record.into(),
        }
    }

    #[test]
    fn a_row_jsonb_refuses_is_stored_without_json_and_one_refused_even_so_fails_its_batch() {
        let mut store = Postgres::connect(&schema_url("chimera_unit_refused")).unwrap();
        // A raw NUL (which the writer never writes) is refused by a text column too.
        let refused = [row(1, r#"{"a":1}"#), row(3, "{\"a\":\"\0\"}")];
        let error = store.insert("s", &refused).unwrap_err();
        assert!(error.to_string().contains("seq 3"), "{error}");
        let rows = [row(1, r#"{"a":1}"#), row(2, r#"{"a":"\u0000"}"#), row(4, "{}")];
        let inserted = store.insert("s", &rows).unwrap();
        assert_eq!((inserted.stored, inserted.duplicates), (3, 0), "{inserted:?}");
        let json: Vec<Option<String>> = store
            .client
            .query("SELECT record_json::text FROM chimera_audit ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(json, [Some(r#"{"a": 1}"#.to_owned()), None, Some("{}".to_owned())]);
        // Inserted again: recognised as present.
        let again = store.insert("s", &rows).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 3), "{again:?}");
    }

    #[test]
    fn a_table_made_with_record_json_not_null_lets_it_be_null_after_a_connect() {
        let url = schema_url("chimera_unit_migration");
        let mut old = Postgres::connect_client(&url).unwrap();
        old.batch_execute(&SCHEMA.replace("record_json JSONB,", "record_json JSONB NOT NULL,")).unwrap();
        let mut store = Postgres::connect(&url).unwrap();
        let inserted = store.insert("s", &[row(1, r#"{"a":"\u0000"}"#)]).unwrap();
        assert_eq!(inserted.stored, 1, "{inserted:?}");
    }
}
