//! The S3 server the archive tests use enforces Object Lock as S3 does. Runs first in the S3 run
//! (`scripts/test-all.sh`): a test of the archive's lock proves nothing against a server that
//! does not enforce it (moto, for one, lets a COMPLIANCE lock be shortened or turned into
//! GOVERNANCE).
#![cfg(feature = "s3")]

mod common;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use aws_sdk_s3::Client;
use common::s3::{client, create_bucket, runtime, unique_bucket};

const DAY: i64 = 24 * 3600;

/// Puts `key` under a COMPLIANCE lock retained until a day from now; returns its version id and
/// retain-until (seconds since the epoch).
fn put_locked(client: &Client, runtime: &tokio::runtime::Runtime, bucket: &str, key: &str) -> (String, i64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let until = now + DAY;
    let put = runtime
        .block_on(
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from_static(b"sealed record\n"))
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(DateTime::from_secs(until))
                .send(),
        )
        .expect("PutObject under a COMPLIANCE lock");
    (put.version_id().expect("a locked bucket is versioned: PutObject returns a version id").to_owned(), until)
}

fn retention(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    bucket: &str,
    key: &str,
    version: &str,
) -> (ObjectLockRetentionMode, i64) {
    let got = runtime
        .block_on(client.get_object_retention().bucket(bucket).key(key).version_id(version).send())
        .expect("GetObjectRetention");
    let retention = got.retention().expect("a retention");
    (retention.mode().cloned().expect("a mode"), retention.retain_until_date().expect("a date").secs())
}

fn locked_bucket(client: &Client, runtime: &tokio::runtime::Runtime) -> String {
    let bucket = unique_bucket("contract");
    create_bucket(client, runtime, &bucket, true);
    bucket
}

#[test]
fn a_bucket_created_with_object_lock_says_so_and_one_without_says_it_has_none() {
    let runtime = runtime();
    let client = client(&runtime);
    let locked = locked_bucket(&client, &runtime);
    let got = runtime.block_on(client.get_object_lock_configuration().bucket(&locked).send()).unwrap();
    assert_eq!(
        got.object_lock_configuration().and_then(|c| c.object_lock_enabled()).map(|e| e.as_str()),
        Some("Enabled")
    );

    let plain = unique_bucket("contract-plain");
    create_bucket(&client, &runtime, &plain, false);
    let error = runtime
        .block_on(client.get_object_lock_configuration().bucket(&plain).send())
        .expect_err("a bucket created without Object Lock has no lock configuration");
    let code = error.as_service_error().and_then(|e| e.meta().code()).map(str::to_owned);
    assert_eq!(code.as_deref(), Some("ObjectLockConfigurationNotFoundError"), "{error:?}");
}

#[test]
fn deleting_a_version_under_a_compliance_lock_is_refused_and_the_version_stays() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = locked_bucket(&client, &runtime);
    let (version, _) = put_locked(&client, &runtime, &bucket, "k");

    let refused = runtime.block_on(client.delete_object().bucket(&bucket).key("k").version_id(&version).send());
    assert!(refused.is_err(), "the server deleted a version under a COMPLIANCE lock");
    let bypass = runtime.block_on(
        client.delete_object().bucket(&bucket).key("k").version_id(&version).bypass_governance_retention(true).send(),
    );
    assert!(bypass.is_err(), "the governance bypass deleted a version under a COMPLIANCE lock");

    let body = runtime
        .block_on(client.get_object().bucket(&bucket).key("k").version_id(&version).send())
        .expect("the locked version is still there");
    assert_eq!(runtime.block_on(body.body.collect()).unwrap().into_bytes().as_ref(), b"sealed record\n");
}

#[test]
fn shortening_a_compliance_retain_until_is_refused_and_lengthening_it_is_not() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = locked_bucket(&client, &runtime);
    let (version, until) = put_locked(&client, &runtime, &bucket, "k");

    let shorter = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .retain_until_date(DateTime::from_secs(until - 3600))
        .build();
    let refused = runtime.block_on(
        client.put_object_retention().bucket(&bucket).key("k").version_id(&version).retention(shorter).send(),
    );
    assert!(refused.is_err(), "the server shortened a COMPLIANCE retain-until");
    assert_eq!(retention(&client, &runtime, &bucket, "k", &version), (ObjectLockRetentionMode::Compliance, until));

    // The control: the server does accept a retention change that S3 accepts, so the refusal
    // above is the lock's and not a request the server cannot parse.
    let longer = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .retain_until_date(DateTime::from_secs(until + 3600))
        .build();
    runtime
        .block_on(client.put_object_retention().bucket(&bucket).key("k").version_id(&version).retention(longer).send())
        .expect("lengthening a COMPLIANCE retain-until is allowed");
    assert_eq!(
        retention(&client, &runtime, &bucket, "k", &version),
        (ObjectLockRetentionMode::Compliance, until + 3600)
    );
}

#[test]
fn turning_a_compliance_lock_into_governance_is_refused_even_with_the_bypass() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = locked_bucket(&client, &runtime);
    let (version, until) = put_locked(&client, &runtime, &bucket, "k");

    for bypass in [false, true] {
        let governance = ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::Governance)
            .retain_until_date(DateTime::from_secs(until + 3600))
            .build();
        let refused = runtime.block_on(
            client
                .put_object_retention()
                .bucket(&bucket)
                .key("k")
                .version_id(&version)
                .bypass_governance_retention(bypass)
                .retention(governance)
                .send(),
        );
        assert!(refused.is_err(), "the server turned COMPLIANCE into GOVERNANCE (bypass: {bypass})");
    }
    assert_eq!(retention(&client, &runtime, &bucket, "k", &version), (ObjectLockRetentionMode::Compliance, until));
}
