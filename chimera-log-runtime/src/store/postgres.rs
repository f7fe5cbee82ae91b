//! The PostgreSQL audit store (feature `postgres`): one database for a fleet of bots, each
//! logger writing its own stream. The record is kept as text (byte for byte what the chain
//! covers) and as `jsonb` for queries.

use postgres::{Client, NoTls};

use super::{Database, Inserted, Row, ScanFilter, StoreError, StoredRecord};

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
    record_json JSONB      NOT NULL,
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
    move |error| StoreError(format!("PostgreSQL: {what}: {error}"))
}

impl Postgres {
    /// Connects for reading: creates nothing.
    pub(crate) fn connect_reader(url: &str) -> Result<Self, StoreError> {
        Ok(Postgres { client: Self::connect_client(url)? })
    }

    fn connect_client(url: &str) -> Result<Client, StoreError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError(format!("PostgreSQL: {}: {e}", super::redact_password(url))))?;
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
        transaction.commit().map_err(failed("creating the table"))?;
        Ok(Postgres { client })
    }
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

    fn insert(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, StoreError> {
        let mut transaction = self.client.transaction().map_err(failed("beginning a transaction"))?;
        // One statement for the batch: arrays of columns, unnested; the rows it did not insert
        // (present already) are then compared by chain.
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq as i64).collect();
        let column = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let optional = |f: fn(&Row) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let inserted_seqs = transaction
            .query(
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
            )
            .map_err(failed("inserting"))?;
        let mut inserted = Inserted { stored: inserted_seqs.len() as u64, ..Inserted::default() };
        if inserted_seqs.len() < rows.len() {
            let stored: std::collections::HashSet<i64> = inserted_seqs.iter().map(|row| row.get(0)).collect();
            let present: Vec<i64> = seqs.iter().copied().filter(|seq| !stored.contains(seq)).collect();
            let chains = transaction
                .query("SELECT seq, chain FROM chimera_audit WHERE stream = $1 AND seq = ANY($2)", &[&stream, &present])
                .map_err(failed("reading present rows"))?;
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
        transaction.commit().map_err(failed("committing"))?;
        Ok(inserted)
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
        let params: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&stream, &filter.event, &filter.identity, &filter.since, &filter.until, &filter.block_number];
        let mut rows = self
            .client
            .query_raw(
                "SELECT seq, chain, record FROM chimera_audit WHERE stream = $1 \
                 AND ($2::text IS NULL OR event = $2) AND ($3::text IS NULL OR key_value = $3) \
                 AND ($4::text IS NULL OR timestamp >= $4) AND ($5::text IS NULL OR timestamp < $5) \
                 AND ($6::text IS NULL OR block_number = $6) ORDER BY seq",
                params,
            )
            .map_err(failed("scanning"))?;
        while let Some(row) = rows.next().map_err(failed("scanning"))? {
            let seq: i64 = row.get(0);
            let record =
                StoredRecord { stream: stream.to_owned(), seq: seq as u64, chain: row.get(1), record: row.get(2) };
            if !each(record) {
                break;
            }
        }
        Ok(())
    }
}
